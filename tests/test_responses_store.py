"""The responses store on both backends (SQLite file, the real PostgreSQL on 127.0.0.1), and a
gateway whose ledger is on Postgres continuing a conversation through it."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fareway.ledger.migrations import PG_MIGRATIONS, SQLITE_MIGRATIONS
from fareway.ledger.responses_store import (
    PostgresResponseStore,
    ResponseStore,
    SqliteResponseStore,
    StoredResponse,
    open_store,
)
from tests.conftest import gateway_config, openai_client, start_gateway

PG_URL = os.environ.get("FAREWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg_reachable() -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_URL, timeout=3)
    except Exception as exc:  # unreachable server, auth, missing database
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResponseStore]:
    schema = f"fw_test_{uuid.uuid4().hex[:12]}"
    if request.param == "postgres":
        reason = await _pg_reachable()
        if reason is not None:
            pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({reason})")
        s: ResponseStore = PostgresResponseStore(PG_URL, schema)
    else:
        s = SqliteResponseStore(str(tmp_path / "fareway.db"))
    await s.start()
    yield s
    await s.close()
    if request.param == "postgres":
        await _drop_schema(schema)


def _rec(rid: str, tenant: str, *, prev: str | None = None) -> StoredResponse:
    return StoredResponse(
        id=rid,
        tenant=tenant,
        request_id="req_1",
        response={
            "id": rid,
            "object": "response",
            "output": [{"id": f"msg_{rid}", "type": "message", "role": "assistant", "content": []}],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
        },
        context=[
            {
                "id": f"in_{rid}",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            }
        ],
        previous_response_id=prev,
        created_at=1_790_000_000.5,
    )


def test_migration_4_is_the_responses_tables_on_both_backends() -> None:
    assert SQLITE_MIGRATIONS[3][0] == 4 and PG_MIGRATIONS[3][0] == 4
    assert SQLITE_MIGRATIONS[3][1] == PG_MIGRATIONS[3][1]
    conn = sqlite3.connect(":memory:", isolation_level=None)
    SQLITE_MIGRATIONS[3][2](conn)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(responses)")]
    assert cols == ["id", "tenant", "created_at", "previous_response_id", "request_id", "response", "context"]
    conn.close()


async def test_put_then_get_at_once(store: ResponseStore) -> None:
    rec = _rec("resp_a", "key_1")
    await store.put(rec)
    got = await store.get("key_1", "resp_a")  # no flush, no delay: the write is committed
    assert got is not None
    assert got.response == rec.response and got.context == rec.context
    assert got.request_id == "req_1" and got.previous_response_id is None
    assert got.created_at == pytest.approx(rec.created_at)


async def test_another_tenant_sees_nothing(store: ResponseStore) -> None:
    await store.put(_rec("resp_b", "key_1"))
    assert await store.get("key_2", "resp_b") is None
    assert await store.items("key_2", ["msg_resp_b", "in_resp_b"]) == {}
    assert await store.delete("key_2", "resp_b") is False
    assert await store.get("key_1", "resp_b") is not None


async def test_items_by_id_and_delete(store: ResponseStore) -> None:
    await store.put(_rec("resp_c", "key_1"))
    await store.put(_rec("resp_d", "key_1", prev="resp_c"))
    items = await store.items("key_1", ["msg_resp_c", "in_resp_d", "nope"])
    assert set(items) == {"msg_resp_c", "in_resp_d"}
    assert items["msg_resp_c"]["role"] == "assistant"
    assert (await store.get("key_1", "resp_d")).previous_response_id == "resp_c"  # type: ignore[union-attr]
    assert await store.delete("key_1", "resp_c") is True
    assert await store.get("key_1", "resp_c") is None
    assert await store.items("key_1", ["msg_resp_c"]) == {}
    assert await store.delete("key_1", "resp_c") is False


async def test_cost_is_added_after_accounting(store: ResponseStore) -> None:
    await store.put(_rec("resp_e", "key_1"))
    await store.set_cost("key_1", "resp_e", 0.00042)
    got = await store.get("key_1", "resp_e")
    assert got is not None and got.response["usage"]["cost"] == 0.00042


def test_open_store_picks_the_ledgers_backend(tmp_path: Path) -> None:
    assert isinstance(open_store("postgresql://u@h/db", str(tmp_path / "x.db")), PostgresResponseStore)
    assert isinstance(open_store(None, str(tmp_path / "x.db")), SqliteResponseStore)
    s = open_store(f"sqlite:///{tmp_path}/y.db", str(tmp_path / "x.db"))
    assert isinstance(s, SqliteResponseStore) and s.path == f"{tmp_path}/y.db"


@pytest.mark.postgres
async def test_gateway_on_postgres_continues_a_conversation(sim: Any, tmp_path: Path) -> None:
    reason = await _pg_reachable()
    if reason is not None:
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({reason})")
    schema = f"fw_test_{uuid.uuid4().hex[:12]}"
    cfg = dataclasses.replace(gateway_config(sim.url, tmp_path), ledger_url=PG_URL, ledger_schema=schema)
    gw = await start_gateway(cfg)
    try:
        c = openai_client(gw.url + "/v1")
        tool = {
            "type": "function",
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
        first = await c.responses.create(
            model="anthropic/claude-sonnet-4-5", input="find it; use lookup", tools=[tool]
        )
        call = next(o for o in first.output if o.type == "function_call")
        second = await c.responses.create(
            model="anthropic/claude-sonnet-4-5",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "found"}],
            tools=[tool],
        )
        assert second.output_text and second.previous_response_id == first.id
        import asyncpg

        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            rows = await conn.fetch("SELECT id, tenant FROM responses ORDER BY created_at, id")
        finally:
            await conn.close()
        assert {r["id"] for r in rows} == {first.id, second.id}
        assert {r["tenant"] for r in rows} == {"master"}
    finally:
        await gw.stop()
        await _drop_schema(schema)
