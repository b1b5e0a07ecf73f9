"""Key, team and provider-key management with an audit trail: the one service behind both the
``fareway keys|teams|vault|audit`` commands and the admin HTTP API (``/v1/admin/...``).

Every method that changes something records an :mod:`audit <fareway.keys.audit>` entry naming
the actor.  Inputs are the JSON field names of the admin API (see ``KeyInfo.as_dict`` and
``TeamInfo.as_dict``); bad input raises ValueError (the API answers 400), a taken name Conflict
(409), an unknown id NotFound (404).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from fareway.keys.audit import Actor, AuditEntry, AuditLog
from fareway.keys.records import LIMIT_FIELDS, KeyInfo, Limits, TeamInfo
from fareway.keys.state_db import StateStore
from fareway.keys.store import KeyStore
from fareway.keys.teams import TeamStore
from fareway.keys.vault import ProviderKeyInfo, Vault

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_SPAN_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

KEY_FIELDS = {
    "name",
    "role",
    "scopes",
    "team",
    "team_id",
    "allowed_models",
    "allowed_providers",
    "expires_at",
    "expires_in",
    "metadata",
    *LIMIT_FIELDS,
}
TEAM_FIELDS = {"name", "allowed_models", "allowed_providers", "metadata", *LIMIT_FIELDS}


def parse_span(text: str) -> float:
    """Seconds from ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (or a plain number of seconds)."""
    t = str(text).strip().lower()
    try:
        return float(t)
    except ValueError:
        pass
    m = _SPAN.match(t)
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 30d, 12h, 90m, 45s)")
    return float(m.group(1)) * _SPAN_S[m.group(2)]


def parse_when(value: Any, now: float) -> float | None:
    """A Unix time from a number, an ISO date/datetime (UTC unless it says otherwise), or a span
    from now (``30d``); None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if _SPAN.match(text.lower()):
        return now + parse_span(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"not a time: {value!r} (a Unix time, an ISO date or datetime, or a span like 30d)"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    return {k: {"from": before.get(k), "to": v} for k, v in after.items() if before.get(k) != v}


class Admin:
    def __init__(
        self,
        keys: KeyStore,
        *,
        teams: TeamStore | None = None,
        vault: Vault | None = None,
        audit: AuditLog | None = None,
        providers: Collection[str] | None = None,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        db: StateStore = keys.db
        self.teams = teams or TeamStore(db, clock=clock)
        self.vault = vault or Vault(db, clock=clock)
        self.audit = audit or AuditLog(db, clock=clock)
        self.providers = set(providers) if providers is not None else None
        self.on_change = on_change
        self.clock = clock

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _team_id(self, fields: Mapping[str, Any]) -> str | None:
        ref = fields.get("team_id", fields.get("team"))
        if ref is None or ref == "":
            return None
        if not isinstance(ref, str):
            raise ValueError("team must be a team id or name")
        return self.teams.require(ref).team_id

    def _providers_ok(self, value: Any) -> None:
        if self.providers is None or not value:
            return
        names = value if isinstance(value, list | tuple) else [v.strip() for v in str(value).split(",")]
        for p in names:
            if isinstance(p, str) and not any(c in p for c in "*?[") and p not in self.providers:
                raise ValueError(f"unknown provider {p!r} in allowed_providers")

    # ------------------------------------------------------------------ keys

    def create_key(self, actor: Actor, fields: Mapping[str, Any]) -> tuple[str, KeyInfo]:
        unknown = sorted(set(fields) - KEY_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        if "name" not in fields:
            raise ValueError("a key needs a name")
        if "expires_at" in fields and "expires_in" in fields:
            raise ValueError("give expires_at or expires_in, not both")
        now = self.clock()
        expires = parse_when(fields.get("expires_at"), now)
        if fields.get("expires_in") is not None:
            expires = now + parse_span(fields["expires_in"])
        self._providers_ok(fields.get("allowed_providers"))
        role = fields.get("role") or "inference"
        secret, info = self.keys.create(
            fields["name"],
            role if isinstance(role, str) else "?",
            scopes=fields.get("scopes"),
            team_id=self._team_id(fields),
            allowed_models=fields.get("allowed_models"),
            allowed_providers=fields.get("allowed_providers"),
            expires_at=expires,
            metadata=fields.get("metadata"),
            limits=Limits.parse(dict(fields)),
        )
        details = {k: v for k, v in info.as_dict().items() if v not in (None, [], {})}
        self.audit.record(actor, "key.create", "key", info.key_id, info.name, details)
        self._changed()
        return secret, info

    def list_keys(self, *, team: str | None = None, include_revoked: bool = True) -> list[KeyInfo]:
        team_id = self.teams.require(team).team_id if team else None
        return self.keys.list(team_id=team_id, include_revoked=include_revoked)

    def show_key(self, ref: str) -> KeyInfo:
        return self.keys.require(ref)

    def update_key(self, actor: Actor, ref: str, changes: Mapping[str, Any]) -> KeyInfo:
        unknown = sorted(set(changes) - (KEY_FIELDS - {"role"}))
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        ch = dict(changes)
        if "team" in ch or "team_id" in ch:
            ch["team_id"] = self._team_id(ch)
            ch.pop("team", None)
        now = self.clock()
        if "expires_in" in ch:
            span = ch.pop("expires_in")
            ch["expires_at"] = None if span is None else now + parse_span(span)
        elif "expires_at" in ch:
            ch["expires_at"] = parse_when(ch["expires_at"], now)
        self._providers_ok(ch.get("allowed_providers"))
        before, after = self.keys.update(ref, ch)
        diff = _diff(before.as_dict(), after.as_dict())
        diff.pop("updated_at", None)
        if diff:
            self.audit.record(actor, "key.update", "key", after.key_id, after.name, diff)
            self._changed()
        return after

    def rotate_key(self, actor: Actor, ref: str, grace: Any = 0) -> tuple[str, KeyInfo]:
        grace_s = parse_span(grace) if grace not in (None, "") else 0.0
        before = self.keys.require(ref)
        secret, info = self.keys.rotate(before.key_id, grace_s)
        self.audit.record(
            actor,
            "key.rotate",
            "key",
            info.key_id,
            info.name,
            {"old_prefix": before.prefix, "new_prefix": info.prefix, "grace_seconds": grace_s},
        )
        self._changed()
        return secret, info

    def revoke_key(self, actor: Actor, ref: str) -> KeyInfo:
        info = self.keys.require(ref)
        if info.revoked_at is not None:
            raise ValueError(f"key {info.key_id} is already revoked")
        self.keys.revoke(info.key_id)
        self.audit.record(actor, "key.revoke", "key", info.key_id, info.name, {"prefix": info.prefix})
        self._changed()
        return self.keys.require(info.key_id)

    # ----------------------------------------------------------------- teams

    def create_team(self, actor: Actor, fields: Mapping[str, Any]) -> TeamInfo:
        unknown = sorted(set(fields) - TEAM_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        if "name" not in fields:
            raise ValueError("a team needs a name")
        self._providers_ok(fields.get("allowed_providers"))
        team = self.teams.create(
            fields["name"],
            allowed_models=fields.get("allowed_models"),
            allowed_providers=fields.get("allowed_providers"),
            metadata=fields.get("metadata"),
            limits=Limits.parse(dict(fields)),
        )
        details = {k: v for k, v in team.as_dict().items() if v not in (None, [], {})}
        self.audit.record(actor, "team.create", "team", team.team_id, team.name, details)
        self._changed()
        return team

    def list_teams(self) -> list[TeamInfo]:
        return self.teams.list()

    def show_team(self, ref: str) -> TeamInfo:
        return self.teams.require(ref)

    def update_team(self, actor: Actor, ref: str, changes: Mapping[str, Any]) -> TeamInfo:
        self._providers_ok(changes.get("allowed_providers"))
        before, after = self.teams.update(ref, changes)
        diff = _diff(before.as_dict(), after.as_dict())
        if diff:
            self.audit.record(actor, "team.update", "team", after.team_id, after.name, diff)
            self._changed()
        return after

    def delete_team(self, actor: Actor, ref: str) -> TeamInfo:
        team = self.teams.delete(ref)
        self.audit.record(actor, "team.delete", "team", team.team_id, team.name)
        self._changed()
        return team

    # --------------------------------------------------------- provider keys

    def add_provider_key(
        self, actor: Actor, provider: str, secret: str, *, team: str | None = None, label: str | None = None
    ) -> ProviderKeyInfo:
        if self.providers is not None and provider not in self.providers:
            raise ValueError(
                f"unknown provider {provider!r}; configured: {', '.join(sorted(self.providers))}"
            )
        team_id = self.teams.require(team).team_id if team else None
        info = self.vault.add(provider, secret, team_id=team_id, label=label)
        self.audit.record(
            actor,
            "provider_key.add",
            "provider_key",
            info.pk_id,
            label,
            {"provider": provider, "team_id": team_id, "fingerprint": info.fingerprint},
        )
        self._changed()
        return info

    def list_provider_keys(
        self, *, team: str | None = None, provider: str | None = None, include_revoked: bool = False
    ) -> list[ProviderKeyInfo]:
        team_id = self.teams.require(team).team_id if team else None
        return self.vault.list(team_id=team_id, provider=provider, include_revoked=include_revoked)

    def revoke_provider_key(self, actor: Actor, pk_id: str) -> ProviderKeyInfo:
        info = self.vault.require(pk_id)
        if info.revoked_at is not None:
            raise ValueError(f"provider key {pk_id} is already revoked")
        out = self.vault.revoke(pk_id)
        self.audit.record(
            actor,
            "provider_key.revoke",
            "provider_key",
            info.pk_id,
            info.label,
            {"provider": info.provider, "team_id": info.team_id, "fingerprint": info.fingerprint},
        )
        self._changed()
        return out

    def rotate_master(self, actor: Actor) -> int:
        n = self.vault.rotate_master()
        self.audit.record(actor, "vault.rotate_master", "vault", None, None, {"reencrypted": n})
        self._changed()
        return n

    # ------------------------------------------------------------------ audit

    def audit_log(self, **filters: Any) -> list[AuditEntry]:
        return self.audit.query(**filters)
