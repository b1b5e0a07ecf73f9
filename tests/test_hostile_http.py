"""Hostile input at the HTTP level, in-process (the ASGI app with a canned upstream): whatever the
body and headers, the answer is a clear error in the caller's dialect or a success — never a 500,
a stack trace or a provider key."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fareway.config import load_config
from fareway.server.factory import build_app

PROVIDER_KEY = "sk-provider-secret-0123456789abcdef"
MASTER = "hostile-master-key"

_BODY = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
)


class _Resp:
    status = 200
    headers: dict[str, str] = {"content-type": "application/json"}

    async def read(self) -> bytes:
        return _BODY

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Transport:
    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, req: Any, provider: str, *, total: float, idle: float) -> _Resp:
        return _Resp()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cfg = load_config(None, env={"OPENAI_API_KEY": PROVIDER_KEY, "ANTHROPIC_API_KEY": PROVIDER_KEY})
    cfg = dataclasses.replace(
        cfg,
        master_key=MASTER,
        state_dir=Path(tmp_path_factory.mktemp("hostile")),
        max_body_bytes=20_000,
        ledger_enabled=False,
    )
    application = build_app(cfg)
    application.gateway.executor.transport = _Transport()  # type: ignore[assignment]
    return application


async def call(app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""}
    sent: list[dict[str, Any]] = []
    chunks = [body[i : i + 7000] for i in range(0, len(body), 7000)] or [b""]

    async def receive() -> dict[str, Any]:
        if chunks:
            c = chunks.pop(0)
            return {"type": "http.request", "body": c, "more_body": bool(chunks)}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    await app(scope, receive, send)
    status = sent[0]["status"]
    out = b"".join(m.get("body", b"") for m in sent[1:])
    return status, out


def _check(status: int, out: bytes, dialect: str) -> None:
    assert status in (200, 400, 401, 404, 413, 422), (status, out[:300])
    text = out.decode("utf-8", "replace")
    assert "Traceback" not in text and PROVIDER_KEY not in text
    if status != 200:
        data = orjson.loads(out)
        if dialect == "openai":
            assert set(data["error"]) >= {"message", "type", "param", "code"}
        else:
            assert data["type"] == "error" and {"type", "message"} <= set(data["error"])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
near_valid = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just("openai/gpt-4o-mini"), st.just("anthropic/claude-haiku-4-5"), json_values),
        "messages": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "role": st.sampled_from(["user", "assistant", "system", "tool", "x"]),
                        "content": json_values,
                    }
                ),
                max_size=3,
            ),
            json_values,
        ),
    },
    optional={
        "max_tokens": json_values,
        "stream": json_values,
        "tools": json_values,
        "tool_choice": json_values,
        "temperature": json_values,
        "stop": json_values,
    },
)
AUTH = [(b"authorization", f"Bearer {MASTER}".encode()), (b"content-type", b"application/json")]


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=300) | near_valid.map(orjson.dumps) | json_values.map(orjson.dumps))
async def test_openai_endpoint_never_fails_badly(app: Any, body: bytes) -> None:
    status, out = await call(app, "/v1/chat/completions", body, AUTH)
    _check(status, out, "openai")


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=300) | near_valid.map(orjson.dumps) | json_values.map(orjson.dumps))
async def test_anthropic_endpoint_never_fails_badly(app: Any, body: bytes) -> None:
    status, out = await call(app, "/v1/messages", body, [*AUTH, (b"anthropic-version", b"2023-06-01")])
    _check(status, out, "anthropic")


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    value=st.text(max_size=60), name=st.sampled_from([b"authorization", b"x-api-key", b"anthropic-version"])
)
async def test_hostile_headers(app: Any, value: str, name: bytes) -> None:
    body = orjson.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    status, out = await call(app, "/v1/chat/completions", body, [(name, value.encode("utf-8", "replace"))])
    _check(status, out, "openai")


async def test_oversized_body_in_chunks_is_413(app: Any) -> None:
    body = orjson.dumps(
        {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 50_000}]}
    )
    status, out = await call(app, "/v1/messages", body, AUTH)
    assert status == 413
    assert orjson.loads(out)["error"]["type"] == "request_too_large"


async def test_model_name_with_newlines_cannot_inject_headers(app: Any) -> None:
    body = orjson.dumps({"model": "openai/gpt\r\nx-evil: 1", "messages": [{"role": "user", "content": "hi"}]})
    status, out = await call(app, "/v1/chat/completions", body, AUTH)
    assert status == 400  # refused at parse time: a model name is printable text
    assert orjson.loads(out)["error"]["param"] == "model"
    _check(status, out, "openai")


def test_request_ids_are_unique_and_sort_by_time() -> None:
    """Time-ordered ids keep the ledger's request_id index append-only (see new_request_id)."""
    import re
    import time

    from fareway.server.http import new_request_id

    before = f"{time.time_ns() // 1_000_000:012x}"
    ids = [new_request_id() for _ in range(5000)]
    after = f"{time.time_ns() // 1_000_000:012x}"
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)
    stamps = [i[4:16] for i in ids]
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= after
