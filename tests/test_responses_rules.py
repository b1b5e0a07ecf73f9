"""The Responses API's cross-provider rules, at the seam that applies them (router/target_request):

* reasoning goes back only to the provider that made it (its signature / encrypted content is that
  provider's proof); any other provider gets the visible history;
* built-in tools run only where the Responses API is native; anywhere else a 400 names the tool;
* the native path is taken for a Responses client on a provider that speaks it, never otherwise.

The reasoning state in these requests is written by hand as a client would send it back (an
envelope naming the provider, or OpenAI's own encrypted content), so the expected blocks are known
without running the code under test.
"""

from __future__ import annotations

import base64

import orjson
import pytest

from fareway.adapters import anthropic, gemini, openai_chat, openai_responses
from fareway.providers.quirks import Quirks
from fareway.router.target_request import NativeOnly, for_target
from fareway.types import ThinkingPart, Upstream
from fareway.wire import openai_chat as chat_wire
from fareway.wire import openai_responses as wire
from fareway.wire.base import ResponseMeta

ADAPTERS = {
    "openai": openai_chat.ADAPTER,
    "anthropic": anthropic.ADAPTER,
    "gemini": gemini.ADAPTER,
    "openai_responses": openai_responses.ADAPTER,
}
OPENAI = Upstream(
    "openai",
    "openai",
    "https://api.openai.test/v1",
    "gpt-5",
    quirks=Quirks(native_dialects=frozenset({"openai_responses"})),
)
GROQ = Upstream("groq", "openai", "https://groq.test/openai/v1", "llama")
ANTHROPIC = Upstream("anthropic", "anthropic", "https://anthropic.test", "claude-sonnet-4-5")
GEMINI = Upstream("gemini", "gemini", "https://gemini.test/v1beta", "gemini-3-pro-preview")


def _envelope(body: dict[str, str]) -> str:
    """The envelope as documented in dialects/openai_responses.py, written independently."""
    return "fw1." + base64.urlsafe_b64encode(orjson.dumps(body)).decode().rstrip("=")


ANTHROPIC_SIG = "EqQBCkYIBhgCKkC5anthropic-signature"
OPENAI_ENC = "gAAAAABoyXvxI6jwG5j6rvTGC7PD6J-openai-encrypted"
CONVERSATION = {
    "model": "any",
    "input": [
        {"role": "user", "content": "What is 2+2? Use the calculator."},
        {
            "type": "reasoning",
            "id": "rs_0a1b2c",
            "summary": [{"type": "summary_text", "text": "The user wants arithmetic."}],
            "encrypted_content": _envelope({"p": "anthropic", "s": ANTHROPIC_SIG}),
        },
        {"type": "function_call", "call_id": "toolu_01", "name": "calc", "arguments": '{"e":"2+2"}'},
        {"type": "function_call_output", "call_id": "toolu_01", "output": "4"},
        {
            "type": "reasoning",
            "id": "rs_68c42d29",
            "summary": [],
            "encrypted_content": OPENAI_ENC,
        },
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_68c42d2a",
            "content": [{"type": "output_text", "text": "4"}],
        },
        {"role": "user", "content": "Thanks. And 3+3?"},
    ],
    "tools": [
        {
            "type": "function",
            "name": "calc",
            "parameters": {"type": "object", "properties": {"e": {"type": "string"}}},
        }
    ],
}


def _request(**changes: object) -> wire.ChatRequest:  # type: ignore[name-defined]
    return wire.parse_request(orjson.dumps({**CONVERSATION, **changes}), {})


def test_reasoning_goes_back_to_the_provider_that_made_it() -> None:
    adapter, req = for_target(ADAPTERS, ANTHROPIC, _request())
    assert adapter is anthropic.ADAPTER
    body = orjson.loads(adapter.build_request(req, ANTHROPIC).body)
    blocks = [b for m in body["messages"] for b in m["content"] if isinstance(m["content"], list)]
    thinking = [b for b in blocks if b["type"] == "thinking"]
    assert thinking == [
        {"type": "thinking", "thinking": "The user wants arithmetic.", "signature": ANTHROPIC_SIG}
    ]
    assert OPENAI_ENC not in orjson.dumps(body).decode()  # OpenAI's reasoning is not Anthropic's to read


def test_openai_gets_its_own_reasoning_natively_and_not_anthropics() -> None:
    adapter, req = for_target(ADAPTERS, OPENAI, _request())
    assert adapter is openai_responses.ADAPTER  # the native path
    body = orjson.loads(adapter.build_request(req, OPENAI).body)
    reasoning = [i for i in body["input"] if i.get("type") == "reasoning"]
    assert reasoning == [
        {"type": "reasoning", "id": "rs_68c42d29", "summary": [], "encrypted_content": OPENAI_ENC}
    ]
    assert ANTHROPIC_SIG not in orjson.dumps(body).decode()
    # the item after OpenAI's reasoning keeps its id (OpenAI requires the pair); the rest is as sent
    assert [i.get("type") for i in body["input"]] == [
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "message",
        "message",
    ]
    assert body["input"][4]["id"] == "msg_68c42d2a"
    assert body["store"] is False


@pytest.mark.parametrize("up", [GEMINI, GROQ], ids=["gemini", "groq"])
def test_any_other_provider_gets_the_visible_history(up: Upstream) -> None:
    adapter, req = for_target(ADAPTERS, up, _request())
    assert not any(isinstance(p, ThinkingPart) for m in req.messages for p in m.content)
    assert adapter is not None
    text = adapter.build_request(req, up).body.decode()
    assert ANTHROPIC_SIG not in text and OPENAI_ENC not in text
    for visible in ("What is 2+2? Use the calculator.", "calc", "Thanks. And 3+3?"):
        assert visible in text


def test_other_clients_history_is_untouched() -> None:
    """Reasoning from a chat-completions client has no origin: the rule does not apply to it."""
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "reasoning_content": "thinking aloud"},
            {"role": "user", "content": "again"},
        ],
    }
    req = chat_wire.parse_request(orjson.dumps(body))
    _, same = for_target(ADAPTERS, ANTHROPIC, req)
    assert same is req


@pytest.mark.parametrize("up", [ANTHROPIC, GEMINI, GROQ], ids=["anthropic", "gemini", "groq"])
@pytest.mark.parametrize("tool", ["web_search", "file_search", "code_interpreter", "computer_use_preview"])
def test_builtin_tools_are_refused_by_name_off_the_native_path(up: Upstream, tool: str) -> None:
    req = _request(tools=[{"type": tool}])
    with pytest.raises(NativeOnly) as exc:
        for_target(ADAPTERS, up, req)
    assert f"`{tool}`" in exc.value.message and f"`{up.provider}`" in exc.value.message
    assert exc.value.param == "tools" and exc.value.client_status == 400
    assert exc.value.retryable  # a fallback chain goes on to a target that can run it


def test_builtin_tools_pass_through_natively() -> None:
    tools = [
        {"type": "web_search", "search_context_size": "low"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "code_interpreter", "container": {"type": "auto"}},
    ]
    req = _request(tools=tools, tool_choice={"type": "web_search"}, include=["file_search_call.results"])
    adapter, req = for_target(ADAPTERS, OPENAI, req)
    body = orjson.loads(adapter.build_request(req, OPENAI).body)  # type: ignore[union-attr]
    assert body["tools"] == tools
    assert body["tool_choice"] == {"type": "web_search"}
    # gpt-5 reasons by default: its reasoning state is asked for, to carry it to the next turn
    assert body["include"] == ["file_search_call.results", "reasoning.encrypted_content"]


def test_no_native_path_for_other_clients_or_providers() -> None:
    chat = chat_wire.parse_request(
        orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    )
    assert for_target(ADAPTERS, OPENAI, chat)[0] is openai_chat.ADAPTER
    assert for_target(ADAPTERS, GROQ, _request())[0] is openai_chat.ADAPTER


def test_a_turn_whose_reasoning_is_not_sent_goes_without_item_ids() -> None:
    """OpenAI refuses a reasoning model's call or message without the reasoning item it came with
    (and accepts them without ids): when that reasoning cannot be sent (no encrypted content was
    kept), the turn's items go without their ids."""
    body = {
        "model": "gpt-5",
        "input": [
            {"role": "user", "content": "go"},
            {"type": "reasoning", "id": "rs_68aa", "summary": []},
            {
                "type": "function_call",
                "id": "fc_68ab",
                "call_id": "call_1",
                "name": "calc",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "4"},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_68ac",
                "content": [{"type": "output_text", "text": "4"}],
            },
        ],
    }
    adapter, req = for_target(ADAPTERS, OPENAI, wire.parse_request(orjson.dumps(body), {}))
    sent = orjson.loads(adapter.build_request(req, OPENAI).body)  # type: ignore[union-attr]
    assert [i.get("type") for i in sent["input"]] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert all("id" not in i for i in sent["input"])


def test_a_gemini_calls_signature_is_kept_by_the_store_and_never_shown() -> None:
    """Gemini 3 wants each function call back with its thoughtSignature; the Responses API has no
    field for it: the store keeps it beside the item and gives it back, clients never see it."""
    from fareway.events import response_to_events
    from fareway.types import ChatResponse, ToolCallPart
    from fareway.wire.openai_responses_stream import ResponseBuilder

    call = ToolCallPart(
        "call-9", "calc", '{"e":"1+1"}', {"gemini": {"id": "call-9", "thoughtSignature": "c2lnLTk="}}
    )
    resp = ChatResponse("r1", "gemini-3-pro-preview", [call], "tool_calls")
    echo = wire.echo_of(_request())
    stored = ResponseBuilder(echo, "gemini", "m", full=True, private=True)
    for e in response_to_events(resp):
        stored.add(e)
    stored.finish_items()
    item = stored.output()[0]
    assert item["_fareway"] == {"gemini": {"id": "call-9", "thoughtSignature": "c2lnLTk="}}
    assert "_fareway" not in wire.strip_private(item)
    shown = orjson.loads(wire.encode_response(resp, _request(), ResponseMeta("req_1", "gemini")))
    assert "_fareway" not in orjson.dumps(shown).decode()
    # read back from the store, the call goes to Gemini with its own signature
    again = wire.items_to_messages(
        [
            {"role": "user", "content": "go"},
            item,
            {"type": "function_call_output", "call_id": "call-9", "output": "2"},
        ]
    )
    req = wire.parse_request(orjson.dumps({"model": "m", "input": "x"}), {})
    req.messages = again
    body = orjson.loads(gemini.ADAPTER.build_request(req, GEMINI).body)
    fc = body["contents"][1]["parts"][0]
    assert fc["functionCall"]["name"] == "calc" and fc["thoughtSignature"] == "c2lnLTk="
