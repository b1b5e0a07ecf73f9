"""The audit log of admin actions: who created, changed, rotated or revoked what, and when.

One row per action in the state DB's ``audit_log``: the time, the actor (a key's name and id, or
``cli:<user>`` for the local command line), the client address for HTTP, the action
(``key.create``, ``key.update``, ``key.rotate``, ``key.revoke``, ``team.create``, ``team.update``,
``team.delete``, ``provider_key.add``, ``provider_key.revoke``, ``vault.rotate_master``), the
target, and what changed.  Secrets never enter it: a gateway key appears as its prefix, a provider
key as its fingerprint.  Rows are only ever appended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fareway.keys.state_db import StateStore


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    key_id: str | None = None
    client: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    actor_key_id: str | None
    client: str | None
    action: str
    target_type: str
    target_id: str | None
    target_name: str | None
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "actor_key_id": self.actor_key_id,
            "client": self.client,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "target_name": self.target_name,
            "details": self.details,
        }


MAX_ROWS = 1000


class AuditLog:
    def __init__(self, db: StateStore, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def record(
        self,
        actor: Actor,
        action: str,
        target_type: str,
        target_id: str | None,
        target_name: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        with self.db.connect() as db:
            db.execute(
                "INSERT INTO audit_log (at, actor, actor_key_id, client, action, target_type, target_id, "
                "target_name, details) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    self.clock(),
                    actor.name,
                    actor.key_id,
                    actor.client,
                    action,
                    target_type,
                    target_id,
                    target_name,
                    json.dumps(details or {}, default=str, sort_keys=True),
                ),
            )

    def query(
        self,
        *,
        n: int = 50,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
    ) -> list[AuditEntry]:
        """The newest ``n`` entries (at most 1000) matching every filter given: ``action`` is an
        exact action or a prefix ending in a dot (``key.``), ``target`` an id or a name, ``actor``
        a name or a key id; ``since``/``until`` Unix times (``[since, until)``)."""
        sql = (
            "SELECT seq, at, actor, actor_key_id, client, action, target_type, target_id, target_name, details "
            "FROM audit_log WHERE 1=1"
        )
        args: list[Any] = []
        if since is not None:
            sql += " AND at >= ?"
            args.append(since)
        if until is not None:
            sql += " AND at < ?"
            args.append(until)
        if actor is not None:
            sql += " AND (actor = ? OR actor_key_id = ?)"
            args += [actor, actor]
        if action is not None:
            if action.endswith("."):
                sql += " AND substr(action, 1, ?) = ?"
                args += [len(action), action]
            else:
                sql += " AND action = ?"
                args.append(action)
        if target is not None:
            sql += " AND (target_id = ? OR target_name = ?)"
            args += [target, target]
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(max(1, min(MAX_ROWS, n)))
        with self.db.connect() as db:
            rows = db.execute(sql, args).fetchall()
        return [
            AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]) if r[9] else {})
            for r in rows
        ]
