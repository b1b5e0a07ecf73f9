"""The OpenAI-dialect usage reader (``parse_usage``, every call's usage, streamed or not) against
the reader it replaced (kept here as the reference): its plain-int shortcuts must give what the
general conversion gives for every value, ints or not."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fareway.adapters.openai_fields import parse_usage
from fareway.types import Usage


def _as_int(v: Any) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def _reference(raw: Any) -> Usage | None:
    """parse_usage as it was before its shortcuts (65e4c5a)."""
    if not isinstance(raw, dict):
        return None
    ptd = raw.get("prompt_tokens_details")
    ctd = raw.get("completion_tokens_details")
    ptd = ptd if isinstance(ptd, dict) else {}
    ctd = ctd if isinstance(ctd, dict) else {}
    cached = _as_int(ptd.get("cached_tokens"))
    if not cached and "cached_tokens" not in ptd:
        cached = _as_int(raw.get("num_cached_tokens"))
    extras = {k: v for k, v in raw.items() if k not in {"prompt_tokens", "completion_tokens", "total_tokens"}}
    return Usage(
        input_tokens=_as_int(raw.get("prompt_tokens")),
        output_tokens=_as_int(raw.get("completion_tokens")),
        cached_input_tokens=cached,
        cache_write_tokens=_as_int(ptd.get("cache_write_tokens")),
        reasoning_tokens=_as_int(ctd.get("reasoning_tokens")),
        extensions={"openai": extras} if extras else {},
    )


class _Int(int):
    pass


_VALUES = st.one_of(
    st.integers(-5, 10**12),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e12),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.integers(0, 99).map(_Int),
)
_DETAILS = st.one_of(
    st.none(),
    st.integers(),
    st.dictionaries(
        st.sampled_from(["cached_tokens", "cache_write_tokens", "reasoning_tokens", "audio_tokens"]), _VALUES
    ),
)
_USAGE = st.one_of(
    st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens", "num_cached_tokens", "cost"]),
        _VALUES,
    ),
    st.none(),
    st.integers(),
).flatmap(
    lambda base: st.fixed_dictionaries(
        {}, optional={"prompt_tokens_details": _DETAILS, "completion_tokens_details": _DETAILS}
    ).map(lambda d: {**base, **d} if isinstance(base, dict) else base)
)


@settings(max_examples=500, deadline=None)
@given(_USAGE)
def test_parse_usage_matches_the_general_conversion(raw: Any) -> None:
    got = parse_usage(raw)
    want = _reference(raw)
    assert got == want
    if got is not None and want is not None:  # (a bool or an int subclass compares equal to an int)
        fields = (
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
        )
        assert [type(getattr(got, f)) for f in fields] == [type(getattr(want, f)) for f in fields]


def test_parse_usage_of_openais_usage_chunk() -> None:
    raw = {
        "prompt_tokens": 11,
        "completion_tokens": 16,
        "total_tokens": 27,
        "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    u = parse_usage(raw)
    assert u == Usage(11, 16, 3, 0, 2, False, {"openai": {k: raw[k] for k in list(raw)[3:]}})
