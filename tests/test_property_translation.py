"""Property tests: lossless translation between the canonical model and every dialect.

For each dialect D in {openai, anthropic, gemini}:

1. requests:  canonical -> ``adapters/D.build_request`` -> parsed back (the inbound wire of D, or
   ``gemini_codec.decode_request``) == ``expect_<D>_request(canonical)``;
2. responses: canonical -> D response JSON (``wire/D.encode_response``, or
   ``gemini_codec.encode_response``) -> ``adapters/D.parse_response`` == ``expect_<D>_response``;
3. streams:   canonical -> events -> D SSE bytes -> split anywhere -> ``adapters/D.stream_parser`` ->
   Accumulator == the non-streamed parse of (2.);
4. cross-dialect: an OpenAI client's request sent to each upstream dialect, and each upstream's
   answer shown to an OpenAI (and an Anthropic) client, keep every tool call id/name/arguments,
   tool result and text.

The ``expect_*`` functions (``translation_norms``) are the documented normalisation: each rule is
an intended lossy point of that dialect (named in its comment).  A rule that would hide a real loss
(an id, an argument, a text or an image changed or dropped) does not belong there; such a case is
a bug, pinned by a test of its own (as the Gemini signature history below).

Two bags are ignored in comparisons (``_strip``): ``ChatResponse.extensions`` and
``Usage.extensions`` — per-dialect pass-through of wire fields, not part of the translation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fareway.adapters import anthropic as anthropic_adapter
from fareway.adapters import gemini as gemini_adapter
from fareway.adapters import openai_chat as openai_adapter
from fareway.dialects.anthropic_blocks import sanitize_tool_id
from fareway.errors import BadRequest
from fareway.events import Accumulator, response_to_events
from fareway.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Upstream,
)
from fareway.wire import anthropic as anthropic_wire
from fareway.wire import openai_chat as openai_wire

from . import gemini_codec
from .strategies import chat_request, chat_response, cut_points, split, text
from .translation_norms import (
    EXPECT_REQUEST,
    GEMINI_MODEL,
    META,
    _expected_history,
    _strip,
    canon_args,
    expect_openai_response,
    expect_response,
)

SETTINGS = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ADAPTERS = {
    "openai": openai_adapter.ADAPTER,
    "anthropic": anthropic_adapter.ADAPTER,
    "gemini": gemini_adapter.ADAPTER,
}


def upstream(dialect: str, model: str = "up-model") -> Upstream:
    return Upstream(provider=dialect, dialect=dialect, base_url=f"https://{dialect}.test/v1", model=model)  # type: ignore[arg-type]


def client_request(dialect: Any, *, stream: bool = True) -> ChatRequest:
    return ChatRequest(
        model="client-model", messages=[], stream=stream, include_usage=True, source_dialect=dialect
    )


def view(obj: Any) -> Any:
    """A dataclass as plain dicts, so pytest shows a readable diff."""
    return dataclasses.asdict(obj)


def _refused(dialect: str, req: ChatRequest) -> bool:
    """The features a dialect refuses with a BadRequest by design."""
    if dialect == "openai":
        return req.n is not None and req.n > 1 and req.stream
    if dialect == "anthropic":
        # Anthropic needs a non-empty turn: a conversation whose turns all translate to nothing
        # is refused by the adapter instead of being sent as `messages: []`.
        no_turns = not any(m.role != "system" for m in EXPECT_REQUEST["anthropic"](req).messages)
        return (req.n is not None and req.n > 1) or no_turns
    tc = req.tool_choice
    return tc is not None and not req.tools and tc.mode in ("required", "tool")


def roundtrip_request(dialect: str, req: ChatRequest) -> ChatRequest:
    if dialect == "gemini":
        return gemini_codec.decode_request(
            ADAPTERS["gemini"].build_request(req, upstream("gemini", GEMINI_MODEL))
        )
    http = ADAPTERS[dialect].build_request(req, upstream(dialect, req.model))
    wire = openai_wire.WIRE if dialect == "openai" else anthropic_wire.WIRE
    return wire.parse_request(http.body, http.headers)


DIALECTS = ("openai", "anthropic", "gemini")


@SETTINGS
@given(req=chat_request())
def test_request_roundtrip(req: ChatRequest) -> None:
    """canonical -> D request -> canonical is the identity up to expect_D_request, per dialect
    (one generated conversation checked against all three, to keep generation cheap)."""
    for dialect in DIALECTS:
        if _refused(dialect, req):
            with pytest.raises(BadRequest):
                roundtrip_request(dialect, req)
            continue
        got, want = view(roundtrip_request(dialect, req)), view(EXPECT_REQUEST[dialect](req))
        assert got == want, dialect


# ============================================================================ 2. responses


def encode_response(dialect: str, resp: ChatResponse, *, ids: bool = True) -> bytes:
    """``resp`` as the upstream dialect's non-streamed response body."""
    if dialect == "gemini":
        return gemini_codec.encode_response(resp, ids=ids)
    wire = openai_wire.WIRE if dialect == "openai" else anthropic_wire.WIRE
    return wire.encode_response(resp, client_request(dialect, stream=False), META)


# (dialect, gemini call ids issued by the model?)
UPSTREAMS = [("openai", True), ("anthropic", True), ("gemini", True), ("gemini", False)]


@SETTINGS
@given(resp=chat_response(redacted=True))
def test_response_roundtrip(resp: ChatResponse) -> None:
    """canonical -> D response JSON -> adapters/D.parse_response == expect_D_response."""
    for dialect, ids in UPSTREAMS:
        if dialect == "gemini" and any(isinstance(p, ThinkingPart) and p.redacted for p in resp.content):
            continue  # redacted thinking is Anthropic's own; Gemini cannot say it
        got = ADAPTERS[dialect].parse_response(encode_response(dialect, resp, ids=ids), upstream(dialect))
        if dialect == "openai" and resp.created is None:
            got.created = None
        assert view(_strip(got)) == view(expect_response(dialect, resp, ids=ids)), (dialect, ids)


# ============================================================================ 3. streams


def encode_stream(dialect: str, resp: ChatResponse, *, ids: bool = True) -> bytes:
    """``resp`` as the events a stream of it gives, encoded as D's SSE body."""
    events = response_to_events(resp)
    if dialect == "gemini":
        return gemini_codec.encode_stream(events, ids=ids)
    wire = openai_wire.WIRE if dialect == "openai" else anthropic_wire.WIRE
    enc = wire.stream_encoder(client_request(dialect), META)
    return enc.start() + b"".join(enc.encode(ev) for ev in events) + enc.close(META)


def parse_stream(dialect: str, chunks: list[bytes]) -> ChatResponse:
    parser = ADAPTERS[dialect].stream_parser(upstream(dialect))
    acc = Accumulator()
    for chunk in chunks:
        for ev in parser.feed(chunk):
            acc.add(ev)
    for ev in parser.close():
        acc.add(ev)
    assert acc.finished, "the stream never finished"
    return acc.result()


def _canon_calls(resp: ChatResponse) -> ChatResponse:
    for p in resp.content:
        if isinstance(p, ToolCallPart):
            p.arguments = canon_args(p.arguments)
    return resp


@SETTINGS
@given(resp=chat_response(redacted=True), data=st.data())
def test_stream_folds_to_response(resp: ChatResponse, data: st.DataObject) -> None:
    """canonical -> events -> D SSE -> split at random bytes -> stream parser -> Accumulator gives
    what the non-streamed parse of the same response gives."""
    for dialect, ids in UPSTREAMS:
        if dialect == "gemini" and any(isinstance(p, ThinkingPart) and p.redacted for p in resp.content):
            continue
        body = encode_stream(dialect, resp, ids=ids)
        streamed = _strip(parse_stream(dialect, split(body, data.draw(cut_points(len(body)), label=dialect))))
        whole = _strip(
            ADAPTERS[dialect].parse_response(encode_response(dialect, resp, ids=ids), upstream(dialect))
        )
        if dialect == "openai":
            # A stream can interleave reasoning, text and calls; one message cannot.
            streamed = expect_openai_response(streamed)
        elif dialect == "anthropic":
            # The stream carries the arguments' text as written, the message their parsed object.
            streamed, whole = _canon_calls(streamed), _canon_calls(whole)
        assert view(streamed) == view(whole), (dialect, ids)


# ====================================================================== 4. cross-dialect


def _id_map(dialect: str, req: ChatRequest) -> dict[str, str]:
    calls = [
        p.id for m in req.messages if m.role == "assistant" for p in m.content if isinstance(p, ToolCallPart)
    ]
    if dialect == "anthropic":
        return {i: sanitize_tool_id(i) for i in calls}
    if dialect == "gemini":
        return {i: f"gcall_{k}" for k, i in enumerate(calls)}
    return {i: i for i in calls}


def _result_value(text: str) -> Any:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    return obj if isinstance(obj, dict) else text


def summary(req: ChatRequest, ids: dict[str, str] | None = None) -> dict[str, Any]:
    """What must survive any translation of a conversation: the system prompt, every text,
    image, tool call (id, name, arguments) and tool result (call id, content)."""
    ids = ids if ids is not None else {}
    out: dict[str, Any] = {"system": [], "texts": [], "images": [], "calls": [], "results": []}
    for m in req.messages:
        for p in m.content:
            parts = p.content if isinstance(p, ToolResultPart) else [p]
            if isinstance(p, ToolResultPart):
                out["results"].append((ids.get(p.tool_call_id, p.tool_call_id), _result_value(p.text())))
            for q in parts:
                if isinstance(q, TextPart) and q.text and not isinstance(p, ToolResultPart):
                    out["system" if m.role == "system" else "texts"].append(q.text)
                elif isinstance(q, ImagePart):
                    out["images"].append(q.data or q.url)
                elif isinstance(q, ToolCallPart):
                    out["calls"].append((ids.get(q.id, q.id), q.name, q.parsed_arguments()))
    out["system"] = "\n".join(out["system"])
    return out


@settings(SETTINGS, max_examples=50)
@given(req=chat_request())
def test_openai_client_request_to_every_upstream(req: ChatRequest) -> None:
    """An OpenAI client's conversation sent to each upstream dialect keeps every text, image,
    tool call id/name/arguments and tool result (ids rewritten only where the dialect must)."""
    if _refused("openai", req):
        return
    client = roundtrip_request("openai", req)  # what an OpenAI client's body parses to
    for dialect in DIALECTS:
        if _refused(dialect, client):
            continue
        sent = roundtrip_request(dialect, client)
        want = summary(client, _id_map(dialect, client))
        rf = client.response_format
        if dialect == "anthropic" and rf is not None and rf.type == "json_object":
            # json_object has no Anthropic field: it travels as an instruction after the system text
            want["system"] = "\n".join(
                s for s in (want["system"], anthropic_adapter.JSON_OBJECT_INSTRUCTION) if s
            )
        assert summary(sent) == want, dialect


def _client_view(client: str, body: bytes) -> tuple[str, list[tuple[str, str, Any]]]:
    """(text, [(call id, name, arguments)]) as a client of dialect ``client`` reads the body."""
    data = orjson.loads(body)
    if client == "openai":
        msg = data["choices"][0]["message"]
        calls = [
            (c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
            for c in msg.get("tool_calls") or []
        ]
        return msg["content"] or "", calls
    text = "".join(b["text"] for b in data["content"] if b["type"] == "text")
    return text, [(b["id"], b["name"], b["input"]) for b in data["content"] if b["type"] == "tool_use"]


def _stream_view(client: str, body: bytes, chunks: list[int]) -> tuple[str, list[tuple[str, str, Any]]]:
    resp = parse_stream(client, split(body, chunks))
    return resp.text(), [(p.id, p.name, p.parsed_arguments()) for p in resp.tool_calls()]


@SETTINGS
@given(resp=chat_response(redacted=False), data=st.data())
def test_every_upstream_answer_to_every_client(resp: ChatResponse, data: st.DataObject) -> None:
    """An upstream's answer (D response JSON or SSE -> canonical -> client dialect) never loses
    tool call ids, names, arguments or text, streamed or not."""
    want_text = resp.text()
    for dialect, ids in UPSTREAMS:
        up = upstream(dialect)
        canonical = ADAPTERS[dialect].parse_response(encode_response(dialect, resp, ids=ids), up)
        call_ids = [p.id for p in canonical.tool_calls()]  # Gemini-2.x: minted by the adapter
        if ids:
            assert call_ids == [p.id for p in resp.tool_calls()], dialect
        want_calls = [
            (i, p.name, p.parsed_arguments()) for i, p in zip(call_ids, resp.tool_calls(), strict=True)
        ]
        for client in ("openai", "anthropic"):
            wire = openai_wire.WIRE if client == "openai" else anthropic_wire.WIRE
            body = wire.encode_response(canonical, client_request(client, stream=False), META)
            assert _client_view(client, body) == (want_text, want_calls), (dialect, ids, client)
            # streamed: upstream SSE -> adapter events -> client encoder -> client SSE
            parser = ADAPTERS[dialect].stream_parser(up)
            enc = wire.stream_encoder(client_request(client), META)
            raw = encode_stream(dialect, resp, ids=ids)
            out = enc.start()
            for chunk in split(raw, data.draw(cut_points(len(raw)), label=f"{dialect}-up")):
                out += b"".join(enc.encode(ev) for ev in parser.feed(chunk))
            out += b"".join(enc.encode(ev) for ev in parser.close()) + enc.close(META)
            cuts = data.draw(cut_points(len(out)), label=f"{client}-down")
            assert _stream_view(client, out, cuts) == (want_text, want_calls), (
                dialect,
                ids,
                client,
                "stream",
            )


# ================================================== reporting: what a dialect drops is reported


def _req_with(field: str) -> ChatRequest:
    user = Message("user", [TextPart("hi")])
    req = ChatRequest(model="m", messages=[user], tools=[ToolSpec("f")])
    if field == "name":
        user.name = "alice"
    elif field == "metadata":
        req.metadata = {"tag": "x"}
    elif field == "detail":
        user.content.append(ImagePart(url="https://img.example.com/a.png", detail="high"))
    elif field == "strict":
        req.tools[0].strict = True
    elif field == "seed":
        req.seed = 7
    elif field == "top_k":
        req.top_k = 5
    elif field == "user":
        req.user = "u1"
    return req


@pytest.mark.parametrize(
    ("dialect", "field"),
    [
        ("openai", "top_k"),
        ("anthropic", "seed"),
        ("anthropic", "name"),
        ("anthropic", "metadata"),
        ("anthropic", "detail"),
        ("gemini", "user"),
        ("gemini", "detail"),
        ("gemini", "name"),
        ("gemini", "metadata"),
        ("gemini", "strict"),
    ],
)
def test_lossy_field_is_reported(dialect: str, field: str) -> None:
    """Each field the normalisation above removes for a dialect is one the adapter reports as
    dropped (the OpenAI adapter does so for messages[].name on Groq): a loss may be intended,
    never silent."""
    http = ADAPTERS[dialect].build_request(_req_with(field), upstream(dialect, GEMINI_MODEL))
    assert any(field in note for note in http.dropped), http.dropped


# ============================================== same-dialect pass-through of unmodelled fields

_extra_value = st.one_of(st.integers(0, 9), st.text(max_size=5), st.lists(st.integers(0, 9), max_size=2))


@settings(SETTINGS, max_examples=50)
@given(
    top=st.dictionaries(
        st.sampled_from(["system_fingerprint", "service_tier", "x_vendor"]), _extra_value, max_size=2
    ),
    choice=st.dictionaries(st.sampled_from(["logprobs", "native_finish_reason"]), _extra_value, max_size=2),
    message=st.dictionaries(st.sampled_from(["annotations", "audio"]), _extra_value, max_size=2),
    resp=chat_response(redacted=False),
)
def test_openai_upstream_fields_reach_openai_client(
    top: dict[str, Any], choice: dict[str, Any], message: dict[str, Any], resp: ChatResponse
) -> None:
    """OpenAI upstream JSON -> canonical -> OpenAI client JSON keeps the fields the canonical model
    does not know, at the place the upstream put them."""
    base = orjson.loads(encode_response("openai", resp))
    base.update(top)
    base["choices"][0].update(choice)
    base["choices"][0]["message"].update(message)
    canonical = ADAPTERS["openai"].parse_response(orjson.dumps(base), upstream("openai"))
    out = orjson.loads(
        openai_wire.WIRE.encode_response(canonical, client_request("openai", stream=False), META)
    )
    for k, v in top.items():
        assert out[k] == v
    for k, v in choice.items():
        assert out["choices"][0][k] == v
    for k, v in message.items():
        assert out["choices"][0]["message"][k] == v


# ============================================ Gemini: a model turn comes back as it was sent

_gemini_part = st.one_of(
    st.builds(lambda t: {"text": t, "thought": True}, text),  # a thought summary
    st.builds(
        lambda t, sig: {"text": t, **({"thoughtSignature": sig} if sig else {})},
        text,
        st.one_of(st.none(), st.sampled_from(["c2lnQQ==", "c2lnQg=="])),
    ),
    st.builds(
        lambda name, args, call_id, sig: {
            "functionCall": {"name": name, "args": args, **({"id": call_id} if call_id else {})},
            **({"thoughtSignature": sig} if sig else {}),
        },
        st.sampled_from(["get_weather", "search"]),
        st.dictionaries(st.sampled_from(["q", "city", "n"]), st.one_of(st.integers(0, 9), text), max_size=2),
        st.one_of(st.none(), st.sampled_from(["fc-1", "fc-2", "fc-3"])),
        st.one_of(st.none(), st.sampled_from(["c2lnQw==", "c2lnRA=="])),
    ),
)


def _history_of(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = orjson.dumps(gemini_codec._chunk("resp-1", GEMINI_MODEL, parts, finishReason="STOP"))
    answer = ADAPTERS["gemini"].parse_response(body, upstream("gemini", GEMINI_MODEL))
    history = ChatRequest(
        model="m", messages=[Message("user", [TextPart("hi")]), Message("assistant", answer.content)]
    )
    sent = orjson.loads(ADAPTERS["gemini"].build_request(history, upstream("gemini", GEMINI_MODEL)).body)
    return list(sent["contents"][1]["parts"])


@SETTINGS
@given(parts=st.lists(_gemini_part, max_size=6))
def test_gemini_turn_roundtrips_through_history(parts: list[dict[str, Any]]) -> None:
    """Gemini response parts -> canonical -> the same turn in the next request's history."""
    calls = [p["functionCall"] for p in parts if "functionCall" in p]
    ids = [c["id"] for c in calls if "id" in c]
    if len(ids) != len(set(ids)):
        return  # Gemini never repeats a call id within a turn
    assert _history_of(parts) == _expected_history(parts)


@pytest.mark.parametrize(
    "parts",
    [
        [
            {"text": "", "thoughtSignature": "c2lnQQ=="},
            {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2lnQw=="},
        ],
        [{"text": "", "thoughtSignature": "c2lnQQ=="}, {"text": "", "thoughtSignature": "c2lnQg=="}],
    ],
)
def test_gemini_history_keeps_every_signature(parts: list[dict[str, Any]]) -> None:
    sent = _history_of(parts)
    assert {p.get("thoughtSignature") for p in parts} <= {p.get("thoughtSignature") for p in sent}


# ====================================================================== 5. OpenAI Responses items
#
# The Responses API is a client dialect (wire/openai_responses) and, for OpenAI, a native upstream
# (adapters/openai_responses).  Properties:
#
# a. a Responses client's items reach a native upstream as sent (same dialect, nothing lost),
#    except reasoning another provider made (the visible history rule);
# b. the same conversation sent to every other upstream keeps every text, image, call and result,
#    and carries no reasoning made by another provider;
# c. a stateless client that sends an answer's output items back gets the answer's parts again,
#    reasoning state included (the envelope names the provider that made it);
# d. the stream and the JSON of one answer are the same answer (same items, ids, usage, finish);
# e. every upstream's answer reaches a Responses client with its text and calls, streamed or not.

from fareway.adapters import openai_responses as responses_adapter  # noqa: E402
from fareway.adapters.openai_responses_stream import ResponsesStreamParser  # noqa: E402
from fareway.dialects.openai_responses import unseal  # noqa: E402
from fareway.providers.quirks import Quirks  # noqa: E402
from fareway.router.target_request import for_target  # noqa: E402
from fareway.types import OpaquePart  # noqa: E402
from fareway.wire import openai_responses as responses_wire  # noqa: E402
from fareway.wire.base import ResponseMeta  # noqa: E402

from .strategies import responses_request  # noqa: E402

ALL_ADAPTERS = {**ADAPTERS, "openai_responses": responses_adapter.ADAPTER}
NATIVE_UP = Upstream(
    provider="openai",
    dialect="openai",
    base_url="https://openai.test/v1",
    model="gpt-x",
    quirks=Quirks(native_dialects=frozenset({"openai_responses"})),
)


def _origin(item: dict[str, Any]) -> tuple[str, str | None]:
    """(provider that made a reasoning item, its proof as that provider issued it)."""
    env = unseal(item["encrypted_content"])
    if env is None:
        return "openai", item["encrypted_content"]
    return env["p"], env.get("s")


def _as_sent(item: dict[str, Any]) -> dict[str, Any] | None:
    """An input item as a native upstream must get it (None: not sent there)."""
    item = dict(item)
    if "role" in item:
        item["type"] = "message"
        if isinstance(item["content"], str):
            kind = "output_text" if item["role"] == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
    if item.get("type") == "reasoning":
        origin, proof = _origin(item)
        if origin != "openai" or proof is None:
            return None  # another provider's reasoning: OpenAI gets the visible history only
        item["encrypted_content"] = proof
    if item.get("type") == "function_call" and not item["arguments"].strip():
        item["arguments"] = "{}"
    return item


def _assistant_side(item: dict[str, Any]) -> bool:
    t = item.get("type")
    return (
        (t == "message" and item.get("role") == "assistant") or t == "reasoning" or str(t).endswith("_call")
    )


def _expected_native(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every item as sent, but in an assistant turn whose reasoning is not sent, its calls and
    messages go without their ids (OpenAI refuses them without the reasoning they came with)."""
    out: list[dict[str, Any]] = []
    turn: list[dict[str, Any]] = []
    for raw in [*items, None]:
        item = _as_sent(raw) if raw is not None else None
        if raw is not None and item is None:
            continue
        if item is not None and _assistant_side(item):
            turn.append(item)
            continue
        if not any(i["type"] == "reasoning" for i in turn):
            for i in turn:
                if i["type"] in ("function_call", "message"):
                    i.pop("id", None)
        out += turn
        turn = []
        if item is not None:
            out.append(item)
    return out


@SETTINGS
@given(body=responses_request())
def test_responses_items_reach_a_native_upstream_as_sent(body: dict[str, Any]) -> None:
    req = responses_wire.parse_request(orjson.dumps(body), {})
    adapter, sent_req = for_target(ALL_ADAPTERS, NATIVE_UP, req)
    assert adapter is responses_adapter.ADAPTER
    sent = orjson.loads(adapter.build_request(sent_req, NATIVE_UP).body)
    assert sent["input"] == _expected_native(body["input"])
    assert sent.get("instructions") == body.get("instructions")
    assert sent.get("max_output_tokens") == body.get("max_output_tokens")
    assert sent["tools"] == body["tools"] if "tools" in body else "tools" not in sent


@settings(SETTINGS, max_examples=60)
@given(body=responses_request())
def test_responses_client_to_every_upstream(body: dict[str, Any]) -> None:
    client = responses_wire.parse_request(orjson.dumps(body), {})
    has_builtin_call = any(i.get("type") == "web_search_call" for i in body["input"])
    for dialect in DIALECTS:
        up = upstream(dialect, GEMINI_MODEL if dialect == "gemini" else "m")
        adapter, sent = for_target(ALL_ADAPTERS, up, client)
        assert adapter is ADAPTERS[dialect]
        # no reasoning made by another provider is left in what this upstream gets
        for m in sent.messages:
            for p in m.content:
                if isinstance(p, ThinkingPart):
                    assert (p.extensions.get("fareway") or {}).get("origin") == dialect
        visible = dataclasses.replace(
            sent,
            messages=[
                dataclasses.replace(m, content=[p for p in m.content if not isinstance(p, OpaquePart)])
                for m in sent.messages
            ],
        )
        if _refused(dialect, visible):
            continue
        if has_builtin_call and dialect == "gemini":
            with pytest.raises(BadRequest) as exc:
                roundtrip_request(dialect, sent)
            assert "web_search_call" in exc.value.message
            continue
        got = roundtrip_request(dialect, sent)
        assert summary(got) == summary(sent, _id_map(dialect, sent)), dialect


def _parts_view(parts: list[Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append(("text", p.text))
        elif isinstance(p, ToolCallPart):
            out.append(("call", p.id, p.name, p.arguments if p.arguments.strip() else "{}"))
        elif isinstance(p, ThinkingPart):
            out.append(("thinking", p.text, p.signature, p.redacted))
        elif isinstance(p, OpaquePart):
            out.append(("opaque", p.data.get("type")))
    return out


def _responses_client(include: bool = True) -> ChatRequest:
    body = {"model": "m", "input": "hi", **({"include": ["reasoning.encrypted_content"]} if include else {})}
    return responses_wire.parse_request(orjson.dumps(body), {})


@SETTINGS
@given(resp=chat_response(redacted=True))
def test_stateless_client_sends_an_answer_back(resp: ChatResponse) -> None:
    meta = ResponseMeta("req_1", "anthropic", "0.5")
    out = orjson.loads(responses_wire.encode_response(resp, _responses_client(), meta))
    again = responses_wire.parse_request(
        orjson.dumps({"model": "m", "input": [{"role": "user", "content": "hi"}, *out["output"]]}), {}
    )
    got = [p for m in again.messages if m.role == "assistant" for p in m.content]
    want = [
        p
        for p in resp.content
        if not (isinstance(p, ThinkingPart) and not (p.text or p.signature or p.redacted))
    ]
    assert _parts_view(got) == _parts_view(want)
    for p in got:
        if isinstance(p, ThinkingPart):
            assert p.extensions["fareway"]["origin"] == ("anthropic" if (p.signature or p.redacted) else "")
    assert out["usage"] is None or out["usage"]["cost"] == 0.5


def _fold(body: bytes, cuts: list[int]) -> tuple[ChatResponse, list[Any]]:
    parser = ResponsesStreamParser(NATIVE_UP)
    acc = Accumulator()
    events: list[Any] = []
    for chunk in split(body, cuts):
        events += parser.feed(chunk)
    events += parser.close()
    for e in events:
        acc.add(e)
    assert acc.finished
    return acc.result(), events


def _answer_view(r: ChatResponse) -> tuple[Any, ...]:
    u = r.usage
    usage = (
        None if u is None else (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens)
    )
    return (_parts_view(r.content), r.finish_reason, usage)


@SETTINGS
@given(resp=chat_response(redacted=True), data=st.data())
def test_responses_stream_and_json_are_one_answer(resp: ChatResponse, data: st.DataObject) -> None:
    client = _responses_client()
    meta = ResponseMeta("req_1", "gemini")
    whole = responses_adapter.ADAPTER.parse_response(
        responses_wire.encode_response(resp, client, meta), NATIVE_UP
    )
    enc = responses_wire.WIRE.stream_encoder(client, meta)
    body = enc.start() + b"".join(enc.encode(e) for e in response_to_events(resp)) + enc.close(meta)
    streamed, _ = _fold(body, data.draw(cut_points(len(body))))
    assert _answer_view(streamed) == _answer_view(whole)
    calls = bool(resp.tool_calls())
    want_finish = (
        "length"
        if resp.finish_reason in ("length", "context_window")
        else "content_filter"
        if resp.finish_reason == "content_filter"
        else "tool_calls"
        if calls
        else "stop"
    )
    assert whole.finish_reason == want_finish
    ids_json = [i["id"] for i in orjson.loads(responses_wire.encode_response(resp, client, meta))["output"]]
    last = orjson.loads(body.rsplit(b"\ndata: ", 1)[1])
    assert [i["id"] for i in last["response"]["output"]] == ids_json


def _responses_view(body: bytes) -> tuple[str, list[tuple[str, str, Any]]]:
    data = orjson.loads(body)
    text = "".join(
        c["text"]
        for i in data["output"]
        if i["type"] == "message"
        for c in i["content"]
        if c["type"] == "output_text"
    )
    calls = [
        (i["call_id"], i["name"], orjson.loads(i["arguments"]))
        for i in data["output"]
        if i["type"] == "function_call"
    ]
    return text, calls


@SETTINGS
@given(resp=chat_response(redacted=False), data=st.data())
def test_every_upstream_answer_to_a_responses_client(resp: ChatResponse, data: st.DataObject) -> None:
    want_text = resp.text()
    for dialect, ids in UPSTREAMS:
        up = upstream(dialect)
        canonical = ADAPTERS[dialect].parse_response(encode_response(dialect, resp, ids=ids), up)
        call_ids = [p.id for p in canonical.tool_calls()]
        want_calls = [
            (i, p.name, p.parsed_arguments()) for i, p in zip(call_ids, resp.tool_calls(), strict=True)
        ]
        meta = ResponseMeta("req_1", dialect)
        body = responses_wire.encode_response(canonical, _responses_client(False), meta)
        assert _responses_view(body) == (want_text, want_calls), (dialect, ids)
        parser = ADAPTERS[dialect].stream_parser(up)
        enc = responses_wire.WIRE.stream_encoder(_responses_client(False), meta)
        raw = encode_stream(dialect, resp, ids=ids)
        out = enc.start()
        for chunk in split(raw, data.draw(cut_points(len(raw)), label=f"{dialect}-up")):
            out += b"".join(enc.encode(ev) for ev in parser.feed(chunk))
        out += b"".join(enc.encode(ev) for ev in parser.close()) + enc.close(meta)
        streamed, _ = _fold(out, data.draw(cut_points(len(out)), label="responses-down"))
        got = (streamed.text(), [(p.id, p.name, p.parsed_arguments()) for p in streamed.tool_calls()])
        assert got == (want_text, want_calls), (dialect, ids, "stream")
