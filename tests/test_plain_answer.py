"""The plainest whole answer (``openai_chunks.plain_answer``, taken by the fold's ``_plain``): a
role chunk, text chunks, a finish chunk and a usage chunk that are one chunk but for their delta,
read from the texts, the finish reason and the usage object with one chunk parsed.  On streams
of that shape (OpenAI's, as recorded and as generated here) it must give what the generator put
in, and the fold must give the general parser's answer; any one change to the shape (another id
on one chunk, a field more, text on the finish chunk, usage before the finish, an odd
obfuscation value...) must leave it to the general reading, with the same answer."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fareway.adapters.openai_chunks import payloads_of, plain_answer
from tests.test_stream_fold import (
    RECORDED,
    UP,
    _feed_reads,
    _general,
    _general_events,
    _split_fold,
    recorded_openai_text_streams,
)

MUTATIONS = [
    "none",
    "finish-id",  # the finish chunk from another completion
    "finish-field",  # a field more on the finish chunk's choice
    "finish-text",  # the finish chunk carries text
    "usage-first",  # the usage chunk before the finish chunk
    "two-usages",
    "odd-obfuscation",
    "role-delta",  # a role chunk with another delta
    "error",  # an error field on the finish chunk
    "finish-quote",  # a finish reason that is not a plain word
    "usage-extra",  # a field after the usage object
]


@st.composite
def plain_streams(draw: st.DrawFn) -> tuple[bytes, dict[str, Any], str]:
    """(body, what it says: text, finish, usage, role, done; the mutation applied)."""
    head: dict[str, Any] = {
        "id": "chatcmpl-" + draw(st.sampled_from(["a1", "Zz9"])),
        "object": "chat.completion.chunk",
        "created": draw(st.integers(0, 2**31)),
        "model": draw(st.sampled_from(["gpt-4o-mini", "gpt-5-2025-08-07"])),
    }
    if draw(st.booleans()):
        head["service_tier"] = "default"
    if draw(st.booleans()):
        head["system_fingerprint"] = draw(st.sampled_from([None, "fp_846108c00c"]))
    logprobs = draw(st.booleans())
    null_usage = draw(st.booleans())
    obf = draw(st.booleans())
    mutation = draw(st.sampled_from(MUTATIONS))
    n = [0]

    def chunk(choices: list[dict[str, Any]], usage: Any = None, **more: Any) -> str:
        c: dict[str, Any] = {**head, "choices": choices}
        if null_usage or usage is not None:
            c["usage"] = usage
        c.update(more)
        if obf:
            n[0] += 1
            c["obfuscation"] = "x" * (n[0] % 7 + 1) + str(n[0])
        return "data: " + orjson.dumps(c).decode() + "\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        ch: dict[str, Any] = {"index": 0, "delta": delta}
        if logprobs:
            ch["logprobs"] = None
        ch["finish_reason"] = finish
        return ch

    out: list[str] = []
    role = draw(st.booleans())
    if role:
        delta = draw(
            st.sampled_from(
                [
                    {"role": "assistant", "content": "", "refusal": None},
                    {"role": "assistant", "content": ""},
                    {"role": "assistant"},
                ]
            )
        )
        if mutation == "role-delta":
            delta = {"role": "assistant", "content": "", "annotations": []}
        out.append(chunk([choice(delta)]))
    texts = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=10))
    for t in texts:
        out.append(chunk([choice({"content": t})]))
    finish = draw(st.sampled_from(["stop", "length", "content_filter"]))
    usage = {
        "prompt_tokens": draw(st.integers(0, 99)),
        "completion_tokens": draw(st.integers(0, 99)),
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    fin = choice({"content": "!"} if mutation == "finish-text" else {}, finish)
    if mutation == "finish-field":
        fin["stop_reason"] = "eos"
    if mutation == "finish-quote":
        fin["finish_reason"] = 'st"op'
    finish_chunk = chunk([fin], **({"error": {"message": "x"}} if mutation == "error" else {}))
    if mutation == "finish-id":
        finish_chunk = finish_chunk.replace(head["id"], head["id"] + "b", 1)
    with_usage = draw(st.booleans()) or mutation in ("usage-first", "two-usages", "usage-extra")
    usage_chunk = chunk([], usage=usage, **({"x_more": 1} if mutation == "usage-extra" else {}))
    if mutation == "usage-first":
        out += [usage_chunk, finish_chunk]
    else:
        out.append(finish_chunk)
        if with_usage:
            out.append(usage_chunk)
        if mutation == "two-usages":
            out.append(usage_chunk)
    if mutation == "odd-obfuscation" and obf:
        out[-1] = out[-1].replace('"obfuscation":"', '"obfuscation":"-', 1)
    done = draw(st.booleans())
    if done:
        out.append("data: [DONE]\n\n")
    said = {
        "texts": texts,
        "finish": finish,
        "usage": usage if with_usage else None,
        "role": role,
        "done": done,
    }
    if (mutation == "odd-obfuscation" and not obf) or (mutation == "role-delta" and not role):
        mutation = "none"  # (nothing was changed)
    return "".join(out).encode(), said, mutation


def _payloads(body: bytes) -> list[str]:
    payloads = payloads_of(body.decode())
    assert payloads is not None
    return payloads[:-1] if payloads and payloads[-1] == "[DONE]" else payloads


@settings(max_examples=400, deadline=None)
@given(plain_streams())
def test_plain_answers_read_what_was_sent_and_any_change_falls_back(stream: tuple[bytes, dict, str]) -> None:
    body, said, mutation = stream
    try:
        got = plain_answer(_payloads(body))
    except orjson.JSONDecodeError:  # (refused: the fold reads the chunks one by one)
        got = None
    if mutation == "none":
        assert got is not None
        assert (got.texts, got.finish, got.usage, got.role_chunk) == (
            said["texts"],
            said["finish"],
            said["usage"],
            said["role"],
        )
    else:
        assert got is None, mutation
    # and the fold, whichever way it read the answer, gives the general parser's
    assert _split_fold(UP, b"", body)[:2] == _general(UP, body)


@settings(max_examples=200, deadline=None)
@given(plain_streams())
def test_the_rest_of_a_plain_stream_after_its_first_read_folds_as_the_general_parser(
    stream: tuple[bytes, dict, str],
) -> None:
    """The executor's first read ends after the first chunk or two; the rest is read at once."""
    body, _, _ = stream
    for events in (1, 2):
        cut = 0
        for _ in range(events):
            cut = body.find(b"\n\n", cut) + 2
        assert _split_fold(UP, body[:cut], body[cut:])[:2] == _general(UP, body)


@settings(max_examples=300, deadline=None)
@given(plain_streams(), st.integers(0, 3))
def test_a_streamed_read_of_a_plain_stream_gives_the_general_parsers_events(
    stream: tuple[bytes, dict, str], first: int
) -> None:
    """A streamed call whose upstream is fast gets the whole answer in one read (or in one read
    after the first few events): the events, one text delta per chunk, are the SSE parser's."""
    body, _, _ = stream
    cut = 0
    for _ in range(first):
        cut = body.find(b"\n\n", cut) + 2 if body.find(b"\n\n", cut) >= 0 else cut
    pieces = [body[:cut], body[cut:]] if cut else [body]
    assert _feed_reads(UP, pieces)[2] == _general_events(UP, body)


def test_recorded_plain_openai_streams_take_the_plain_reading() -> None:
    """Real OpenAI streams of plain text (obfuscation on every chunk, no logprobs field) are of
    the plainest shape; the text read is the recording's (the replay tests' own reader)."""
    from tests.test_adapter_openai_replay import expected_from_stream

    seen = 0
    for it in recorded_openai_text_streams():
        if b'"index":1' in it.body:  # (n > 1: several choices)
            continue
        got = plain_answer(_payloads(it.body))
        if b"moderation" in it.body:  # (chunks after the usage: not the plainest shape)
            assert got is None
            continue
        assert got is not None, f"{it.file}#{it.index}"
        assert "".join(got.texts) == expected_from_stream(it.body)["text"]
        seen += 1
    if not RECORDED:
        pytest.skip("../shared/fixtures is absent")
    assert seen > 0
