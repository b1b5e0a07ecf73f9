"""The whole-answer fold of an OpenAI-dialect stream (``feed_all``): a call whose client wants one
answer reads the rest of the upstream stream in one piece and folds it.  Its fast path must give
the answer the general parser gives, on the real recorded streams and on generated ones, and the
common stream must take it (else the fold costs what it did)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fareway.adapters.openai_stream import OpenAIStreamParser
from fareway.errors import UpstreamError
from fareway.events import Accumulator, StreamEvent
from fareway.types import Upstream
from tests.test_adapter_openai_replay import _files, _interactions, _upstream, expected_from_stream

UP = Upstream("openai", "openai", "http://upstream.invalid/v1", "gpt-4o-mini", "sk-x")


def _fold(events: list[StreamEvent]) -> Any:
    acc = Accumulator()
    for e in events:
        acc.add(e)
    r = acc.result()
    return (r, acc.finished, acc.output_chars)


def _general(up: Upstream, body: bytes) -> tuple[Any, Any]:
    """The answer of the SSE parser path alone (feed's and feed_all's fast paths not taken)."""
    p = OpenAIStreamParser(up)
    events: list[StreamEvent] = []
    try:
        events += p._events(p._general(body))
        events += p.close()
    except UpstreamError as exc:
        return _fold(events), (type(exc), exc.message)
    return _fold(events), None


def _split_fold(up: Upstream, head: bytes, rest: bytes) -> tuple[Any, Any, int]:
    p = OpenAIStreamParser(up)
    events: list[StreamEvent] = []
    try:
        events += p.feed(head)
        events += p.feed_all(rest)
        events += p.close()
    except UpstreamError as exc:
        return _fold(events), (type(exc), exc.message), p.fast_folds
    return _fold(events), None, p.fast_folds


def _cuts(body: bytes) -> list[int]:
    """Every event boundary (where the executor's first read can end) plus a few odd places."""
    cuts = [i + 2 for i in range(len(body)) if body[i : i + 2] == b"\n\n"]
    rng = random.Random(len(body))
    return [0, *cuts[:40], *(rng.randrange(len(body) + 1) for _ in range(5))]


RECORDED = [p for p in _files() if p.values[0] is not None]


def _recorded_200_streams() -> Any:
    """(upstream, interaction) for every recorded 200 stream."""
    for p in RECORDED:
        provider, path = p.values
        up = _upstream(provider)
        for it in _interactions(path):
            if it.is_stream and it.status == 200:
                yield up, it


def _cut(body: bytes, sizes: list[int]) -> list[bytes]:
    """The body as reads of these sizes, repeated to its end."""
    pieces, i = [], 0
    for n in sizes * (len(body) // sum(sizes) + 1):
        if i >= len(body):
            break
        pieces.append(body[i : i + n])
        i += n
    return pieces


@pytest.mark.parametrize(("provider", "path"), RECORDED or [pytest.param(None, None, id="no-fixtures")])
def test_fold_of_recorded_streams_matches_the_general_parser(provider: str | None, path: Any) -> None:
    if provider is None:
        pytest.skip("../shared/fixtures is absent")
    up = _upstream(provider)
    streams = [it for it in _interactions(path) if it.is_stream and it.status == 200]
    if not streams:
        pytest.skip("no 200 stream in this recording")
    for it in streams:
        want, want_err = _general(up, it.body)
        if want_err is None:  # the independent reader of the replay tests agrees on the text
            exp = expected_from_stream(it.body)
            text = "".join(p.text for p in want[0].content if type(p).__name__ == "TextPart")
            assert text == exp["text"] + exp["refusal"]
        for cut in _cuts(it.body):
            got, got_err, _ = _split_fold(up, it.body[:cut], it.body[cut:])
            assert got_err == want_err, f"{it.file}#{it.index} cut at {cut}"
            assert got == want, f"{it.file}#{it.index} cut at {cut}"


def recorded_openai_text_streams() -> Any:
    """Every recorded OpenAI 200 stream of plain text: no tools, refusal or reasoning."""
    for p in RECORDED:
        provider, path = p.values
        if provider != "openai":
            continue
        for it in _interactions(path):
            if (
                it.is_stream
                and it.status == 200
                and b"tool_calls" not in it.body
                and b'refusal":"' not in it.body
            ):
                yield it


def test_the_fast_path_is_taken_on_real_plain_text_streams() -> None:
    """A recorded OpenAI stream of plain text (no tools, reasoning or refusal) folds on the fast
    path when it is cut at an event boundary, as the executor cuts it."""
    fast = 0
    for it in recorded_openai_text_streams():
        first = it.body.find(b"\n\n") + 2
        fast += _split_fold(_upstream("openai"), it.body[:first], it.body[first:])[2]
    if not RECORDED:
        pytest.skip("../shared/fixtures is absent")
    assert fast > 0


# ------------------------------------------------------------------------ generated streams


def _sse(chunks: list[dict[str, Any] | str]) -> bytes:
    out = []
    for c in chunks:
        out.append(c if isinstance(c, str) else f"data: {json.dumps(c)}\n\n")
    return "".join(out).encode()


@st.composite
def plain_streams(draw: st.DrawFn) -> tuple[bytes, bool]:
    base: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    if draw(st.booleans()):
        base["system_fingerprint"] = draw(st.sampled_from(["fp_1", "fp_2"]))
    chunks: list[dict[str, Any] | str] = [
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    ]
    for piece in draw(st.lists(st.text(min_size=0, max_size=8), max_size=12)):
        if draw(st.integers(0, 9)) == 0:
            chunks.append(": keep-alive\n\n")
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
    finish = draw(st.sampled_from(["stop", "length"]))
    usage = {"prompt_tokens": 5, "completion_tokens": draw(st.integers(0, 50)), "total_tokens": 60}
    where = draw(st.sampled_from(["own", "finish", "none"]))
    fin: dict[str, Any] = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    if where == "finish":
        fin["usage"] = usage
    chunks.append(fin)
    if where == "own":
        chunks.append({**base, "choices": [], "usage": usage})
    ended = draw(st.booleans())
    if ended:
        chunks.append("data: [DONE]\n\n")
    return _sse(chunks), ended


def _multi_line(body: bytes, index: int, shape: str) -> bytes:
    """``body`` with its event ``index`` written over several lines: its data split in two
    ``data:`` lines at a comma (SSE joins them with a newline, which JSON takes as whitespace),
    or at a comma with the rest on a line of its own (not a ``data:`` field: SSE ignores it, so
    the event's data is cut short although the two lines still hold valid JSON), or with an
    ``id:`` or ``event: message`` line (the event's data unchanged)."""
    events = body.decode().split("\n\n")[:-1]
    i = index % len(events)
    ev = events[i]
    if shape == "data" and "," in ev:
        a, b = ev.split(",", 1)
        ev = f"{a},\ndata: {b}"
    elif shape == "ignored" and ", " in ev:
        a, b = ev.split(", ", 1)
        ev = f"{a},\n {b}"
    elif shape == "id":
        ev = f"{ev}\nid: 7"
    else:
        ev = f"event: message\n{ev}"
    events[i] = ev
    return ("\n\n".join(events) + "\n\n").encode()


@settings(max_examples=150, deadline=None)
@given(plain_streams(), st.integers(0, 40), st.sampled_from(["data", "ignored", "id", "event"]))
def test_fold_of_streams_with_a_multi_line_event_matches_the_general_parser(
    stream: tuple[bytes, bool], index: int, shape: str
) -> None:
    """The fold reads a body that starts with ``data:`` without counting its newlines: a
    payload holding one (an event of more than one line) must send the read to the general
    parser, whichever event it is."""
    body = _multi_line(stream[0], index, shape)
    want = _general(UP, body)
    p = OpenAIStreamParser(UP)
    events: list[StreamEvent] = []
    try:
        events += p.feed_all(body)
        events += p.close()
    except UpstreamError as exc:
        assert (_fold(events), (type(exc), exc.message)) == want
        return
    assert (_fold(events), None) == want
    assert p.fast_folds == 0, "an event of several lines is not for the fast path"


@settings(max_examples=150, deadline=None)
@given(plain_streams(), st.integers(0, 30))
def test_fold_of_generated_streams_matches_the_general_parser(stream: tuple[bytes, bool], k: int) -> None:
    body, _ = stream
    cuts = [i + 2 for i in range(len(body)) if body[i : i + 2] == b"\n\n"]
    cut = cuts[k % len(cuts)]
    want = _general(UP, body)
    got, err, fast = _split_fold(UP, body[:cut], body[cut:])
    assert (got, err) == want
    if cut < len(body):
        assert fast == 1, "a plain stream cut at an event boundary takes the fast path"


@settings(max_examples=100, deadline=None)
@given(plain_streams(), st.integers(0, 10_000))
def test_fold_cut_anywhere_matches_the_general_parser(stream: tuple[bytes, bool], at: int) -> None:
    body, _ = stream
    cut = at % (len(body) + 1)
    assert _split_fold(UP, body[:cut], body[cut:])[:2] == _general(UP, body)


def _pieces_fold(up: Upstream, pieces: list[bytes]) -> tuple[Any, Any, int]:
    """The body as the executor reads it for a whole answer: every read through feed_all."""
    p = OpenAIStreamParser(up)
    events: list[StreamEvent] = []
    try:
        for piece in pieces:
            events += p.feed_all(piece)
        events += p.close()
    except UpstreamError as exc:
        return _fold(events), (type(exc), exc.message), p.fast_folds
    return _fold(events), None, p.fast_folds


@settings(max_examples=100, deadline=None)
@given(plain_streams(), st.lists(st.integers(1, 200), min_size=1, max_size=20))
def test_fold_read_by_read_matches_the_general_parser(stream: tuple[bytes, bool], sizes: list[int]) -> None:
    """Reads of any size (an event, a character, cut anywhere) fold to the general answer."""
    body, _ = stream
    got = _pieces_fold(UP, _cut(body, sizes))
    assert got[:2] == _general(UP, body)
    assert got[2] >= 1, "a plain stream takes the fast path"


def test_recorded_streams_read_by_read_match_the_general_parser() -> None:
    n = 0
    for up, it in _recorded_200_streams():
        want = _general(up, it.body)
        for seed, most in ((1, 7), (2, 64), (3, 700), (4, 1 << 20)):
            rng, pieces, i = random.Random(seed), [], 0
            while i < len(it.body):
                k = rng.randint(1, most)
                pieces.append(it.body[i : i + k])
                i += k
            assert _pieces_fold(up, pieces)[:2] == want, f"{it.file}#{it.index} seed {seed}"
            n += 1
    if not RECORDED:
        pytest.skip("../shared/fixtures is absent")
    assert n > 0


def test_fold_joins_text_runs_into_one_delta() -> None:
    body = _sse(
        [
            {
                "id": "c",
                "model": "m",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
            },
            {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "lo, "}}]},
            {
                "id": "c",
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "wörld"}, "finish_reason": "stop"}],
            },
            {"id": "c", "model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
            "data: [DONE]\n\n",
        ]
    )
    cut = body.find(b"\n\n") + 2
    p = OpenAIStreamParser(UP)
    head = p.feed(body[:cut])
    rest = p.feed_all(body[cut:]) + p.close()
    deltas = [e for e in rest if type(e).__name__ == "PartDelta"]
    assert [d.text for d in deltas] == ["lo, wörld"]  # one delta for the run
    r = _fold(head + rest)[0]
    assert r.content[0].text == "Hello, wörld" and r.finish_reason == "stop"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (3, 4)


def test_tool_calls_and_errors_go_through_the_general_parser() -> None:
    tool = _sse(
        [
            {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "x"}}]},
            {
                "id": "c",
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{}"}}
                            ]
                        },
                    }
                ],
            },
            {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            "data: [DONE]\n\n",
        ]
    )
    err = _sse(
        [
            {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "x"}}]},
            {"error": {"message": "upstream overloaded", "code": 503}},
        ]
    )
    for body in (tool, err):
        cut = body.find(b"\n\n") + 2
        got, got_err, fast = _split_fold(UP, body[:cut], body[cut:])
        assert fast == 0
        assert (got, got_err) == _general(UP, body)


# --------------------------------------------- compact streams (the template path of the fold)


def _compact(c: dict[str, Any], ascii_only: bool) -> str:
    return json.dumps(c, separators=(",", ":"), ensure_ascii=ascii_only)


_HOSTILE = st.sampled_from(
    ['"', "\\", '\\"', '"delta":{"content":"', '"}', "\n", "\u00e9", "\u2028", "\U0001f600", ",", "[DONE]"]
)


@st.composite
def compact_streams(draw: st.DrawFn) -> bytes:
    """Streams as OpenAI sends them: compact JSON, every chunk with the same id and fields, an
    ``obfuscation`` field of varying length on some, extras that may change mid-stream, and texts
    full of quotes, backslashes and the template's own key."""
    ascii_only = draw(st.booleans())
    obf = draw(st.booleans())
    base: dict[str, Any] = {"id": "chatcmpl-Z", "object": "chat.completion.chunk", "created": 7, "model": "m"}
    if draw(st.booleans()):
        base["service_tier"] = "default"
    if draw(st.booleans()):
        base["system_fingerprint"] = "fp_1"
    rng = random.Random(draw(st.integers(0, 1 << 30)))

    def chunk(choices: list[Any], **more: Any) -> str:
        c = {**base, "choices": choices, **more}
        if obf:
            c["obfuscation"] = "".join(rng.choice("abcXYZ019") for _ in range(rng.randint(1, 12)))
        return f"data: {_compact(c, ascii_only)}\n\n"

    out = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    texts = st.lists(st.one_of(_HOSTILE, st.text(max_size=6)), max_size=4).map("".join)
    for piece in draw(st.lists(texts, min_size=3, max_size=16)):
        roll = draw(st.integers(0, 19))
        if roll == 0:  # the extras change mid-stream
            base["system_fingerprint"] = draw(st.sampled_from(["fp_2", "fp_3"]))
        elif roll == 1:
            out.append(
                chunk([{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])
            )
            continue
        elif roll == 2:  # a text delta with a null beside it (the general parser's shape)
            out.append(
                chunk([{"index": 0, "delta": {"content": piece, "refusal": None}, "finish_reason": None}])
            )
            continue
        out.append(chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}], usage=None))
    out.append(chunk([{"index": 0, "delta": {}, "finish_reason": draw(st.sampled_from(["stop", "length"]))}]))
    out.append(chunk([], usage={"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}))
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()


@settings(max_examples=300, deadline=None)
@given(compact_streams())
def test_fold_of_compact_streams_matches_the_general_parser(body: bytes) -> None:
    """The fold reads a chunk that repeats the chunk before it but for its text without parsing
    it; the answer (text, extras, usage, finish) is the general parser's, whatever the text."""
    cut = body.find(b"\n\n") + 2
    got, err, fast = _split_fold(UP, body[:cut], body[cut:])
    assert (got, err) == _general(UP, body)
    assert fast == 1


def test_the_template_path_reads_repeated_text_chunks_without_parsing_them() -> None:
    from fareway.adapters import openai_chunks

    base = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    body = "".join(
        f'data: {base}"delta":{{"content":{json.dumps(t)}}},"finish_reason":null}}],"obfuscation":"{o}"}}\n\n'
        for t, o in (("He", "ab"), ("l", "x1"), ('"lo', "Q"), ("\\", "zz9"), (" w", "k"))
    )
    payloads = openai_chunks.payloads_of(body)
    assert payloads is not None
    chunks = openai_chunks.parse_payloads(payloads)
    assert chunks is not None
    # the four after the first repeat it but for their text and obfuscation value: one run
    assert [type(c).__name__ for c in chunks] == ["dict", "str"]
    assert chunks[1] == "l" + '"lo' + "\\" + " w"
    # a chunk that differs outside its text is parsed whole, and is the template of those after it
    other = body.replace('"created":1,', '"created":2,', 3).replace('"created":2,', '"created":1,', 1)
    chunks = openai_chunks.parse_payloads(openai_chunks.payloads_of(other) or []) or []
    assert [type(c).__name__ for c in chunks] == ["dict", "dict", "str", "dict", "str"]
    assert [c["created"] for c in chunks if isinstance(c, dict)] == [1, 2, 1]


def _plain_chunk(text_json: str, created: int = 1) -> str:
    base = (
        f'{{"id":"c","object":"chat.completion.chunk","created":{created},"model":"m","choices":[{{"index":0,'
    )
    return f'{base}"delta":{{"content":{text_json}}},"finish_reason":null}}],"usage":null}}'


def test_a_run_of_text_chunks_without_obfuscation_is_read_in_bulk_as_one_text() -> None:
    """The chunks after a template chunk that repeat it but for their text (no obfuscation
    field: most OpenAI-compatible providers) are checked and read as one run: one str, their
    texts joined (what the fold makes of them one by one)."""
    from fareway.adapters import openai_chunks

    texts = ["He", "l", '"lo', "\\", " w", "\u2028", "é"]
    payloads = [_plain_chunk(json.dumps(t)) for t in texts]
    payloads.append(
        payloads[0].replace(
            '"delta":{"content":"He"},"finish_reason":null', '"delta":{},"finish_reason":"stop"'
        )
    )
    chunks = openai_chunks.parse_payloads(payloads)
    assert chunks is not None
    assert [type(c).__name__ for c in chunks] == ["dict", "str", "dict"]
    assert chunks[1] == "".join(texts[1:])
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    # a chunk of the run that differs elsewhere than its text: the run is read chunk by chunk (one
    # bulk try per call: the chunks after are read one by one too, each against the template of
    # the chunk before)
    odd = [*payloads]
    odd[3] = _plain_chunk(json.dumps(texts[3]), created=2)
    chunks = openai_chunks.parse_payloads(odd) or []
    assert [type(c).__name__ for c in chunks] == ["dict", "str", "str", "dict", "dict", "str", "str", "dict"]
    assert chunks[1:3] == texts[1:3] and chunks[5:7] == texts[5:7]


def test_the_bulk_read_is_tried_once_per_read_so_a_stream_of_distinct_chunks_stays_linear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream whose every chunk differs after its text (a field that changes each time) makes
    each chunk a new template: trying the bulk read from each of them would scan the rest of the
    read again and again (quadratic).  It is tried once per read."""
    from fareway.adapters import openai_chunks

    tries: list[int] = []
    real = openai_chunks._run_texts

    def counted(tpl: Any, run: list[str]) -> str | None:
        tries.append(len(run))
        return real(tpl, run)

    monkeypatch.setattr(openai_chunks, "_run_texts", counted)
    base = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    payloads = [f'{base}"delta":{{"content":"t{i}"}},"finish_reason":null}}],"seq":{i}}}' for i in range(400)]
    chunks = openai_chunks.parse_payloads(payloads)
    assert chunks is not None and [c["seq"] for c in chunks] == list(range(400))
    assert len(tries) == 1 and tries[0] == 399


@pytest.mark.parametrize(
    "pieces",
    [
        ['"a', 'b"', '"c","d"'],  # a string across two chunks, two strings in a third
        ['"a"', '"b"\n', '"c"'],  # a newline after a text: an event of two lines
        ['"a"', "7", '"c"'],  # a number where a text should be
        ['"a"', '["b"]', '"c"'],  # an array
    ],
)
def test_a_run_that_is_not_one_json_string_per_chunk_is_not_read_as_text(pieces: list[str]) -> None:
    """The bulk read of a run checks that each chunk holds exactly one JSON string: a string
    cannot reach across chunks (they are joined by a raw newline, which no JSON string holds),
    and the count and types of the values must be those of the chunks.  Such a stream folds as
    the general parser reads it."""
    from fareway.adapters import openai_chunks

    payloads = [_plain_chunk('"x"'), *(_plain_chunk(p) for p in pieces)]
    try:
        chunks = openai_chunks.parse_payloads(payloads)
    except ValueError:  # orjson.JSONDecodeError
        chunks = None
    assert chunks is None or not any(type(c) is str and ("a" in c or "b" in c) for c in chunks)
    body = (
        "".join(f"data: {p}\n\n" for p in payloads)
        + "data: "
        + _plain_chunk('"."').replace('"finish_reason":null', '"finish_reason":"stop"')
        + "\n\ndata: [DONE]\n\n"
    )
    raw = body.encode()
    cut = raw.find(b"\n\n") + 2
    got, err, _ = _split_fold(UP, raw[:cut], raw[cut:])
    assert (got, err) == _general(UP, raw)


@pytest.mark.parametrize("odd", ["a-b", "", 'x"}', 'x,"obfuscation":"y', "é1"])
def test_a_run_with_an_obfuscation_value_of_another_shape_folds_as_the_general_parser(odd: str) -> None:
    """The bulk read of a run with OpenAI's obfuscation field takes it only when every value is
    letters and digits (or empty) and ends its chunk; a value of another shape in the middle of
    the run (a dash, quotes and braces, a second field) sends the run to the chunk-by-chunk
    read, and the stream folds as the general parser reads it."""
    from fareway.adapters import openai_chunks

    base = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'

    def chunk(text: str, obf: str) -> str:
        return (
            f'{base}"delta":{{"content":{json.dumps(text)}}},"finish_reason":null}}],"obfuscation":"{obf}"}}'
        )

    payloads = [chunk("He", "ab"), chunk("l", "x1"), chunk("l", odd), chunk("o", "Q")]
    try:
        chunks = openai_chunks.parse_payloads(payloads)
    except ValueError:  # orjson.JSONDecodeError
        chunks = None
    if chunks is not None:
        # (an empty value may be read in bulk: it is ignored, as every value is)
        assert "llo" not in [c for c in chunks if type(c) is str] or all(ch.isalnum() for ch in odd)
    stop = chunk(".", "z").replace('"finish_reason":null', '"finish_reason":"stop"')
    raw = ("".join(f"data: {p}\n\n" for p in [*payloads, stop]) + "data: [DONE]\n\n").encode()
    cut = raw.find(b"\n\n") + 2
    got, err, _ = _split_fold(UP, raw[:cut], raw[cut:])
    assert (got, err) == _general(UP, raw)


# ------------------------------------------- feed: the streamed path's template and fast path


def _feed_reads(up: Upstream, pieces: list[bytes]) -> tuple[Any, Any, list[StreamEvent]]:
    p = OpenAIStreamParser(up)
    events: list[StreamEvent] = []
    try:
        for piece in pieces:
            events += p.feed(piece)
        events += p.close()
    except UpstreamError as exc:
        return _fold(events), (type(exc), exc.message), events
    return _fold(events), None, events


def _general_events(up: Upstream, body: bytes) -> list[StreamEvent]:
    """The events of the SSE parser path alone (the fast paths switched off)."""
    p = OpenAIStreamParser(up)
    out: list[StreamEvent] = []
    try:
        out += p._events(p._general(body))
        out += p.close()
    except UpstreamError:
        pass
    return out


@settings(max_examples=200, deadline=None)
@given(compact_streams(), st.lists(st.integers(1, 400), min_size=1, max_size=8))
def test_feed_of_compact_streams_gives_the_general_parsers_events(body: bytes, sizes: list[int]) -> None:
    """A streamed call's reads, cut anywhere: the same events, one by one, as the SSE parser
    path gives for the whole body (a client sees every delta as the upstream sent it)."""
    assert _feed_reads(UP, _cut(body, sizes))[2] == _general_events(UP, body)


def test_feed_event_by_event_matches_on_recorded_streams() -> None:
    n = 0
    for up, it in _recorded_200_streams():
        events = it.body.split(b"\n\n")
        pieces = [e + b"\n\n" for e in events[:-1]] + ([events[-1]] if events[-1] else [])
        got = _feed_reads(up, pieces)
        assert got[2] == _general_events(up, it.body) or got[1] is not None, f"{it.file}#{it.index}"
        assert got[:2] == _general(up, it.body), f"{it.file}#{it.index}"
        n += 1
    if not RECORDED:
        pytest.skip("../shared/fixtures is absent")
    assert n > 0


def _one_read_body(pieces: list[str], *, last_text: bool = False) -> bytes:
    """A role chunk, a text chunk, chunks with these content strings (JSON, as sent), a finish
    chunk (with an empty delta as OpenAI sends it, or ``last_text``: with a text) and [DONE]: one
    read of a fast upstream."""
    role = _plain_chunk('""').replace('"delta":{"content":""}', '"delta":{"role":"assistant","content":""}')
    stop = _plain_chunk('"."').replace('"finish_reason":null', '"finish_reason":"stop"')
    if not last_text:
        stop = stop.replace('"delta":{"content":"."}', '"delta":{}')
    chunks = [role, _plain_chunk('"He"'), *(_plain_chunk(p) for p in pieces), stop]
    return ("".join(f"data: {c}\n\n" for c in chunks) + "data: [DONE]\n\n").encode()


@pytest.mark.parametrize("last_text", [False, True])
def test_feed_reads_a_run_of_text_chunks_in_one_read_in_bulk(
    monkeypatch: pytest.MonkeyPatch, last_text: bool
) -> None:
    """A read holding many chunks that repeat the text chunk before them but for their text (a
    fast upstream's read): feed checks and parses them together, not chunk by chunk, and still
    gives one delta per chunk, as the general parser does; also when the finish chunk starts as
    they do (it carries the last text)."""
    from fareway.adapters import openai_stream

    fills: list[str] = []
    real = openai_stream.fill

    def counted(tpl: Any, p: str) -> str | None:
        fills.append(p)
        return real(tpl, p)

    monkeypatch.setattr(openai_stream, "fill", counted)
    texts = ["l", '"lo', "\\", " w", "\u2028", "é", "", "!"]
    body = _one_read_body([json.dumps(t) for t in texts], last_text=last_text)
    got = _feed_reads(UP, [body])
    assert got[1] is None
    assert got[2] == _general_events(UP, body)
    deltas = [e.text for e in got[2] if type(e).__name__ == "PartDelta"]
    assert deltas == ["He", *(t for t in texts if t), *(["."] if last_text else [])]
    # the run was read in bulk: the finish chunk alone is read by itself, and with an empty
    # delta it is not even that (the read is of the plainest shape: openai_chunks.plain_answer)
    assert len(fills) == (1 if last_text else 0)


@pytest.mark.parametrize(
    "pieces",
    [
        ['"a"', '"b","c"', '"d"'],  # two values in one chunk (not a JSON chunk)
        ['"a"', "7", '"c"'],  # a number where a text should be
        ['"a', 'b"', '"c"'],  # a string across two chunks
        ['"a"', '["b"]', '"c"'],  # an array
        ['"a"', '"b" ', '"c"'],  # a space after a text: a chunk of the template's shape all the same
    ],
)
def test_feed_of_a_run_that_is_not_one_json_string_per_chunk_gives_the_general_parsers_events(
    pieces: list[str],
) -> None:
    body = _one_read_body(pieces)
    got = _feed_reads(UP, [body])
    assert got[:2] == _general(UP, body)
    assert got[2] == _general_events(UP, body)


@pytest.mark.parametrize("whole", [False, True])
def test_extras_that_change_mid_stream_are_merged_by_feed_and_by_the_fold(whole: bool) -> None:
    """Chunks repeat their extras (service_tier, system_fingerprint), and the repeat is not
    merged again; a chunk that adds one (OpenAI's moderation) or changes a value must still be
    merged, in order.  The expected extras are written out here, not taken from the parser."""
    base = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    tail = '"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}'
    chunks = [
        base + '"service_tier":"default","system_fingerprint":"fp",' + tail % "a",
        base + '"service_tier":"default","system_fingerprint":"fp",' + tail % "b",
        base + '"service_tier":"default","system_fingerprint":"fp","moderation":{"x":1},' + tail % "c",
        base + '"service_tier":"flex","system_fingerprint":"fp",' + tail % "d",
        # the same keys as the chunk before, one value changed
        base + '"service_tier":"flex","system_fingerprint":"fp2",'
        '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
    ]
    body = ("".join(f"data: {c}\n\n" for c in chunks) + "data: [DONE]\n\n").encode()
    p = OpenAIStreamParser(UP)
    events: list[StreamEvent] = []
    if whole:
        events += p.feed_all(body)
    else:
        for e in body.split(b"\n\n")[:-1]:
            events += p.feed(e + b"\n\n")
    events += p.close()
    start, finish = events[0], events[-1]
    assert type(start).__name__ == "ResponseStart" and type(finish).__name__ == "Finish"
    assert start.extensions == {"openai": {"service_tier": "default", "system_fingerprint": "fp"}}
    assert finish.extensions == {
        "openai": {"service_tier": "flex", "system_fingerprint": "fp2", "moderation": {"x": 1}}
    }


_KIND_OF = {"text": "text", "thinking": "thinking", "tool": "tool_args"}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["start", "delta", "delta", "delta", "result"]),
            st.integers(0, 2),
            st.sampled_from(["text", "thinking", "tool"]),
            st.text(max_size=4),
        ),
        max_size=40,
    )
)
def test_the_accumulator_joins_deltas_as_they_came(ops: list[tuple[str, int, str, str]]) -> None:
    """The accumulator joins a part's deltas (a text's, a thinking part's, a tool call's
    arguments) once, in ``result``, not one by one: each part's string is what its deltas spell,
    whenever ``result`` is asked for (mid-stream too); a delta of another kind than its part's is
    ignored, and a part started again at an index starts from its own string."""
    from fareway.events import PartDelta, PartStart
    from fareway.types import TextPart, ThinkingPart, ToolCallPart

    acc = Accumulator()
    want: dict[int, tuple[str, str]] = {}  # index -> (part kind, its string)
    chars = 0

    def strings(resp: Any) -> list[tuple[str, str]]:
        out = []
        for p in resp.content:
            if isinstance(p, ToolCallPart):
                out.append(("tool", p.arguments))
            else:
                out.append(("thinking" if isinstance(p, ThinkingPart) else "text", p.text))
        return out

    for op, index, kind, text in ops:
        if op == "start":
            part = {
                "text": TextPart(text),
                "thinking": ThinkingPart(text),
                "tool": ToolCallPart("c", "f", text),
            }
            acc.add(PartStart(index, part[kind]))
            want[index] = (kind, text)
        elif op == "delta":
            acc.add(PartDelta(index, _KIND_OF[kind], text))  # type: ignore[arg-type]
            chars += len(text)
            have = want.get(index, (kind, ""))  # (no part yet: one of the delta's kind is made)
            want[index] = (have[0], have[1] + text) if have[0] == kind else have
        else:
            assert strings(acc.result()) == [want[i] for i in sorted(want)]
    assert strings(acc.result()) == [want[i] for i in sorted(want)]
    assert acc.output_chars == chars
