"""The dashboard's routes, all under ``/ui`` (the page and its data live in fareway.dashboard):

``GET  /ui``              the page when signed in, else the login form
``POST /ui/login``        form field ``key`` (the master key or an admin key) -> session cookie
``POST /ui/logout``       (``GET`` too) drops the session and clears the cookie
``GET  /ui/static/NAME``  the page's script, stylesheet and icon (no CDN)
``GET  /ui/api/overview?since=7d``  totals, spend by provider/model/key, spend over time, latency
``GET  /ui/api/usage``    the same body as ``/v1/usage`` (same parameters)
``GET  /ui/api/calls?n=50&model=M``  recent calls with their attempts

No key ever travels in a URL.  The data calls authenticate by the session cookie alone
(HttpOnly, SameSite=Strict, ``Secure`` behind HTTPS) and re-check the key behind the session on
every call, so a revoked key loses the dashboard too.  A POST whose ``Origin`` is another site is
refused (defence in depth on top of SameSite).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from fareway import __version__
from fareway.dashboard import data, page
from fareway.dashboard.sessions import Session, Sessions, SessionStore, clear_cookie, read_cookie, set_cookie
from fareway.errors import AuthenticationFailed, NotFound, PermissionDenied
from fareway.pipeline.gateway import Gateway, Reply
from fareway.server.app import App, Request, json_reply
from fareway.server.routes_admin import ledger_of, query_params, usage_reply

HTML = "text/html; charset=utf-8"
_OVERVIEW_PARAMS = {"since"}
_CALLS_PARAMS = {"n", "model"}


def _secure(req: Request) -> bool:
    proto = req.headers.get("x-forwarded-proto", "")
    return req.scope.get("scheme") == "https" or proto.split(",")[0].strip() == "https"


def _page(body: bytes, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, [*page.SECURITY_HEADERS, *(headers or [])], body, content_type=HTML)


def _redirect(location: str, headers: list[tuple[str, str]] | None = None) -> Reply:
    hdrs = [("location", location), ("cache-control", "no-store"), *(headers or [])]
    return Reply(303, hdrs, b"", content_type="text/plain")


def _same_origin(req: Request) -> bool:
    origin = req.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = req.headers.get("host", "")
    return urlsplit(origin).netloc == host


def add_dashboard_routes(app: App, gateway: Gateway, sessions: Sessions | None = None) -> Sessions:
    store: Sessions = sessions if sessions is not None else SessionStore()

    async def current(req: Request) -> Session | None:
        s = await store.get(read_cookie(req.headers.get("cookie")))
        if s is None:
            return None
        try:
            principal = await gateway.keys.authenticate_digest(s.digest)
        except AuthenticationFailed:
            await store.drop(s.sid)
            return None
        if not principal.is_admin:
            await store.drop(s.sid)
            return None
        s.principal = principal
        return s

    async def api_session(req: Request) -> Session:
        s = await current(req)
        if s is None:
            raise AuthenticationFailed("Not signed in to the dashboard (or the session expired).")
        return s

    # ------------------------------------------------------------------ pages

    async def index(req: Request) -> Reply:
        s = await current(req)
        if s is None:
            return _page(page.login_page(version=__version__))
        return _page(page.app_page(s.principal.name if s.principal else s.name, __version__))

    async def login_form(req: Request) -> Reply:
        if await current(req) is not None:
            return _redirect("/ui")
        return _page(page.login_page(version=__version__))

    async def login(req: Request) -> Reply:
        if not _same_origin(req):
            raise PermissionDenied("Cross-site login refused.")
        form = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        key = (form.get("key") or [""])[-1].strip()
        try:
            principal = await gateway.keys.authenticate(key)
        except AuthenticationFailed:
            return _page(page.login_page("That key is not valid.", __version__), 401)
        if not principal.is_admin:
            return _page(page.login_page("That key is not an admin key.", __version__), 403)
        old = read_cookie(req.headers.get("cookie"))
        await store.drop(old)
        s = await store.create(principal, key)
        return _redirect("/ui", [("set-cookie", set_cookie(s.sid, int(store.ttl), _secure(req)))])

    async def logout(req: Request) -> Reply:
        if req.method == "POST" and not _same_origin(req):
            raise PermissionDenied("Cross-site logout refused.")
        await store.drop(read_cookie(req.headers.get("cookie")))
        return _redirect("/ui", [("set-cookie", clear_cookie(_secure(req)))])

    async def static(req: Request) -> Reply:
        name = req.path[len("/ui/static/") :]
        body = page.static_file(name)
        if body is None:
            raise NotFound(f"No such dashboard file: {name}", code="unknown_url")
        headers = [("x-content-type-options", "nosniff"), ("cache-control", "no-cache")]
        return Reply(200, headers, body, content_type=page.static_type(name))

    # ------------------------------------------------------------------- data

    async def overview(req: Request) -> Reply:
        await api_session(req)
        params = query_params(req, _OVERVIEW_PARAMS)
        raw_since = params.get("since", "7d")
        now = datetime.now(UTC)
        since = None if raw_since == "all" else data.parse_time(raw_since, "since", now)
        ledger = ledger_of(gateway)
        window = now - since if since is not None else None
        bucket: Literal["hour", "day"] = (
            "hour" if window is not None and window <= timedelta(hours=48) else "day"
        )
        by_model = await ledger.usage(since, None, ["provider", "model"])
        by_key = await ledger.usage(since, None, ["key"])
        by_user = await ledger.usage(since, None, ["user"])
        by_tag = await ledger.usage(since, None, ["tag"])
        spend = await ledger.spend_over_time(since, bucket, "provider")
        latency = await ledger.latency_by_provider(since)
        body = {
            "since": since.isoformat() if since else None,
            "now": now.isoformat(),
            "bucket": bucket,
            "totals": data.totals(by_model),  # the groups' sums: exact, one query fewer
            "by_model": [data.usage_group(r, ["provider", "model"]) for r in by_model],
            "by_key": [data.usage_group(r, ["key"]) for r in by_key],
            "by_user": [data.usage_group(r, ["user"]) for r in by_user],
            "by_tag": [data.usage_group(r, ["tag"]) for r in by_tag],
            "spend": data.spend_series(spend),
            "latency": [data.latency_dict(r) for r in latency],
        }
        return json_reply(body, headers=[("cache-control", "no-store")])

    async def calls(req: Request) -> Reply:
        await api_session(req)
        params = query_params(req, _CALLS_PARAMS)
        n = data.parse_int(params.get("n"), "n", 50, 1, data.MAX_LOGS)
        model = params.get("model") or None
        rows = await ledger_of(gateway).recent_calls(n, model, None)
        return json_reply(data.logs_payload(rows), headers=[("cache-control", "no-store")])

    async def usage(req: Request) -> Reply:
        await api_session(req)
        return await usage_reply(req, gateway, own_key=None)

    app.add("GET", "/ui", index, auth="none")
    app.add("GET", "/ui/login", login_form, auth="none")
    app.add("POST", "/ui/login", login, auth="none", body=True)
    app.add("POST", "/ui/logout", logout, auth="none", body=True)
    app.add("GET", "/ui/logout", logout, auth="none")
    app.add("GET", "/ui/static/", static, auth="none", prefix=True)
    app.add("GET", "/ui/api/overview", overview, auth="none")
    app.add("GET", "/ui/api/calls", calls, auth="none")
    app.add("GET", "/ui/api/usage", usage, auth="none")
    return store
