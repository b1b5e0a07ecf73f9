"""Teams: a name, allowed models and providers, metadata, budgets and rate limits, shared by the
team's keys (a key's own limits apply on top).  A team may also own provider keys
(:mod:`fareway.keys.vault`): its calls use them, never another team's.

Teams are not deleted while they own active keys (a team's spend stays its own: revoked keys'
calls count toward it too).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from fareway.errors import Conflict, NotFound
from fareway.keys.records import (
    NO_LIMITS,
    Limits,
    TeamInfo,
    check_metadata,
    check_name,
    check_patterns,
    money,
)
from fareway.keys.state_db import IntegrityError, StateStore

_COLS = (
    "team_id, name, created_at, allowed_models, allowed_providers, metadata, budget_daily_usd, "
    "budget_monthly_usd, budget_total_usd, rpm, tpm"
)
_FIELDS = {
    "name",
    "allowed_models",
    "allowed_providers",
    "metadata",
    "budget_daily_usd",
    "budget_monthly_usd",
    "budget_total_usd",
    "rpm",
    "tpm",
}


def _team(r: tuple[Any, ...]) -> TeamInfo:
    return TeamInfo(
        team_id=r[0],
        name=r[1],
        created_at=r[2],
        allowed_models=tuple(json.loads(r[3])) if r[3] else (),
        allowed_providers=tuple(json.loads(r[4])) if r[4] else (),
        metadata=json.loads(r[5]) if r[5] else {},
        limits=Limits(money(r[6], "budget"), money(r[7], "budget"), money(r[8], "budget"), r[9], r[10]),
    )


class TeamStore:
    def __init__(self, db: StateStore, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def create(
        self,
        name: str,
        *,
        allowed_models: Any = None,
        allowed_providers: Any = None,
        metadata: Any = None,
        limits: Limits | None = None,
    ) -> TeamInfo:
        check_name(name, "team name")
        models = check_patterns(allowed_models, "allowed_models")
        providers = check_patterns(allowed_providers, "allowed_providers")
        meta = check_metadata(metadata)
        lim = (limits or NO_LIMITS).as_dict()
        team_id = "team_" + secrets.token_hex(6)
        with self.db.connect() as db:
            try:
                db.execute(
                    "INSERT INTO teams (team_id, name, created_at, allowed_models, allowed_providers, metadata, "
                    "budget_daily_usd, budget_monthly_usd, budget_total_usd, rpm, tpm) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        team_id,
                        name,
                        self.clock(),
                        json.dumps(list(models)) if models else None,
                        json.dumps(list(providers)) if providers else None,
                        json.dumps(meta) if meta else None,
                        lim["budget_daily_usd"],
                        lim["budget_monthly_usd"],
                        lim["budget_total_usd"],
                        lim["rpm"],
                        lim["tpm"],
                    ),
                )
            except IntegrityError as exc:
                raise Conflict(f"a team is already named {name!r}", param="name") from exc
        self.db.bump()
        return self.require(team_id)

    def list(self) -> list[TeamInfo]:
        with self.db.connect() as db:
            rows = db.execute(f"SELECT {_COLS} FROM teams ORDER BY created_at, team_id").fetchall()
        return [_team(r) for r in rows]

    def get(self, team_id_or_name: str) -> TeamInfo | None:
        with self.db.connect() as db:
            row = db.execute(
                f"SELECT {_COLS} FROM teams WHERE team_id=? OR name=? LIMIT 1",
                (team_id_or_name, team_id_or_name),
            ).fetchone()
        return _team(row) if row else None

    def require(self, team_id_or_name: str) -> TeamInfo:
        team = self.get(team_id_or_name)
        if team is None:
            raise NotFound(f"no team with id or name {team_id_or_name!r}", code="team_not_found")
        return team

    def update(self, team_id_or_name: str, changes: Mapping[str, Any]) -> tuple[TeamInfo, TeamInfo]:
        before = self.require(team_id_or_name)
        unknown = sorted(set(changes) - _FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        sets: dict[str, Any] = {}
        if "name" in changes:
            sets["name"] = check_name(changes["name"], "team name")
        for f in ("allowed_models", "allowed_providers"):
            if f in changes:
                v = check_patterns(changes[f], f)
                sets[f] = json.dumps(list(v)) if v else None
        if "metadata" in changes:
            meta = check_metadata(changes["metadata"])
            sets["metadata"] = json.dumps(meta) if meta else None
        lim = Limits.parse(dict(changes), before.limits).as_dict()
        for col in ("budget_daily_usd", "budget_monthly_usd", "budget_total_usd", "rpm", "tpm"):
            if col in changes:
                sets[col] = lim[col]
        if not sets:
            return before, before
        sets["updated_at"] = self.clock()
        assignments = ", ".join(f"{c}=?" for c in sets)  # fixed column names; values are parameters
        with self.db.connect() as db:
            try:
                db.execute(
                    f"UPDATE teams SET {assignments} WHERE team_id=?", (*sets.values(), before.team_id)
                )
            except IntegrityError as exc:
                raise Conflict(f"a team is already named {sets.get('name')!r}", param="name") from exc
        self.db.bump()
        return before, self.require(before.team_id)

    def delete(self, team_id_or_name: str) -> TeamInfo:
        team = self.require(team_id_or_name)
        with self.db.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                active = db.execute(
                    "SELECT COUNT(*) FROM gateway_keys WHERE team_id=? AND revoked_at IS NULL",
                    (team.team_id,),
                ).fetchone()[0]
                if active:
                    raise Conflict(
                        f"team {team.name!r} still has {active} active key(s); revoke them first",
                        code="team_in_use",
                    )
                db.execute(
                    "UPDATE provider_keys SET revoked_at=? WHERE team_id=? AND revoked_at IS NULL",
                    (self.clock(), team.team_id),
                )
                db.execute("DELETE FROM teams WHERE team_id=?", (team.team_id,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self.db.bump()
        return team
