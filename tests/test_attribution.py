"""Attribution (issue 16, item 6): the end user (OpenAI ``user``, Anthropic ``metadata.user_id``,
the Responses API's ``user``) and request tags (``x-fareway-tags`` header, ``metadata.tags``)
recorded per call, and ``group_by=user|tag`` in /v1/usage (JSON, CSV), ``fareway usage`` and the
dashboard's overview, against a live gateway through the official SDKs.

The expected groups are written out by hand from the calls the test makes; the per-call costs and
tokens they are summed from are read from /v1/logs (each call's own row)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from click.testing import CliRunner

from fareway.adapters.anthropic import ADAPTER as ANTHROPIC_ADAPTER
from fareway.adapters.openai_chat import ADAPTER as OPENAI_ADAPTER
from fareway.cli_usage import usage_cmd
from fareway.pipeline import attribution
from fareway.types import Upstream
from fareway.wire import anthropic as anthropic_wire
from fareway.wire import openai_chat as openai_wire
from tests.conftest import (
    MASTER_KEY,
    LiveGateway,
    anthropic_client,
    gateway_config,
    openai_client,
    start_gateway,
)

OPENAI_MODEL = "openai/gpt-4o-mini"
CLAUDE_MODEL = "anthropic/claude-3-5-haiku-latest"

# (user, tags) of every successful call the module makes, in order
CALLS: list[tuple[str | None, tuple[str, ...]]] = [
    ("alice", ("beta", "search")),  # chat, header "search, beta"
    ("alice", ("search",)),  # chat, metadata.tags "search"
    (None, ()),  # chat, nothing
    ("alice", ()),  # chat, streamed
    ("bob", ("chat",)),  # messages, header
    ("bob", ("chat", "search")),  # messages, metadata.tags list + header "chat"
    (None, ("beta",)),  # messages, no user
    ("carol", ("beta",)),  # responses, user + metadata.tags
]


async def _get(gw: LiveGateway, path: str, **params: str) -> Any:
    async with (
        aiohttp.ClientSession() as s,
        s.get(gw.url + path, params=params, headers={"authorization": f"Bearer {MASTER_KEY}"}) as r,
    ):
        assert r.status == 200, await r.text()
        if params.get("format") == "csv":
            return await r.text()
        return await r.json()


def _meta(user: str, tags: Any) -> Any:
    """Anthropic ``metadata`` with ``tags`` (the SDK's type knows only ``user_id``)."""
    return {"user_id": user, "tags": tags}


async def _make_calls(gw: LiveGateway) -> None:
    oa = openai_client(gw.url + "/v1")
    an = anthropic_client(gw.url)
    msgs: Any = [{"role": "user", "content": "echo:hello there"}]
    await oa.chat.completions.create(
        model=OPENAI_MODEL, messages=msgs, user="alice", extra_headers={"x-fareway-tags": "search, beta"}
    )
    await oa.chat.completions.create(
        model=OPENAI_MODEL, messages=msgs, user="alice", metadata={"tags": "search"}
    )
    await oa.chat.completions.create(model=OPENAI_MODEL, messages=msgs)
    stream = await oa.chat.completions.create(model=OPENAI_MODEL, messages=msgs, user="alice", stream=True)
    async for _ in stream:
        pass
    await an.messages.create(
        model=CLAUDE_MODEL,
        max_tokens=64,
        messages=msgs,
        metadata={"user_id": "bob"},
        extra_headers={"x-fareway-tags": "chat"},
    )
    await an.messages.create(
        model=CLAUDE_MODEL,
        max_tokens=64,
        messages=msgs,
        metadata=_meta("bob", ["search", "chat"]),
        extra_headers={"x-fareway-tags": "chat"},
    )
    await an.messages.create(
        model=CLAUDE_MODEL, max_tokens=64, messages=msgs, extra_headers={"x-fareway-tags": "beta"}
    )
    await oa.responses.create(model=OPENAI_MODEL, input="echo:hi", user="carol", metadata={"tags": "beta"})


@pytest.fixture(scope="module")
async def world(
    sim: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[LiveGateway, Path]]:
    state: Path = tmp_path_factory.mktemp("attribution-state")
    gw = await start_gateway(gateway_config(sim.url, state))
    await _make_calls(gw)
    ledger = gw.app.gateway.accounting.ledger
    assert ledger is not None
    await ledger.flush()
    yield gw, state
    await gw.stop()


async def _logged(gw: LiveGateway) -> list[dict[str, Any]]:
    body = await _get(gw, "/v1/logs", n="100")
    return [c for c in body["data"] if c["status"] == 200]


async def test_each_call_row_carries_its_user_and_tags(world: tuple[LiveGateway, Path]) -> None:
    gw, _ = world
    rows = list(reversed(await _logged(gw)))  # oldest first
    assert [(r["user"], tuple(r["tags"])) for r in rows] == CALLS


async def test_group_by_user_sums_to_the_totals(world: tuple[LiveGateway, Path]) -> None:
    gw, _ = world
    rows = await _logged(gw)
    body = await _get(gw, "/v1/usage", group_by="user")
    groups = {g["user"]: g for g in body["groups"]}
    assert {u: g["calls"] for u, g in groups.items()} == {"alice": 3, "bob": 2, "carol": 1, None: 2}
    totals = body["totals"]
    assert totals["calls"] == len(CALLS) == sum(g["calls"] for g in groups.values())
    for field in ("input_tokens", "output_tokens"):
        assert sum(g[field] for g in groups.values()) == totals[field] == sum(r[field] for r in rows)
    cost = sum((Decimal(r["cost"]) for r in rows), Decimal(0))
    assert cost > 0
    assert sum((Decimal(g["cost"]) for g in groups.values()), Decimal(0)) == Decimal(totals["cost"]) == cost
    alice = sum((Decimal(r["cost"]) for r in rows if r["user"] == "alice"), Decimal(0))
    assert Decimal(groups["alice"]["cost"]) == alice


async def test_group_by_tag_counts_a_call_once_per_tag(world: tuple[LiveGateway, Path]) -> None:
    gw, _ = world
    rows = await _logged(gw)
    body = await _get(gw, "/v1/usage", group_by="tag")
    groups = {g["tag"]: g for g in body["groups"]}
    assert {t: g["calls"] for t, g in groups.items()} == {"search": 3, "beta": 3, "chat": 2, None: 2}
    # the totals count each call once; the tag groups count a tagged call once per tag
    totals = body["totals"]
    assert totals["calls"] == len(CALLS)
    weight = {r["request_id"]: max(1, len(r["tags"])) for r in rows}
    assert sum(g["calls"] for g in groups.values()) == sum(weight.values()) == 3 + 3 + 2 + 2
    want_cost = sum((Decimal(r["cost"]) * weight[r["request_id"]] for r in rows), Decimal(0))
    assert sum((Decimal(g["cost"]) for g in groups.values()), Decimal(0)) == want_cost
    want_in = sum(r["input_tokens"] * weight[r["request_id"]] for r in rows)
    assert sum(g["input_tokens"] for g in groups.values()) == want_in
    # untagged plus each tagged call once is the totals
    untagged = groups[None]
    tagged = [r for r in rows if r["tags"]]
    assert untagged["calls"] + len(tagged) == totals["calls"]
    assert Decimal(untagged["cost"]) + sum((Decimal(r["cost"]) for r in tagged), Decimal(0)) == Decimal(
        totals["cost"]
    )
    search = sum((Decimal(r["cost"]) for r in rows if "search" in r["tags"]), Decimal(0))
    assert Decimal(groups["search"]["cost"]) == search


async def test_group_by_user_and_tag_as_csv(world: tuple[LiveGateway, Path]) -> None:
    gw, _ = world
    text = await _get(gw, "/v1/usage", group_by="user,tag", format="csv")
    got = {(r["user"], r["tag"]): int(r["calls"]) for r in csv.DictReader(io.StringIO(text))}
    want: dict[tuple[str, str], int] = {}
    for user, tags in CALLS:
        for tag in tags or ("",):
            want[(user or "", tag)] = want.get((user or "", tag), 0) + 1
    assert got == want


async def test_cli_usage_by_user_and_tag(world: tuple[LiveGateway, Path], tmp_path: Path) -> None:
    _, state = world
    cfg = tmp_path / "fareway.toml"
    cfg.write_text(f'[server]\nstate_dir = "{state}"\n')

    def run(*args: str) -> str:
        result = CliRunner().invoke(usage_cmd, [*args, "--config", str(cfg)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    by_user = orjson.loads(await asyncio.to_thread(run, "--by", "user", "--json"))
    assert {g["user"]: g["calls"] for g in by_user["groups"]} == {"alice": 3, "bob": 2, "carol": 1, None: 2}
    by_tag = orjson.loads(await asyncio.to_thread(run, "--by", "tag", "--json"))
    assert {g["tag"]: g["calls"] for g in by_tag["groups"]} == {"search": 3, "beta": 3, "chat": 2, None: 2}
    assert by_tag["totals"]["calls"] == len(CALLS)
    table = await asyncio.to_thread(run, "--by", "tag")
    assert "search" in table and "chat" in table and "total" in table


async def test_dashboard_overview_has_by_user_and_by_tag(world: tuple[LiveGateway, Path]) -> None:
    gw, _ = world
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(gw.url + "/ui/login", data={"key": MASTER_KEY}, allow_redirects=False) as r:
            assert r.status in (302, 303), await r.text()
        async with s.get(gw.url + "/ui/api/overview", params={"since": "all"}) as r:
            assert r.status == 200, await r.text()
            ov = await r.json()
        async with s.get(gw.url + "/ui") as r:
            page = await r.text()
    assert {g["user"]: g["calls"] for g in ov["by_user"]} == {"alice": 3, "bob": 2, "carol": 1, None: 2}
    assert {g["tag"]: g["calls"] for g in ov["by_tag"]} == {"search": 3, "beta": 3, "chat": 2, None: 2}
    assert 'id="by-user"' in page and 'id="by-tag"' in page


# ---------------------------------------------------------------------------- bad tags


@pytest.mark.parametrize(
    "tags",
    ["has space", "a,,b", "x" * 65, ",".join(f"t{i}" for i in range(11)), "tab\there"],
)
async def test_bad_header_tags_are_a_400_in_openai_shape(gateway: LiveGateway, tags: str) -> None:
    gw = gateway
    oa = openai_client(gw.url + "/v1")
    with pytest.raises(openai.BadRequestError) as e:
        await oa.chat.completions.create(
            model=OPENAI_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fareway-tags": tags},
        )
    assert e.value.status_code == 400
    err = e.value.body
    assert isinstance(err, dict) and err["type"] == "invalid_request_error"
    assert err["param"] == "x-fareway-tags" and "tag" in err["message"]
    assert "Traceback" not in err["message"]


@pytest.mark.parametrize("tags", [[1], "bad tag", {"a": 1}, [""], ["ok", "x" * 65], ["caf\u00e9"]])
async def test_bad_metadata_tags_are_a_400_in_anthropic_shape(
    world: tuple[LiveGateway, Path], tags: Any
) -> None:
    gw, _ = world
    an = anthropic_client(gw.url)
    with pytest.raises(anthropic.BadRequestError) as e:
        await an.messages.create(
            model=CLAUDE_MODEL,
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            metadata=_meta("bob", tags),
        )
    assert e.value.status_code == 400
    body = e.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error" and "metadata.tags" in body["error"]["message"]


async def test_a_refused_call_still_has_its_ledger_row(gateway: LiveGateway) -> None:
    gw = gateway
    oa = openai_client(gw.url + "/v1")
    with pytest.raises(openai.BadRequestError):
        await oa.chat.completions.create(
            model=OPENAI_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fareway-tags": "no good", "x-request-id": "attr-refused-1"},
        )
    ledger = gw.app.gateway.accounting.ledger
    assert ledger is not None
    await ledger.flush()
    body = await _get(gw, "/v1/logs", n="5")
    assert any(c["status"] == 400 and "tag" in (c["error"] or "") for c in body["data"])


async def test_an_embeddings_call_records_its_user_and_header_tags(gateway: LiveGateway) -> None:
    oa = openai_client(gateway.url + "/v1")
    await oa.embeddings.create(
        model="openai/text-embedding-3-small",
        input="hello",
        user="dave",
        extra_headers={"x-fareway-tags": "emb,batch"},
    )
    ledger = gateway.app.gateway.accounting.ledger
    assert ledger is not None
    await ledger.flush()
    body = await _get(gateway, "/v1/logs", n="1")
    assert (body["data"][0]["user"], body["data"][0]["tags"]) == ("dave", ["batch", "emb"])


# ------------------------------------------------------------------ what goes upstream


def _up(provider: str, dialect: str) -> Upstream:
    return Upstream(
        provider=provider,
        dialect=dialect,  # type: ignore[arg-type]
        base_url="https://example.invalid",
        model="m",
        api_key="sk-test",
        auth_header="x-api-key" if dialect == "anthropic" else "authorization",
        auth_scheme=None if dialect == "anthropic" else "Bearer",
    )


def test_tags_never_go_upstream_and_the_user_goes_where_supported() -> None:
    """metadata.tags is taken out of the request; OpenAI's ``user`` and Anthropic's
    ``metadata.user_id`` are passed on as before (both providers document them)."""
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user_id": "bob", "tags": ["a", "b"]},
    }
    req = anthropic_wire.WIRE.parse_request(json.dumps(body).encode(), {})
    user, tags = attribution.from_chat(req, {"x-fareway-tags": "c"})
    assert (user, tags) == ("bob", ("a", "b", "c"))
    sent = json.loads(ANTHROPIC_ADAPTER.build_request(req, _up("anthropic", "anthropic")).body)
    assert sent["metadata"] == {"user_id": "bob"}
    sent_oa = json.loads(OPENAI_ADAPTER.build_request(req, _up("openai", "openai")).body)
    assert sent_oa.get("user") == "bob" and "tags" not in json.dumps(sent_oa)

    obody = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "user": "alice",
        "metadata": {"tags": "x,y", "team": "red"},
    }
    oreq = openai_wire.parse_request(json.dumps(obody).encode(), {})
    assert attribution.from_chat(oreq, {}) == ("alice", ("x", "y"))
    sent = json.loads(OPENAI_ADAPTER.build_request(oreq, _up("openai", "openai")).body)
    assert sent["user"] == "alice" and sent["metadata"] == {"team": "red"}


def test_a_checkpoint_from_before_migration_10_still_decodes() -> None:
    """A stream checkpoint (inflight row) written by a gateway before migration 10 has two call
    columns fewer; adopting it gives no user and no tags."""
    from fareway.ledger.inflight import decode_rows, encode_rows
    from fareway.ledger.records import CALL_COLUMNS

    assert CALL_COLUMNS[-2:] == ("user_id", "tags")
    old = ["v"] * (len(CALL_COLUMNS) - 2)
    call, attempts = decode_rows(encode_rows(old, []))
    assert call == [*old, None, None] and attempts == []
    with pytest.raises(ValueError):
        decode_rows(encode_rows(["v"] * 3, []))
