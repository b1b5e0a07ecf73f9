"""The SSE parser against events it is given: any split of the bytes, LF or CRLF line ends,
comments, several data lines, event names — the parsed events are the ones that were written."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from fareway.sse import SseParser

_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30
)
_event = st.tuples(
    st.lists(_text, min_size=1, max_size=3),  # data lines
    st.one_of(st.none(), st.sampled_from(["error", "message_start", "ping"])),
    st.booleans(),  # a comment line before it
)


def _render(events: list[tuple[list[str], str | None, bool]], eol: str) -> str:
    out = []
    for data, name, comment in events:
        if comment:
            out.append(": keep-alive" + eol)
        if name is not None:
            out.append(f"event: {name}{eol}")
        out += [f"data: {d}{eol}" for d in data]
        out.append(eol)
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(_event, max_size=6),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
# found by hypothesis: a read ending in CR, then an empty read, then the LF (it ended the event early)
@example(events=[(["a", "b"], None, False)], eol="\r\n", cuts=[8, 8])
def test_parsed_events_are_the_written_ones(
    events: list[tuple[list[str], str | None, bool]], eol: str, cuts: list[int]
) -> None:
    raw = _render(events, eol).encode()
    p = SseParser()
    got = []
    prev = 0
    for c in sorted(min(c, len(raw)) for c in cuts):
        got += p.feed(raw[prev:c])
        prev = c
    got += p.feed(raw[prev:])
    got += p.close()
    assert [(e.data, e.event) for e in got] == [("\n".join(d), n) for d, n, _ in events]
