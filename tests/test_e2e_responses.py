"""The official `openai` SDK's ``client.responses`` against a live Fareway over the simulator.

Each provider dialect is exercised (OpenAI: the native Responses path; Anthropic and Gemini:
translated through the canonical model): a text answer, a function tool round trip continued with
``previous_response_id``, streamed and not; then the stored-state endpoints, tenant isolation,
built-in tools, fallback and accounting.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import MASTER_KEY, LiveGateway, gateway_config, openai_client, start_gateway

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"]


def client(gw: LiveGateway, key: str = MASTER_KEY) -> openai.AsyncOpenAI:
    return openai_client(gw.url + "/v1", key)


async def _collect(stream: Any) -> tuple[list[str], Any]:
    types: list[str] = []
    final = None
    async for ev in stream:
        types.append(ev.type)
        if ev.type in ("response.completed", "response.incomplete"):
            final = ev.response
    return types, final


@pytest.mark.parametrize("model", MODELS)
async def test_text_not_streamed(gateway: LiveGateway, model: str) -> None:
    raw = await client(gateway).responses.with_raw_response.create(model=model, input="echo: hello there")
    r = raw.parse()
    assert r.output_text == "hello there"
    assert r.status == "completed" and r.object == "response" and r.id.startswith("resp_")
    assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    cost = raw.headers["x-fareway-cost-usd"]
    assert float(cost) > 0 and getattr(r.usage, "cost") == pytest.approx(float(cost))  # noqa: B009
    assert raw.headers["x-fareway-provider"] == model.split("/")[0]
    # OpenAI is reached natively: its own item ids come through; other providers' items get ids
    # Fareway mints (msg_fw...)
    assert r.output[0].id.startswith("msg_fw") == (not model.startswith("openai/"))
    stored = await client(gateway).responses.retrieve(r.id)  # stored before the body was sent
    assert [(o.type, o.id) for o in stored.output] == [(o.type, o.id) for o in r.output]


@pytest.mark.parametrize("model", MODELS)
async def test_tool_round_trip_with_previous_response_id(gateway: LiveGateway, model: str) -> None:
    c = client(gateway)
    first = await c.responses.create(model=model, input="Weather in Paris? Use get_weather.", tools=[WEATHER])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    assert calls[0].call_id and calls[0].id and calls[0].id != calls[0].call_id
    # the next turn sends only the tool's output and the previous response's id
    second = await c.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}],
        tools=[WEATHER],
    )
    assert second.previous_response_id == first.id
    assert second.output_text and not [o for o in second.output if o.type == "function_call"]
    # the whole conversation was sent upstream: the second prompt is longer than the first
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
    # and it is the caller's stored state
    items = await c.responses.input_items.list(second.id, order="asc")
    kinds = [i.type for i in items.data if i.type != "reasoning"]  # gemini-2.5 thinks first
    assert kinds == ["message", "function_call", "function_call_output"]
    assert next(i for i in items.data if i.type == "function_call").call_id == calls[0].call_id


@pytest.mark.parametrize("model", MODELS)
async def test_streamed_tool_round_trip(gateway: LiveGateway, model: str) -> None:
    c = client(gateway)
    types, first = await _collect(
        await c.responses.create(
            model=model, input="Weather in Oslo? Use get_weather.", tools=[WEATHER], stream=True
        )
    )
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert (
        "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types
    )
    assert types.count("response.output_item.added") == types.count("response.output_item.done")
    call = next(o for o in first.output if o.type == "function_call")
    assert json.loads(call.arguments)["city"]
    # the stored response is what was streamed: same items, same ids
    stored = await c.responses.retrieve(first.id)
    assert [(o.type, o.id) for o in stored.output] == [(o.type, o.id) for o in first.output]
    types2, second = await _collect(
        await c.responses.create(
            model=model,
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "cloudy"}],
            tools=[WEATHER],
            stream=True,
        )
    )
    assert "response.output_text.delta" in types2 and second.output_text
    assert second.usage.cost > 0


async def test_stream_events_are_numbered_and_ids_stable(gateway: LiveGateway) -> None:
    """Read the SSE by hand: event lines equal the types, sequence numbers run from 0, every
    event of an item names the id its output_item.added gave."""
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            gateway.url + "/v1/responses",
            json={"model": "anthropic/claude-sonnet-4-5", "input": "echo: one two three", "stream": True},
            headers={"authorization": f"Bearer {MASTER_KEY}"},
        ) as r,
    ):
        assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = await r.text()
    frames = [f for f in text.split("\n\n") if f.strip()]
    events = []
    for f in frames:
        ev, data = f.split("\n", 1)
        obj = json.loads(data.removeprefix("data: "))
        assert ev == "event: " + obj["type"]
        events.append(obj)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added = next(e for e in events if e["type"] == "response.output_item.added")
    item_id = added["item"]["id"]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == "one two three"
    assert {d["item_id"] for d in deltas} == {item_id}
    assert events[-1]["response"]["output"][0]["id"] == item_id
    assert "[DONE]" not in text


async def test_store_endpoints_and_tenant_isolation(gateway: LiveGateway) -> None:
    c = client(gateway)
    r = await c.responses.create(model="openai/gpt-4o-mini", input="echo: keep me")
    got = await c.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == "keep me"
    items = await c.responses.input_items.list(r.id)
    assert [i.type for i in items.data] == ["message"] and items.data[0].content[0].text == "echo: keep me"
    assert items.first_id == items.data[0].id and items.has_more is False
    # another tenant's key sees nothing of it
    secret, _ = gateway.app.gateway.keys.create("responses-other-tenant")
    other = client(gateway, secret)
    with pytest.raises(openai.NotFoundError):
        await other.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        await other.responses.input_items.list(r.id)
    with pytest.raises(openai.NotFoundError):
        await other.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError) as exc:
        await other.responses.create(model="openai/gpt-4o-mini", previous_response_id=r.id, input="more")
    assert exc.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    # the owner deletes it; then it is gone
    async with (
        aiohttp.ClientSession() as s,
        s.delete(
            gateway.url + f"/v1/responses/{r.id}", headers={"authorization": f"Bearer {MASTER_KEY}"}
        ) as d,
    ):
        assert d.status == 200
        assert await d.json() == {"id": r.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        await c.responses.retrieve(r.id)


async def test_store_false_is_not_kept(gateway: LiveGateway) -> None:
    c = client(gateway)
    r = await c.responses.create(model="gemini/gemini-2.5-flash", input="echo: forget me", store=False)
    assert r.store is False and r.output_text == "forget me"
    with pytest.raises(openai.NotFoundError):
        await c.responses.retrieve(r.id)


async def test_item_reference_resolves_stored_items(gateway: LiveGateway) -> None:
    c = client(gateway)
    first = await c.responses.create(model="anthropic/claude-sonnet-4-5", input="echo: remembered words")
    msg = first.output[0]
    second = await c.responses.create(
        model="openai/gpt-4o-mini",
        input=[
            {"role": "user", "content": "echo: remembered words"},
            {"type": "item_reference", "id": msg.id},
            {"role": "user", "content": "echo: and now this"},
        ],
    )
    assert second.output_text == "and now this"
    items = await c.responses.input_items.list(second.id, order="asc")
    assert items.data[1].id == msg.id and items.data[1].content[0].text == "remembered words"
    with pytest.raises(openai.NotFoundError):
        await c.responses.create(
            model="openai/gpt-4o-mini", input=[{"type": "item_reference", "id": "msg_unknown"}]
        )


async def test_instructions_and_structured_output(gateway: LiveGateway) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    for model in MODELS:
        r = await client(gateway).responses.create(
            model=model,
            instructions="You answer in JSON.",
            input="A city, please.",
            text={"format": {"type": "json_schema", "name": "City", "schema": schema, "strict": True}},
        )
        data = json.loads(r.output_text)
        assert isinstance(data["city"], str) and isinstance(data["population"], int), model
        assert r.instructions == "You answer in JSON."


async def test_builtin_tools_native_only(gateway: LiveGateway) -> None:
    c = client(gateway)
    for model in ("anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"):
        with pytest.raises(openai.BadRequestError) as exc:
            await c.responses.create(model=model, input="news today", tools=[{"type": "web_search"}])
        assert "web_search" in exc.value.message and model.split("/")[0] in exc.value.message
    # the OpenAI provider gets it natively: the simulated OpenAI answers that it does not simulate
    # built-in tools, which shows the tool reached the upstream as given
    with pytest.raises(openai.BadRequestError) as exc:
        await c.responses.create(
            model="openai/gpt-4o-mini", input="news today", tools=[{"type": "web_search"}]
        )
    assert "built-in tool 'web_search' is not simulated" in exc.value.message


async def test_errors_in_responses_shape(gateway: LiveGateway) -> None:
    c = client(gateway)
    with pytest.raises(openai.BadRequestError) as exc:
        await c.responses.create(model="no-such-model-anywhere", input="hi")
    assert exc.value.body["code"] == "model_not_found" and exc.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as exc:
        await c.responses.create(model="openai/gpt-4o-mini", input=[{"type": "function_call_output"}])
    assert exc.value.body["param"] == "input[0].call_id"  # type: ignore[index]


async def _sse(gw: LiveGateway, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.url + "/v1/responses", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}) as r,
    ):
        text = await r.text()
        status = r.status
    events = []
    for frame in text.split("\n\n"):
        if frame.strip():
            event_line, data = frame.split("\n", 1)
            obj = json.loads(data.removeprefix("data: "))
            assert event_line == "event: " + obj["type"]
            events.append(obj)
    return status, events


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"])
async def test_failure_after_the_commit_point_is_error_then_response_failed(
    gateway: LiveGateway, sim_control: Any, model: str
) -> None:
    provider = model.split("/")[0]
    await sim_control.fault(provider=provider, kind="reset", count=1, after_chunks=2)
    status, events = await _sse(gateway, {"model": model, "input": "tell me a story", "stream": True})
    assert status == 200
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    err = events[-2]["error"]
    assert err["message"] and isinstance(err["type"], str)
    failed = events[-1]["response"]
    assert (
        failed["status"] == "failed"
        and isinstance(failed["error"]["code"], str)
        and failed["error"]["message"]
    )
    assert "response.completed" not in [e["type"] for e in events]
    # what was streamed before the failure is in the failed response
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    with pytest.raises(openai.NotFoundError):  # a failed response is not stored to continue from
        await client(gateway).responses.retrieve(failed["id"])


async def test_routing_fallback_race_and_accounting(sim: Any, tmp_path: Any, sim_control: Any) -> None:
    cfg = dataclasses.replace(
        gateway_config(sim.url, tmp_path),
        aliases={
            "chain": {
                "strategy": "fallback",
                "targets": ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"],
            },
            "duo": {"strategy": "race", "targets": ["openai/gpt-4o-mini", "gemini/gemini-2.5-flash"]},
            "claude-first": {
                "strategy": "fallback",
                "targets": ["anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"],
            },
        },
    )
    gw = await start_gateway(cfg)
    try:
        # a race: the first contender to produce content wins, the other is cancelled
        rr = await client(gw).responses.with_raw_response.create(model="duo", input="echo: raced")
        assert rr.parse().output_text == "raced"
        assert rr.headers["x-fareway-provider"] in ("openai", "gemini")
        assert "race" in rr.headers["x-fareway-route"]
        # a stream whose native upstream fails before its first token falls back
        await sim_control.fault(provider="openai", kind="stream_error", count=1, after_chunks=0)
        sraw = await client(gw).responses.with_raw_response.create(
            model="chain", input="echo: again", stream=True
        )
        assert sraw.headers["x-fareway-provider"] == "anthropic"
        types, final = await _collect(sraw.parse())
        assert final.output_text == "again" and types[-1] == "response.completed"
        # a 429 from the native upstream falls back too
        await sim_control.fault(provider="openai", kind="429", count=1, retry_after=1)
        raw = await client(gw).responses.with_raw_response.create(model="chain", input="echo: fell back")
        assert raw.parse().output_text == "fell back"
        assert raw.headers["x-fareway-provider"] == "anthropic"

        # a built-in tool: the chain skips the target that cannot run it and goes on to OpenAI, which
        # gets the tool natively (the simulated OpenAI then says it does not simulate it)
        with pytest.raises(openai.BadRequestError) as exc:
            await client(gw).responses.create(
                model="claude-first", input="news", tools=[{"type": "web_search"}]
            )
        assert "built-in tool 'web_search' is not simulated" in exc.value.message

        ledger = gw.app.gateway.accounting.ledger
        assert ledger is not None
        await ledger.flush()
        calls = {c.call.request_id: c for c in await ledger.recent_calls(n=10)}
        row = calls[raw.headers["x-request-id"]]
        assert row.call.client_dialect == "openai_responses" and row.call.provider == "anthropic"
        assert [a.outcome for a in row.attempts] == ["error", "ok"]
        assert row.call.cost is not None
        assert float(row.call.cost) == pytest.approx(float(raw.headers["x-fareway-cost-usd"]))
        srow = calls[sraw.headers["x-request-id"]]
        assert srow.call.stream and [a.outcome for a in srow.attempts] == ["error", "ok"]
        assert srow.call.cost is not None and float(srow.call.cost) == pytest.approx(final.usage.cost)
        race = calls[rr.headers["x-request-id"]]
        assert sorted(a.outcome for a in race.attempts) in (["cancelled", "ok"], ["ok", "ok"])
        # the stored response got the gateway's cost once the call was accounted
        stored = await client(gw).responses.retrieve(raw.parse().id)
        assert stored.usage is not None and getattr(stored.usage, "cost") == pytest.approx(  # noqa: B009
            float(raw.headers["x-fareway-cost-usd"])
        )
    finally:
        await gw.stop()


async def test_gemini3_call_state_is_stored_but_never_shown(gateway: LiveGateway) -> None:
    c = client(gateway)
    model = "gemini/gemini-3-pro-preview"
    first = await c.responses.create(model=model, input="Weather in Lima? Use get_weather.", tools=[WEATHER])
    call = next(o for o in first.output if o.type == "function_call")
    second = await c.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "warm"}],
        tools=[WEATHER],
    )
    assert second.output_text
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    async with aiohttp.ClientSession() as s:
        for path in (f"/v1/responses/{first.id}", f"/v1/responses/{second.id}/input_items"):
            async with s.get(gateway.url + path, headers=headers) as r:
                assert r.status == 200
                assert "_fareway" not in await r.text() and "thoughtSignature" not in await r.text()


@pytest.mark.parametrize(
    "model", ["openai/gpt-5-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"]
)
async def test_stateless_reasoning_goes_back_to_its_maker(gateway: LiveGateway, model: str) -> None:
    """``store: false`` with ``include: [reasoning.encrypted_content]`` (Codex CLI's way): the
    client sends the output items back itself; the reasoning state reaches the provider that made
    it (the simulated OpenAI accepts only encrypted content it issued, as OpenAI does)."""
    c = client(gateway)
    common: dict[str, Any] = {
        "model": model,
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "low", "summary": "auto"},
        "tools": [WEATHER],
    }
    ask = {"role": "user", "content": "Weather in Quito? Use get_weather."}
    first = await c.responses.create(input=[ask], **common)
    reasoning = [o for o in first.output if o.type == "reasoning"]
    assert reasoning and reasoning[0].encrypted_content and reasoning[0].encrypted_content.startswith("fw1.")
    call = next(o for o in first.output if o.type == "function_call")
    history = [ask, *[o.model_dump(exclude_none=True) for o in first.output]]
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "cool"})
    second = await c.responses.create(input=history, **common)
    assert second.output_text
    # the same history sent to another provider: it gets the visible part and answers
    other = "anthropic/claude-sonnet-4-5" if not model.startswith("anthropic") else "openai/gpt-5-mini"
    third = await c.responses.create(input=history, **{**common, "model": other})
    assert third.output_text
