"""The ledger's ``calls.kind`` (migration 8) on every backend: SQLite (process and thread writer)
and PostgreSQL (a schema of its own per test)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from fareway.ledger.migrations import SQLITE_MIGRATIONS, migrate_sqlite
from tests.test_ledger import Factory, make_call, make_ledger, started

__all__ = ["make_ledger"]  # the backend-parametrised fixture, shared with test_ledger


async def test_the_kind_of_a_call_round_trips(make_ledger: Factory) -> None:
    ledger = await started(make_ledger)
    chat, chat_attempts = make_call(1)
    emb, emb_attempts = make_call(2, model="text-embedding-3-small")
    emb = dataclasses.replace(emb, kind="embedding", output_tokens=0)
    ledger.record(chat, chat_attempts)
    ledger.record(emb, emb_attempts)
    await ledger.flush()
    kinds = {r.call.request_id: r.call.kind for r in await ledger.recent_calls(n=10)}
    assert kinds == {chat.request_id: "chat", emb.request_id: "embedding"}
    csv = await ledger.export_csv()
    header = csv.splitlines()[0].split(",")
    assert "kind" in header
    rows = [line.split(",") for line in csv.splitlines()[1:]]
    assert sorted(r[header.index("kind")] for r in rows) == ["chat", "embedding"]


def test_rows_written_before_the_migration_are_chat(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    for version, _, fn in SQLITE_MIGRATIONS:
        if version < 8:
            fn(conn)
    conn.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    for version, description, _ in SQLITE_MIGRATIONS:
        if version < 8:
            conn.execute("INSERT INTO schema_version VALUES (?, ?, '2026-01-01')", (version, description))
    conn.execute(
        "INSERT INTO calls (request_id, requested_model, time, client_dialect, status, outcome, stream,"
        " input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, estimated,"
        " cache, route, attempts) VALUES ('old', 'gpt-4o-mini', '2026-01-01', 'openai', 200, 'ok', 0,"
        " 1, 0, 0, 1, 0, 0, 'bypass', '', 1)"
    )
    assert migrate_sqlite(conn) == SQLITE_MIGRATIONS[-1][0]
    assert conn.execute("SELECT kind FROM calls WHERE request_id = 'old'").fetchone() == ("chat",)
    conn.close()
