"""``Accumulator.add_all``: the events of a read folded in one call.  The events of a whole
plain-text answer (what ``feed_all`` gives for the common stream) take a one-step fold; whatever
the events and whatever the accumulator held before, the answer must be the one ``add`` gives
event by event."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fareway import events as ev_mod
from fareway.events import (
    Accumulator,
    Finish,
    PartDelta,
    PartEnd,
    PartStart,
    ResponseStart,
    StreamEvent,
    UsageUpdate,
    is_content,
)
from fareway.types import TextPart, ThinkingPart, ToolCallPart, Usage


def _one_by_one(before: list[StreamEvent], events: list[StreamEvent]) -> tuple[Any, ...]:
    acc = Accumulator()
    for e in before:
        acc.add(e)
    for e in events:
        acc.add(e)
    return acc.result(), acc.finished, acc.output_chars, any(is_content(e) for e in events)


def _at_once(before: list[StreamEvent], events: list[StreamEvent]) -> tuple[Any, ...]:
    acc = Accumulator()
    for e in before:
        acc.add(e)
    content = acc.add_all(events)
    return acc.result(), acc.finished, acc.output_chars, content


def _plain(
    text: str = "Hello",
    *,
    index: int = 0,
    delta_index: int | None = None,
    kind: Any = "text",
    part: Any = None,
) -> list[StreamEvent]:
    """The events of a whole plain-text answer, as ``feed_all`` gives them."""
    return [
        ResponseStart("r1", "m", 7, {"openai": {"system_fingerprint": "fp"}}),
        PartStart(index, TextPart("", {"x": {"y": 1}}) if part is None else part),
        PartDelta(index if delta_index is None else delta_index, kind, text),
        PartEnd(index),
        UsageUpdate(Usage(3, 4)),
        Finish("stop", None, {"openai": {"service_tier": "default"}}),
    ]


class _MyText(TextPart):
    pass


def test_a_whole_plain_answer_is_folded_in_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common whole answer does not go through ``add`` event by event (the one-step fold is
    taken), and gives what ``add`` gives."""
    expected = _one_by_one([], _plain())

    def no_add(self: Accumulator, event: StreamEvent) -> None:
        raise AssertionError("add() called")

    monkeypatch.setattr(ev_mod.Accumulator, "add", no_add)
    acc = Accumulator()
    assert acc.add_all(_plain()) is True
    assert (acc.result(), acc.finished, acc.output_chars, True) == expected
    assert acc.result().content == [TextPart("Hello", {"x": {"y": 1}})]


@pytest.mark.parametrize(
    ("before", "events"),
    [
        ([], _plain()),
        ([], _plain(index=3)),
        ([], _plain(delta_index=1)),  # the delta is another part's
        ([], _plain(kind="thinking")),  # a delta of another kind than the part's
        ([], _plain(kind="tool_args")),
        ([], _plain(part=ThinkingPart("t"))),
        ([], _plain(part=ToolCallPart("c", "f", "{"))),
        ([], _plain(part=_MyText("sub"))),
        # text still pending at the part's index: the part started again drops it
        ([PartStart(0, TextPart("")), PartDelta(0, "text", "old")], _plain()),
        ([PartStart(1, TextPart("")), PartDelta(1, "text", "other")], _plain()),
        ([ResponseStart("r0", "m0", None, {"openai": {"a": 1}, "b": {"c": 2}})], _plain()),
        ([], [*_plain()[:3], PartEnd(5), *_plain()[4:]]),
        ([], [*_plain()[1:], _plain()[0]]),  # another order
        ([], [UsageUpdate(Usage(1, 1)), *_plain()[1:]]),  # no start
        ([], [_plain()[0], _plain()[1], _plain()[2], _plain()[2], _plain()[4], _plain()[5]]),
        ([], [_plain()[0], _plain()[1], _plain()[2], _plain()[3], _plain()[4], _plain()[4]]),
        ([], [_plain()[0], _plain()[1], _plain()[1], _plain()[3], _plain()[4], _plain()[5]]),
        ([], [_plain()[0], _plain()[0], _plain()[2], _plain()[3], _plain()[4], _plain()[5]]),
        ([], [_plain()[0], _plain()[1], _plain()[2], _plain()[4], _plain()[4], _plain()[5]]),
        ([], [_plain()[0], _plain()[1], _plain()[2], _plain()[3], _plain()[5], _plain()[5]]),
        ([], _plain()[:5]),
        ([], [*_plain(), UsageUpdate(Usage(9, 9))]),
    ],
)
def test_add_all_folds_as_add_does(before: list[StreamEvent], events: list[StreamEvent]) -> None:
    assert _at_once(before, events) == _one_by_one(before, events)


_EVENT = st.one_of(
    st.builds(
        ResponseStart,
        st.sampled_from(["", "a"]),
        st.sampled_from(["m", "n"]),
        st.none() | st.integers(0, 3),
        st.sampled_from([{}, {"openai": {"k": 1}}, {"openai": {"k": 2}, "z": {}}]),
    ),
    st.builds(
        PartStart,
        st.integers(0, 2),
        st.sampled_from([TextPart(""), TextPart("a", {"e": {}}), ThinkingPart(), ToolCallPart("i", "n")]),
    ),
    st.builds(
        PartDelta,
        st.integers(0, 2),
        st.sampled_from(["text", "thinking", "tool_args", "signature"]),
        st.text(),
    ),
    st.builds(PartEnd, st.integers(0, 2)),
    st.builds(UsageUpdate, st.builds(Usage, st.integers(0, 9), st.integers(0, 9))),
    st.builds(
        Finish,
        st.sampled_from(["stop", "length", None]),
        st.none() | st.just("x"),
        st.sampled_from([{}, {"openai": {"k": 3}}]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_EVENT, max_size=5),
    st.lists(_EVENT, max_size=7),
    st.booleans(),
    st.integers(0, 2),
    st.sampled_from(["text", "thinking"]),
)
def test_add_all_of_any_events_folds_as_add_does(
    before: list[StreamEvent], events: list[StreamEvent], plain: bool, index: int, kind: str
) -> None:
    if plain:  # the shape of the one-step fold, at an index and of a kind that may not fit
        events = _plain("t", index=index, kind=kind)
    assert _at_once(before, events) == _one_by_one(before, events)


# ------------------------------------------------------- runs of text deltas (a fast read)


def _run(index: int, texts: list[str]) -> list[StreamEvent]:
    return [PartDelta(index, "text", t) for t in texts]


def test_a_run_of_text_deltas_of_one_part_is_appended_without_add(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read of a fast upstream brings many text deltas of one part: after the first, they are
    appended to that part's pending texts directly (add() is not called for each), and the answer
    is the one add() gives."""
    events = [PartStart(0, TextPart("")), *_run(0, ["a", "b", "", "c", "d"]), PartEnd(0)]
    expected = _one_by_one([], events)
    calls: list[StreamEvent] = []
    real = ev_mod.Accumulator.add

    def counted(self: Accumulator, event: StreamEvent) -> None:
        calls.append(event)
        real(self, event)

    monkeypatch.setattr(ev_mod.Accumulator, "add", counted)
    assert _at_once([], events) == expected
    assert [type(e).__name__ for e in calls] == ["PartStart", "PartDelta", "PartEnd"]


@pytest.mark.parametrize(
    ("before", "events"),
    [
        # a text delta of a thinking part (add() ignores it but counts it), then more
        ([], [PartStart(0, ThinkingPart()), PartDelta(0, "thinking", "a"), *_run(0, ["b", "c"])]),
        # the part started again at the same index between two deltas
        (
            [],
            [PartStart(0, TextPart("")), *_run(0, ["a"]), PartStart(0, TextPart("x")), *_run(0, ["b", "c"])],
        ),
        # a delta of another part, of another kind, then the first part again
        (
            [],
            [
                PartStart(0, TextPart("")),
                PartStart(1, ToolCallPart("i", "n")),
                *_run(0, ["a", "b"]),
                PartDelta(1, "tool_args", "{"),
                *_run(0, ["c"]),
                PartDelta(0, "thinking", "t"),
                *_run(0, ["d"]),
            ],
        ),
        # deltas with no part started (add() makes one), and usage between them
        ([], [*_run(2, ["a", "b"]), UsageUpdate(Usage(1, 1)), *_run(2, ["c", "d"])]),
        # a run continuing what an earlier read left pending
        ([PartStart(0, TextPart("")), PartDelta(0, "text", "x")], _run(0, ["a", "b"])),
    ],
)
def test_runs_of_text_deltas_fold_as_add_does(before: list[StreamEvent], events: list[StreamEvent]) -> None:
    assert _at_once(before, events) == _one_by_one(before, events)


_RUN_EVENT = st.one_of(
    st.builds(_run, st.integers(0, 1), st.lists(st.sampled_from(["", "a", "bc"]), min_size=1, max_size=4)),
    st.builds(lambda e: [e], _EVENT),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_EVENT, max_size=4), st.lists(_RUN_EVENT, max_size=6))
def test_add_all_of_events_with_runs_folds_as_add_does(
    before: list[StreamEvent], groups: list[list[StreamEvent]]
) -> None:
    events = [e for g in groups for e in g]
    assert _at_once(before, events) == _one_by_one(before, events)
