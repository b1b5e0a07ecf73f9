"""The simulator's OpenAI Responses API (``POST /openai/v1/responses``) against the recordings:
same event sequence, same item and response shapes, stateless as ``store: false``."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from .recorded import fixtures_dir, load_cassette

FIX = fixtures_dir()
AUTH = {"authorization": "Bearer sk-sim"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _events(text: str) -> list[dict[str, Any]]:
    out = []
    for frame in text.split("\n\n"):
        if frame.strip():
            ev, data = frame.split("\n", 1)
            obj = json.loads(data.removeprefix("data: "))
            assert ev == "event: " + obj["type"]
            out.append(obj)
    return out


def _recorded(name: str, index: int = 0) -> Any:
    if FIX is None:
        pytest.skip("../shared/fixtures is not next to the checkout")
    return load_cassette(FIX / "openai-responses" / name)[index]


async def _post(sim: Any, body: dict[str, Any]) -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{sim.url}/openai/v1/responses", json=body, headers=AUTH) as r,
    ):
        return r.status, await r.text(), dict(r.headers)


def _collapse(types: list[str]) -> list[str]:
    """Runs of the same delta event as one (the number of deltas is the content's business)."""
    out: list[str] = []
    for t in types:
        if not (out and out[-1] == t and t.endswith(".delta")):
            out.append(t)
    return out


async def test_text_stream_is_the_recorded_sequence(sim: Any) -> None:
    status, text, headers = await _post(sim, {"model": "gpt-4o-mini", "input": "echo: pong", "stream": True})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    mine = _events(text)
    theirs = _events(_recorded("test_responses_basic_streaming.yaml").body.decode())
    assert _collapse([e["type"] for e in mine]) == _collapse([e["type"] for e in theirs])
    assert [e["sequence_number"] for e in mine] == list(range(len(mine)))
    assert "".join(e["delta"] for e in mine if e["type"] == "response.output_text.delta") == "pong"
    assert "[DONE]" not in text
    completed = mine[-1]["response"]
    recorded = theirs[-1]["response"]
    assert set(completed) <= set(recorded) and {"id", "output", "usage", "status", "model"} <= set(completed)
    assert set(completed["output"][0]) == set(recorded["output"][0]) - {"phase"}
    assert set(completed["usage"]) == set(recorded["usage"])


async def test_tool_stream_is_the_recorded_sequence(sim: Any) -> None:
    body = {"model": "gpt-4o-mini", "input": "Weather in Paris?", "tools": [WEATHER], "stream": True}
    status, text, _ = await _post(sim, body)
    assert status == 200
    mine = _events(text)
    theirs = _events(_recorded("test_responses_tool_use_streaming.yaml").body.decode())
    assert _collapse([e["type"] for e in mine]) == _collapse([e["type"] for e in theirs])
    added = next(e for e in mine if e["type"] == "response.output_item.added")["item"]
    done = next(e for e in mine if e["type"] == "response.output_item.done")["item"]
    assert added["arguments"] == "" and added["status"] == "in_progress"
    deltas = "".join(e["delta"] for e in mine if e["type"] == "response.function_call_arguments.delta")
    assert deltas == done["arguments"] and json.loads(deltas)["city"]
    assert done["call_id"].startswith("call_") and done["id"].startswith("fc_")
    # the function tool is echoed as OpenAI does: strict, with additionalProperties false
    tool = mine[-1]["response"]["tools"][0]
    assert tool["strict"] is True and tool["parameters"]["additionalProperties"] is False


async def test_whole_response_has_the_recorded_shape(sim: Any) -> None:
    status, text, _ = await _post(sim, {"model": "gpt-4o-mini", "input": "echo: pong"})
    assert status == 200
    mine = json.loads(text)
    recorded = _recorded("test_responses_basic_non_streaming.yaml").response_json()
    assert set(mine) <= set(recorded)
    assert mine["object"] == "response" and mine["status"] == "completed" and mine["id"].startswith("resp_")
    assert mine["output"][0]["content"][0] == {
        "type": "output_text",
        "annotations": [],
        "logprobs": [],
        "text": "pong",
    }
    assert mine["usage"]["total_tokens"] == mine["usage"]["input_tokens"] + mine["usage"]["output_tokens"]


async def test_stateless_like_store_false(sim: Any) -> None:
    status, text, _ = await _post(
        sim, {"model": "gpt-4o-mini", "input": "more", "previous_response_id": "resp_x"}
    )
    assert status == 400 and json.loads(text)["error"]["code"] == "previous_response_not_found"
    status, text, _ = await _post(
        sim, {"model": "gpt-4o-mini", "input": [{"type": "item_reference", "id": "msg_1"}]}
    )
    assert status == 404


async def test_reasoning_state_only_its_own(sim: Any) -> None:
    body = {
        "model": "gpt-5-mini",
        "input": "think, then answer",
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "stream": True,
    }
    status, text, _ = await _post(sim, body)
    assert status == 200
    events = _events(text)
    added = next(e["item"] for e in events if e["type"] == "response.output_item.added")
    done = next(e["item"] for e in events if e["type"] == "response.output_item.done")
    assert added["type"] == done["type"] == "reasoning"
    # as recorded: the encrypted content in `added` is a placeholder, the real one comes with `done`
    assert added["encrypted_content"] != done["encrypted_content"]
    assert done["summary"][0]["text"] and "response.reasoning_summary_text.delta" in [
        e["type"] for e in events
    ]
    usage = events[-1]["response"]["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] > 0
    # its own reasoning is accepted back; anything else is refused, as OpenAI refuses foreign state
    turn = [{"role": "user", "content": "think, then answer"}, done, {"role": "user", "content": "and?"}]
    status, _, _ = await _post(sim, {"model": "gpt-5-mini", "input": turn})
    assert status == 200
    forged = {**done, "encrypted_content": "fw1.eyJwIjoiYW50aHJvcGljIn0"}
    status, text, _ = await _post(sim, {"model": "gpt-5-mini", "input": [turn[0], forged, turn[2]]})
    assert status == 400 and json.loads(text)["error"]["code"] == "invalid_encrypted_content"


async def test_builtin_tools_are_not_simulated(sim: Any) -> None:
    status, text, _ = await _post(
        sim, {"model": "gpt-4o", "input": "news", "tools": [{"type": "web_search"}]}
    )
    assert status == 400 and "web_search" in json.loads(text)["error"]["message"]


async def test_stream_error_fault_is_error_then_failed(sim: Any, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", kind="stream_error", count=1, after_chunks=2)
    status, text, _ = await _post(sim, {"model": "gpt-4o-mini", "input": "tell me a story", "stream": True})
    assert status == 200
    events = _events(text)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    # the shape of the recorded failure (openai-error.1.chunks.txt): a nested error, then the failed response
    assert set(events[-2]["error"]) == {"type", "code", "message", "param"}
    assert events[-1]["response"]["status"] == "failed" and set(events[-1]["response"]["error"]) == {
        "code",
        "message",
    }
