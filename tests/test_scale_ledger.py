"""The PostgreSQL ledger when the server kills its connections (``pg_terminate_backend``, as a
failover or an operator does) while calls are recorded: batches go to the local spool, are
written once when the writer has reconnected, and every call is in the database exactly once.
Plus: the ledger's writes to the raw tables are appends (no UPDATE of a call or attempt row)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fareway.ledger import postgres_store
from tests.test_ledger import PG_URL
from tests.test_ledger_pg_faults import assert_exactly_once, env, poll, record_calls, settled

__all__ = ["env"]  # the fixture, shared with the fault tests


async def _terminate(writer_id: str) -> int:
    conn = await asyncpg.connect(PG_URL)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", writer_id
        )
    finally:
        await conn.close()
    return len(rows)


@pytest.mark.postgres
async def test_connections_killed_by_the_server_mid_load_lose_and_double_nothing(
    env: dict[str, Any],
) -> None:
    ledger = env["open"](PG_URL)
    await ledger.start()
    writer_id = ledger.store.writer_id  # type: ignore[attr-defined]
    attempts = await record_calls(ledger, 0, 500)
    await ledger.flush()
    killing = True
    killed = 0

    async def killer() -> None:  # the writer's sessions die as fast as they are opened
        nonlocal killed
        while killing:
            killed += await _terminate(writer_id)
            await asyncio.sleep(0.002)

    task = asyncio.create_task(killer())
    attempts += await record_calls(ledger, 500, 2500, chunk=20)
    await poll(lambda: ledger.stats.spooled > 0, within=10.0, what="batches spooled")
    killing = False
    await task
    await ledger.flush()
    assert killed >= 1
    await poll(settled(ledger, 2500), within=30.0, what="every batch written after the kills")
    print(f"killed {killed} session(s); ledger stats {ledger.stats}")
    await assert_exactly_once(env["schema"], 2500, attempts)


def test_ledger_writes_to_calls_and_attempts_are_appends_only() -> None:
    """No statement of the Postgres writer updates or upserts a raw row (``calls``, ``attempts``):
    rows are inserted once; only the writer's own bookkeeping and the rollups are upserted."""
    src = Path(postgres_store.__file__).parent
    text = "\n".join(p.read_text() for p in (src / "postgres_store.py", src / "pg_batch.py"))
    assert not re.search(r"UPDATE\s+(\S+\.)?(calls|attempts)\b", text, re.IGNORECASE)
    assert re.search(r"INSERT INTO\s+\S*calls", text) or "copy_records_to_table" in text
