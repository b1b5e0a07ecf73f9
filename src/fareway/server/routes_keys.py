"""The admin API for keys, teams, provider keys and the audit log, and ``GET /v1/key``.

Every ``/v1/admin/...`` route needs a key with the ``admin`` scope (or the master key); nothing
in a request (no Host, X-Forwarded-For or Origin header, no loopback address) stands in for it.
Bodies are JSON objects; times are answered as ISO 8601 UTC strings and accepted as those, as
Unix times, or as spans from now (``30d``).  A key's secret is in the answer to its create and
rotate only; a provider key never leaves the gateway (its fingerprint does)::

    POST   /v1/admin/keys                 {name, scopes?, team?, allowed_models?, allowed_providers?,
                                           expires_at? | expires_in?, metadata?, budget_daily_usd?,
                                           budget_monthly_usd?, budget_total_usd?, rpm?, tpm?} -> 201
    GET    /v1/admin/keys?team=T&include_revoked=false
    GET    /v1/admin/keys/{id or name}
    PATCH  /v1/admin/keys/{id or name}    any of the create fields (null clears)
    POST   /v1/admin/keys/{ref}/rotate    {grace?: "1h"}   -> the new secret
    POST   /v1/admin/keys/{ref}/revoke    (DELETE /v1/admin/keys/{ref} does the same)
    POST   /v1/admin/teams                {name, allowed_models?, allowed_providers?, metadata?,
                                           budget_*_usd?, rpm?, tpm?}
    GET    /v1/admin/teams                GET|PATCH|DELETE /v1/admin/teams/{id or name}
    POST   /v1/admin/provider-keys        {provider, key, team?, label?}
    GET    /v1/admin/provider-keys?team=T&provider=P&include_revoked=false
    DELETE /v1/admin/provider-keys/{id}
    POST   /v1/admin/vault/rotate-master  re-encrypt every provider key with the first master key
    GET    /v1/admin/audit?n=50&since=&until=&actor=&action=&target=
    GET    /v1/key                        the calling key: scopes, team, allow-lists, expiry, its
                                          limits and what is left of them (any valid key)

Errors are OpenAI-shaped JSON: 400 bad input, 401/403 no admin key, 404 unknown id, 409 a name
taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from fareway.errors import BadRequest, FarewayError, NotFound
from fareway.keys.admin import Admin, parse_span, parse_when
from fareway.keys.audit import Actor
from fareway.keys.vault import VaultLocked
from fareway.limits.reserve import LimitsAdmission
from fareway.pipeline.gateway import Reply
from fareway.server.app import App, Request, json_reply

Handler = Callable[[Request], Awaitable[Reply]]


def _iso(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    return value


def shown(info: dict[str, Any]) -> dict[str, Any]:
    """An info dict with its times as ISO strings."""
    return {k: _iso(v) if k.endswith(("_at", "_until")) else v for k, v in info.items()}


def _body(req: Request) -> dict[str, Any]:
    if not req.body.strip():
        return {}
    try:
        data = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.")
    return data


def _query(req: Request, allowed: set[str]) -> dict[str, str]:
    raw = parse_qs(req.query.decode("latin-1"), keep_blank_values=True)
    for name in raw:
        if name not in allowed:
            raise BadRequest(
                f"Unknown query parameter `{name}`; this route takes: {', '.join(sorted(allowed))}.",
                param=name,
            )
    return {k: v[-1] for k, v in raw.items()}


def _flag(params: dict[str, str], name: str, default: bool) -> bool:
    v = params.get(name)
    if v is None or v == "":
        return default
    if v.lower() in ("1", "true", "yes"):
        return True
    if v.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"`{name}` must be true or false.", param=name)


def _actor(req: Request) -> Actor:
    p = req.principal
    assert p is not None
    client = req.scope.get("client")
    return Actor(p.name, p.key_id, client[0] if client else None)


def _guard(fn: Handler) -> Handler:
    """ValueError (bad input) -> 400, a locked vault -> 400 saying how to unlock it."""

    async def run(req: Request) -> Reply:
        try:
            return await fn(req)
        except FarewayError:
            raise
        except VaultLocked as exc:
            raise BadRequest(str(exc), code="vault_locked") from exc
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc

    return run


def _tail(req: Request, prefix: str) -> list[str]:
    parts = [unquote(p) for p in req.path[len(prefix) :].split("/") if p]
    if not parts:
        raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
    return parts


def add_key_routes(
    app: App,
    admin: Admin,
    *,
    limits: LimitsAdmission | None = None,
    reload: Callable[[], object] | None = None,
) -> None:
    """Add the admin API and ``GET /v1/key``.  ``reload`` runs (in a worker thread) after every
    change, before the answer, so the next call already sees it (the provider-key pools)."""

    async def changed() -> None:
        if reload is not None:
            await asyncio.to_thread(reload)

    # ------------------------------------------------------------------ keys

    async def keys_create(req: Request) -> Reply:
        secret, info = await asyncio.to_thread(admin.create_key, _actor(req), _body(req))
        await changed()
        return json_reply({"key": secret, **shown(info.as_dict())}, 201)

    async def keys_list(req: Request) -> Reply:
        q = _query(req, {"team", "include_revoked"})
        rows = await asyncio.to_thread(
            admin.list_keys, team=q.get("team") or None, include_revoked=_flag(q, "include_revoked", False)
        )
        return json_reply({"object": "list", "data": [shown(k.as_dict()) for k in rows]})

    async def key_item(req: Request) -> Reply:
        parts = _tail(req, "/v1/admin/keys/")
        ref, action = parts[0], parts[1] if len(parts) > 1 else None
        if len(parts) > 2:
            raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
        m = req.method
        if m == "GET" and action is None:
            return json_reply(shown((await asyncio.to_thread(admin.show_key, ref)).as_dict()))
        if m == "PATCH" and action is None:
            info = await asyncio.to_thread(admin.update_key, _actor(req), ref, _body(req))
        elif (m == "POST" and action == "revoke") or (m == "DELETE" and action is None):
            info = await asyncio.to_thread(admin.revoke_key, _actor(req), ref)
        elif m == "POST" and action == "rotate":
            body = _body(req)
            unknown = sorted(set(body) - {"grace"})
            if unknown:
                raise BadRequest(f"Unknown field(s): {', '.join(unknown)}; rotate takes `grace`.")
            secret, info = await asyncio.to_thread(admin.rotate_key, _actor(req), ref, body.get("grace", 0))
            await changed()
            return json_reply({"key": secret, **shown(info.as_dict())})
        else:
            raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
        await changed()
        return json_reply(shown(info.as_dict()))

    # ----------------------------------------------------------------- teams

    async def teams_create(req: Request) -> Reply:
        team = await asyncio.to_thread(admin.create_team, _actor(req), _body(req))
        await changed()
        return json_reply(shown(team.as_dict()), 201)

    async def teams_list(req: Request) -> Reply:
        _query(req, set())
        rows = await asyncio.to_thread(admin.list_teams)
        return json_reply({"object": "list", "data": [shown(t.as_dict()) for t in rows]})

    async def team_item(req: Request) -> Reply:
        parts = _tail(req, "/v1/admin/teams/")
        if len(parts) != 1:
            raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
        ref = parts[0]
        if req.method == "GET":
            return json_reply(shown((await asyncio.to_thread(admin.show_team, ref)).as_dict()))
        if req.method == "PATCH":
            team = await asyncio.to_thread(admin.update_team, _actor(req), ref, _body(req))
        else:
            team = await asyncio.to_thread(admin.delete_team, _actor(req), ref)
        await changed()
        return json_reply(shown(team.as_dict()))

    # --------------------------------------------------------- provider keys

    async def pk_add(req: Request) -> Reply:
        body = _body(req)
        unknown = sorted(set(body) - {"provider", "key", "team", "label"})
        if unknown:
            raise BadRequest(f"Unknown field(s): {', '.join(unknown)}.")
        provider, secret = body.get("provider"), body.get("key")
        if not isinstance(provider, str) or not isinstance(secret, str):
            raise BadRequest("A provider key needs `provider` and `key` (strings).")
        team, label = body.get("team"), body.get("label")
        if (team is not None and not isinstance(team, str)) or (
            label is not None and not isinstance(label, str)
        ):
            raise BadRequest("`team` and `label` must be strings.")
        info = await asyncio.to_thread(
            admin.add_provider_key, _actor(req), provider, secret, team=team, label=label
        )
        await changed()
        return json_reply(shown(info.as_dict()), 201)

    async def pk_list(req: Request) -> Reply:
        q = _query(req, {"team", "provider", "include_revoked"})
        rows = await asyncio.to_thread(
            admin.list_provider_keys,
            team=q.get("team") or None,
            provider=q.get("provider") or None,
            include_revoked=_flag(q, "include_revoked", False),
        )
        return json_reply({"object": "list", "data": [shown(k.as_dict()) for k in rows]})

    async def pk_item(req: Request) -> Reply:
        parts = _tail(req, "/v1/admin/provider-keys/")
        if len(parts) != 1:
            raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
        info = await asyncio.to_thread(admin.revoke_provider_key, _actor(req), parts[0])
        await changed()
        return json_reply(shown(info.as_dict()))

    async def rotate_master(req: Request) -> Reply:
        n = await asyncio.to_thread(admin.rotate_master, _actor(req))
        await changed()
        return json_reply({"reencrypted": n})

    # ----------------------------------------------------------------- audit

    async def audit(req: Request) -> Reply:
        q = _query(req, {"n", "since", "until", "actor", "action", "target"})
        try:
            n = int(q.get("n") or 50)
        except ValueError as exc:
            raise BadRequest("`n` must be a whole number.", param="n") from exc
        now = admin.clock()
        rows = await asyncio.to_thread(
            admin.audit_log,
            n=n,
            since=_when(q.get("since"), now, "since", ago=True),
            until=_when(q.get("until"), now, "until", ago=True),
            actor=q.get("actor") or None,
            action=q.get("action") or None,
            target=q.get("target") or None,
        )
        return json_reply({"object": "list", "data": [shown(e.as_dict()) for e in rows]})

    # ------------------------------------------------------------- /v1/key

    async def whoami(req: Request) -> Reply:
        p = req.principal
        assert p is not None
        out: dict[str, Any] = {"id": p.key_id, "name": p.name, "scopes": sorted(p.scopes)}
        if p.key_id != "master":
            info = await asyncio.to_thread(admin.keys.get, p.key_id)
            if info is not None:
                d = shown(info.as_dict())
                for k in ("prefix", "expires_at", "metadata", "allowed_models", "allowed_providers"):
                    out[k] = d[k]
            if p.team_id is not None:
                team = await asyncio.to_thread(admin.teams.get, p.team_id)
                out["team"] = (
                    {
                        "id": team.team_id,
                        "name": team.name,
                        "allowed_models": list(team.allowed_models),
                        "allowed_providers": list(team.allowed_providers),
                    }
                    if team is not None
                    else {"id": p.team_id}
                )
            else:
                out["team"] = None
        out["limits"] = await limits.status(p) if limits is not None else {}
        return json_reply(out)

    g = _guard
    app.add("POST", "/v1/admin/keys", g(keys_create), auth="admin", body=True)
    app.add("GET", "/v1/admin/keys", g(keys_list), auth="admin")
    for method in ("GET", "PATCH", "POST", "DELETE"):
        app.add(
            method,
            "/v1/admin/keys/",
            g(key_item),
            auth="admin",
            body=method in ("PATCH", "POST"),
            prefix=True,
        )
    app.add("POST", "/v1/admin/teams", g(teams_create), auth="admin", body=True)
    app.add("GET", "/v1/admin/teams", g(teams_list), auth="admin")
    for method in ("GET", "PATCH", "DELETE"):
        app.add(method, "/v1/admin/teams/", g(team_item), auth="admin", body=method == "PATCH", prefix=True)
    app.add("POST", "/v1/admin/provider-keys", g(pk_add), auth="admin", body=True)
    app.add("GET", "/v1/admin/provider-keys", g(pk_list), auth="admin")
    app.add("DELETE", "/v1/admin/provider-keys/", g(pk_item), auth="admin", prefix=True)
    app.add("POST", "/v1/admin/vault/rotate-master", g(rotate_master), auth="admin", body=True)
    app.add("GET", "/v1/admin/audit", g(audit), auth="admin")
    app.add("GET", "/v1/key", g(whoami), auth="key")


def _when(value: str | None, now: float, name: str, *, ago: bool) -> float | None:
    """A time parameter: ISO, a Unix time, or a span meaning that long ago (``since=7d``)."""
    if not value:
        return None
    try:
        if ago and value.strip()[-1:].lower() in ("s", "m", "h", "d", "w"):
            return now - parse_span(value)
        return parse_when(value, now)
    except ValueError as exc:
        raise BadRequest(str(exc), param=name) from exc
