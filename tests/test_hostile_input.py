"""Hostile input against a live gateway: every refusal is a 4xx in the caller's dialect, without a
traceback, and (for a chat request) exactly one ledger row; a Gemini model id never changes the
path the upstream is asked for.

The upstream is tests/echo_upstream.py (it records the raw path of every request it gets); the
gateway is the real app on uvicorn (tests/conftest.py), with custom providers of each dialect.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fareway.config import load_config
from fareway.errors import BadRequest
from fareway.wire.limits import check_depth

from .conftest import MASTER_KEY, LiveGateway, start_gateway
from .echo_upstream import EchoUpstream, start_echo_upstream

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
_GEMINI_OK_PATH = re.compile(
    r"^/gem/v1beta/(models|tunedModels)/[A-Za-z0-9._-]+:(generateContent|streamGenerateContent)$"
)


@pytest.fixture(scope="module")
async def echo() -> AsyncIterator[EchoUpstream]:
    up = await start_echo_upstream()
    yield up
    await up.stop()


@pytest.fixture(scope="module")
async def hgw(echo: EchoUpstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveGateway]:
    tmp = Path(tmp_path_factory.mktemp("hostile-input"))
    f = tmp / "fareway.toml"
    f.write_text(
        f"""
[server]
state_dir = "{tmp / "state"}"

[providers.oai]
dialect = "openai"
base_url = "{echo.url}/oai/v1"
api_key = "oai-key-0123456789"

[providers.ant]
dialect = "anthropic"
base_url = "{echo.url}/ant"
api_key = "ant-key-0123456789"

[providers.gem]
dialect = "gemini"
base_url = "{echo.url}/gem/v1beta"
api_key = "gem-key-0123456789"
"""
    )
    gw = await start_gateway(load_config(f, env={"FAREWAY_MASTER_KEY": MASTER_KEY}))
    yield gw
    await gw.stop()


def check_refusal(client: str, status: int, raw: bytes, what: Any) -> dict[str, Any]:
    """A 4xx whose body is the error JSON of ``client``'s dialect, with no traceback."""
    assert 400 <= status < 500, (what, status, raw[:500])
    assert b"Traceback" not in raw and b'File "' not in raw, what
    data = json.loads(raw)
    if client == "openai":
        assert set(data) == {"error"}, what
        err = data["error"]
        assert isinstance(err["message"], str) and isinstance(err["type"], str), what
        assert {"message", "type", "param", "code"} <= set(err), what
    else:
        assert data["type"] == "error" and isinstance(data["error"]["type"], str), what
        assert isinstance(data["error"]["message"], str), what
    return data


async def post(s: aiohttp.ClientSession, gw: LiveGateway, client: str, body: bytes) -> tuple[int, bytes, str]:
    headers = {**ADMIN, "content-type": "application/json"}
    async with s.post(gw.url + PATHS[client], data=body, headers=headers) as r:
        return r.status, await r.read(), r.headers.get("x-request-id", "")


async def ledger_rows(gw: LiveGateway, request_ids: list[str]) -> dict[str, int]:
    ledger = gw.app.gateway.accounting.ledger
    await ledger.flush()
    wanted = set(request_ids)
    counts = dict.fromkeys(wanted, 0)
    for row in await ledger.recent_calls(n=100_000):
        if row.call.request_id in wanted:
            counts[row.call.request_id] += 1
    return counts


def base(client: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "oai/ok" if client == "openai" else "ant/ok",
        "messages": [{"role": "user", "content": "hi"}],
    }
    if client == "anthropic":
        body["max_tokens"] = 16
    body.update(over)
    return body


def nested(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    v = leaf
    for _ in range(depth - 1):
        v = [v] if kind == "list" else {"a": v}
    return v


def ref_chain(n: int, fanout: int = 1) -> dict[str, Any]:
    """A flat JSON schema whose ``$ref`` hops go ``n`` deep (``fanout`` refs per level)."""
    defs = {
        f"d{i}": {
            "type": "object",
            "properties": {f"p{j}": {"$ref": f"#/$defs/d{i + 1}"} for j in range(fanout)},
        }
        for i in range(n)
    }
    defs[f"d{n}"] = {"type": "string"}
    return {"type": "object", "properties": {"root": {"$ref": "#/$defs/d0"}}, "$defs": defs}


def tool(schema: dict[str, Any], client: str) -> list[dict[str, Any]]:
    if client == "openai":
        return [{"type": "function", "function": {"name": "t", "parameters": schema}}]
    return [{"name": "t", "input_schema": schema}]


def hostile_cases(client: str) -> list[tuple[str, bytes]]:
    """(what, body) pairs that must each be refused with a 4xx."""
    deep = 300
    cases: dict[str, Any] = {
        "deep list in an unknown field": base(client, x_extra=nested(deep)),
        "deep object in metadata": base(client, metadata=nested(deep, kind="dict")),
        "deep list in message content": base(
            client, messages=[{"role": "user", "content": nested(deep, "x")}]
        ),
        "deep tool schema": base(client, tools=tool(nested(deep, {"type": "string"}, "dict"), client)),
        "NUL in the model name": base(client, model="oai/gpt\x00x"),
        "CR LF in the model name": base(client, model="oai/gpt\r\nx-evil: 1"),
        "tab in the model name": base(client, model="oai/gpt\tx"),
        "NEL in the model name": base(client, model="oai/gpt\x85x"),
        "a 1 MB model name": base(client, model="oai/" + "m" * 1_000_000),
        "a 257-character model name": base(client, model="oai/" + "m" * 253),
        "max_tokens 2^63-1": base(client, max_tokens=2**63 - 1),
        "max_tokens 2^31": base(client, max_tokens=2**31),
        "max_tokens 0": base(client, max_tokens=0),
        "max_tokens -1": base(client, max_tokens=-1),
        "max_tokens 2^70 (a float to JSON)": base(client, max_tokens=2**70),
        "temperature -1": base(client, temperature=-1),
        "temperature 1e308": base(client, temperature=1e308),
        "top_p 1.5": base(client, top_p=1.5),
        "gemini: a $ref chain 200 deep": base(
            client, model="gem/gemini-2.5-flash", tools=tool(ref_chain(200), client)
        ),
        "gemini: model id with ..": base(client, model="gem/x/../../_stats"),
    }
    if client == "openai":
        cases |= {
            "n 0": base(client, n=0),
            "n 1000": base(client, n=1000),
            "seed 2^63": base(client, seed=2**63),
            "frequency_penalty 5": base(client, frequency_penalty=5),
            "presence_penalty -3": base(client, presence_penalty=-3),
            "max_completion_tokens 2^63-1": base(client, max_completion_tokens=2**63 - 1),
        }
    else:
        cases |= {
            "empty messages": base(client, messages=[]),
            "top_k -1": base(client, top_k=-1),
            "top_k 2^40": base(client, top_k=2**40),
            "temperature 5": base(client, temperature=5),
        }
    out = [(k, json.dumps(v).encode()) for k, v in cases.items()]
    head = json.dumps(base(client)).encode()[:-1]
    out.append(("JSON past the parser's own limit", head + b', "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"))
    out.append(("not JSON at all", b"{nope"))
    out.append(("a JSON array", b"[1, 2]"))
    return out


@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_each_hostile_request_is_a_4xx_in_dialect_with_one_ledger_row(
    hgw: LiveGateway, echo: EchoUpstream, client: str
) -> None:
    ids: list[str] = []
    seen_before = len(echo.seen)
    async with aiohttp.ClientSession() as s:
        for what, body in hostile_cases(client):
            status, raw, rid = await post(s, hgw, client, body)
            check_refusal(client, status, raw, what)
            assert rid, what
            ids.append(rid)
            if what.startswith(("deep", "max_tokens", "temperature", "n ", "seed", "top_")):
                assert status == 400, (what, status)
            if "model name" in what:
                err = json.loads(raw)["error"]
                assert status == 400 and (client != "openai" or err["param"] == "model"), (what, raw[:300])
                assert len(raw) < 2000, what  # a huge model name is not echoed back
    assert len(echo.seen) == seen_before, "no hostile request may reach an upstream"
    counts = await ledger_rows(hgw, ids)
    assert counts == dict.fromkeys(ids, 1), {k: v for k, v in counts.items() if v != 1}


async def test_gemini_schema_that_doubles_per_level_goes_untranslated(
    hgw: LiveGateway, echo: EchoUpstream
) -> None:
    """25 levels with two refs each (2^25 nodes if expanded): sent as parametersJsonSchema."""
    async with aiohttp.ClientSession() as s:
        body = base("openai", model="gem/gemini-2.5-flash", tools=tool(ref_chain(25, fanout=2), "openai"))
        status, raw, _ = await post(s, hgw, "openai", json.dumps(body).encode())
    assert status == 200, raw[:500]
    assert echo.seen[-1].path == "/gem/v1beta/models/gemini-2.5-flash:streamGenerateContent"


async def test_usage_since_far_in_the_past_is_a_400(hgw: LiveGateway) -> None:
    async with aiohttp.ClientSession() as s:
        for q in (
            "since=99999999d",
            "since=" + "9" * 400 + "d",
            "until=9999-12-31T23:59:59-05:00",
            "since=0001-01-01T00:00:00%2B05:00",
        ):
            for path in ("/v1/usage", "/v1/usage/export"):
                async with s.get(f"{hgw.url}{path}?{q}", headers=ADMIN) as r:
                    check_refusal("openai", r.status, await r.read(), (path, q))
                    assert r.status == 400


# ------------------------------------------------------------------- Gemini ids in the URL path

BAD_GEMINI_IDS = [
    "x/../../_stats",
    "x?key=1#",
    "x#frag",
    "%2e%2e",
    "%2e%2e/_stats",
    "..",
    ".",
    "models/../x",
    "models/",
    "tunedModels/a/b",
    "x:streamGenerateContent",
    "a b",
    "x/y",
    "x\\..\\y",
    "é",
]
GOOD_GEMINI_IDS = {
    "gemini-2.5-flash": "/gem/v1beta/models/gemini-2.5-flash",
    "models/gemini-2.0-flash-001": "/gem/v1beta/models/gemini-2.0-flash-001",
    "tunedModels/my_model.v2": "/gem/v1beta/tunedModels/my_model.v2",
}


@pytest.mark.parametrize("client", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_model_ids_never_change_the_upstream_path(
    hgw: LiveGateway, echo: EchoUpstream, client: str, stream: bool
) -> None:
    ids: list[str] = []
    async with aiohttp.ClientSession() as s:
        for bad in BAD_GEMINI_IDS:
            before = len(echo.seen)
            body = json.dumps(base(client, model=f"gem/{bad}", stream=stream)).encode()
            status, raw, rid = await post(s, hgw, client, body)
            check_refusal(client, status, raw, bad)
            assert status in (400, 404), (bad, status)
            assert len(echo.seen) == before, f"{bad!r} reached the upstream as {echo.seen[-1].raw_path}"
            ids.append(rid)
        for good, path in GOOD_GEMINI_IDS.items():
            body = json.dumps(base(client, model=f"gem/{good}", stream=stream)).encode()
            status, raw, _ = await post(s, hgw, client, body)
            assert status == 200, (good, raw[:300])
            # non-streamed calls are read from the upstream as streams too ([timeouts] stream_upstream)
            method = ":streamGenerateContent"
            assert echo.seen[-1].path == path + method, good
            assert echo.seen[-1].raw_path.startswith(path + method), good
    assert all(_GEMINI_OK_PATH.match(seen.path) for seen in echo.seen if seen.path.startswith("/gem/"))
    counts = await ledger_rows(hgw, ids)
    assert counts == dict.fromkeys(ids, 1)


# ------------------------------------------------------------------------ generated bad bodies

_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["\x00", "\r\n", "\x1b[31m", "é", "\ud7ff", "oai/ok", "ant/ok", "gem/../x"])
)
_JSON = st.recursive(
    _LEAF,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=12,
)
_FIELDS = [
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "n",
    "seed", "stream", "stream_options", "tools", "tool_choice", "stop", "stop_sequences", "metadata",
    "response_format", "system", "thinking", "user", "reasoning_effort", "parallel_tool_calls",
]  # fmt: skip


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str, bytes]:
    client = draw(st.sampled_from(["openai", "anthropic"]))
    kind = draw(st.sampled_from(["field", "field", "message", "bytes", "top"]))
    body = base(client)
    if kind == "bytes":
        return client, draw(st.binary(max_size=60))
    if kind == "top":
        return client, json.dumps(draw(_JSON)).encode()
    if kind == "message":
        body["messages"] = [
            draw(st.dictionaries(st.sampled_from(["role", "content", "name", "tool_calls"]), _JSON))
        ]
    else:
        for name in draw(st.lists(st.sampled_from(_FIELDS), min_size=1, max_size=3, unique=True)):
            body[name] = draw(_JSON)
    if body.get("stream") is not True:
        body.pop("stream", None)
    return client, json.dumps(body).encode()


def generated_bodies(n: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(case=malformed())
    def collect(case: tuple[str, bytes]) -> None:
        out.append(case)

    collect()
    return out


async def test_generated_malformed_bodies_get_4xx_or_a_clean_answer(hgw: LiveGateway) -> None:
    cases = generated_bodies(300)
    refused: list[str] = []
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession() as s:
        for client, body in cases:
            status, raw, rid = await post(s, hgw, client, body)
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, (client, body[:300], status, raw[:300])
            assert b"Traceback" not in raw
            if status >= 400:
                check_refusal(client, status, raw, body[:300])
                refused.append(rid)
    assert len(refused) > len(cases) // 2, statuses  # most generated bodies are bad ones
    counts = await ledger_rows(hgw, refused)
    assert counts == dict.fromkeys(refused, 1)


def _reference_depth(v: Any) -> int:
    if isinstance(v, dict):
        return 1 + max((_reference_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_reference_depth(x) for x in v), default=0)
    return 0


_NESTED = st.recursive(
    st.none() | st.integers() | st.sampled_from(['a]}[{"\\', "[[[", "{{"]),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(["a", "b]", '"{']), kids, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(value=_NESTED, limit=st.integers(min_value=1, max_value=10))
def test_depth_check_agrees_with_a_recursive_count(value: Any, limit: int) -> None:
    body = json.dumps(value).encode()
    try:
        check_depth(body, value, limit)
        refused = False
    except BadRequest:
        refused = True
    assert refused == (_reference_depth(value) > limit)
