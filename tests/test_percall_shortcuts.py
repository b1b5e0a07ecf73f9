"""The per-call shortcuts (a common case answered without the general code): each gives what the
general code gives, and each test here fails when its shortcut's guard is removed (the shortcut
taken for every call)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fareway.cache.controls import controls
from fareway.cache.settings import CacheSettings
from fareway.keys.records import Limits
from fareway.ledger.records import AttemptRecord, CallRecord, rollup
from fareway.pipeline import attribution
from fareway.providers.catalog import Catalog, Offer, Prior
from fareway.router.policies import Decision, model_id_forms
from fareway.router.routes import Fallback, Target
from fareway.router.stats import Stats
from fareway.types import Upstream

# ------------------------------------------------------------------ cache controls: bypass


@pytest.mark.parametrize(
    ("headers", "read", "write"),
    [
        ({"x-fareway-cache": "use"}, True, True),
        ({"x-fareway-cache": "use", "cache-control": "no-cache"}, False, True),
        ({"x-fareway-cache": "use", "cache-control": "no-store"}, True, False),
        ({"x-fareway-cache": "refresh"}, False, True),
        ({"x-fareway-cache": "bypass", "cache-control": "no-cache"}, False, False),
        ({}, False, False),
    ],
)
def test_cache_controls_read_and_write_by_mode(headers: dict[str, str], read: bool, write: bool) -> None:
    ctl = controls(headers, None, None, CacheSettings())
    assert (ctl.read, ctl.write) == (read, write)


def test_a_bypassed_call_still_has_its_ttl_checked() -> None:
    with pytest.raises(Exception, match="x-fareway-cache-ttl"):
        controls({"x-fareway-cache-ttl": "soon"}, None, None, CacheSettings())


# ------------------------------------------------------------------ attribution: no tags


def test_tags_combine_sorted_unique_and_none_when_untagged() -> None:
    assert attribution.combine([], []) == ()
    assert attribution.combine(["b", "a"], ["a", "c"]) == ("a", "b", "c")
    assert attribution.combine([], ["z"]) == ("z",)


# ------------------------------------------------------------------ rollup: one attempt


def _attempt(n: int, tokens: tuple[int, int], cost: Decimal | None, estimated: bool = False) -> AttemptRecord:
    a = AttemptRecord("r", n, "p", "m", input_tokens=tokens[0], output_tokens=tokens[1], cost=cost)
    a.cached_input_tokens, a.cache_write_tokens, a.reasoning_tokens = 1 + n, 2 + n, 3 + n
    a.estimated = estimated
    return a


def test_rollup_of_one_attempt() -> None:
    call = rollup(CallRecord("r", "m"), [_attempt(0, (10, 5), Decimal("0.00012300"), True)], "src")
    assert (call.attempts, call.input_tokens, call.output_tokens) == (1, 10, 5)
    assert (call.cached_input_tokens, call.cache_write_tokens, call.reasoning_tokens) == (1, 2, 3)
    assert call.estimated is True and call.price_source == "src"
    assert str(call.cost) == "0.00012300"
    # a cost with a positive exponent comes out as a sum starting at 0 gives it
    assert str(rollup(CallRecord("r", "m"), [_attempt(0, (1, 1), Decimal("1E+1"))]).cost) == "10"
    # an unknown price: unknown when it consumed tokens, 0 when it consumed none
    assert rollup(CallRecord("r", "m"), [_attempt(0, (10, 5), None)]).cost is None
    assert rollup(CallRecord("r", "m"), [_attempt(0, (0, 0), None)]).cost == Decimal(0)


def test_rollup_of_two_attempts_sums_them() -> None:
    call = rollup(
        CallRecord("r", "m"),
        [_attempt(0, (10, 5), Decimal("0.001")), _attempt(1, (20, 7), Decimal("0.002"))],
    )
    assert (call.attempts, call.input_tokens, call.output_tokens) == (2, 30, 12)
    assert (call.cached_input_tokens, call.cache_write_tokens, call.reasoning_tokens) == (3, 5, 7)
    assert call.estimated is False
    assert call.cost == Decimal("0.003")


# ------------------------------------------------------------------ key limits


@pytest.mark.parametrize("field", ["daily_usd", "monthly_usd", "total_usd", "rpm", "tpm"])
def test_limits_any_and_budgeted_see_each_limit(field: str) -> None:
    value: object = 5 if field in ("rpm", "tpm") else Decimal(5)
    lim = Limits(**{field: value})  # type: ignore[arg-type]
    assert lim.any is True
    assert lim.budgeted is (field.endswith("_usd"))
    assert Limits().any is False and Limits().budgeted is False


# ------------------------------------------------------------------ routing


def test_model_id_forms_cached_and_unchanged() -> None:
    assert model_id_forms("claude-sonnet-4-5-20250929[1m]") == (
        "claude-sonnet-4-5-20250929[1m]",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
    )
    assert model_id_forms("gpt-4o-mini") == ("gpt-4o-mini",)
    assert model_id_forms("gpt-4o-latest") == ("gpt-4o-latest", "gpt-4o")


def _target(provider: str, model: str) -> Target:
    return Target(Upstream(provider, "openai", "http://x", model), "pinned")


def test_route_header_of_one_target_and_of_a_chain() -> None:
    assert (
        Decision("openai/m", "pinned", _target("openai", "m")).header()
        == "policy=pinned; chosen=openai/m; route=openai/m"
    )
    chain = Decision("auto", "auto", Fallback([_target("a", "x"), _target("b", "y")]), quality_floor=3)
    assert chain.header() == "policy=auto; floor=3; chosen=a/x; route=fallback(a/x,b/y)"
    assert chain.header("given") == "policy=auto; floor=3; chosen=a/x; route=given"


# ------------------------------------------------------------------ stats: rate-limit parse


def test_rate_limit_headers_are_parsed_again_within_the_refresh_when_a_bucket_is_low() -> None:
    t = [1000.0]
    stats = Stats(Catalog([Offer("p", "m", "m")], {"p": Prior(1.0, 50.0)}), clock=lambda: t[0])
    stats.limits_refresh_s = 10.0
    stats.limits_low_water = 5.0

    def end(remaining: int) -> None:
        headers = {"x-ratelimit-remaining-requests": str(remaining), "x-ratelimit-reset-requests": "60s"}
        stats.end(stats.begin("p/m"), True, 1.0, 20, 200, None, headers)

    end(100)
    t[0] += 1.0
    end(0)  # inside the refresh window, no bucket low: not parsed (the local count goes on)
    assert stats.available("p/m")
    t[0] += 1.0
    stats._entries["p/m"].limits[("requests", "")].remaining = 4  # low now
    end(0)  # a low bucket: parsed at once
    assert not stats.available("p/m")


# ------------------------------------------------------------------ the cost number: float() first


def _cost_by_decimal(text: str) -> float | None:
    """The general reading of a cost string (what the shortcut must agree with)."""
    from decimal import InvalidOperation

    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    return float(d) if d.is_finite() else None


_COST_TEXTS = [
    # numbers (float() reads them: the shortcut)
    "0.00001140",
    "0",
    "-0",
    "1E+1",
    "1e-30",
    " 2.5 ",
    "1_000.5",
    "1e-400",
    "12345678901234567890.123456789",
    # not finite or not numbers (the Decimal reading)
    "1e400",
    "-1e400",
    "nan",
    "NaN",
    "sNaN",
    "inf",
    "-Infinity",
    "",
    "x",
    "0x10",
    "1.2.3",
    "1__0",
]


@pytest.mark.parametrize("text", _COST_TEXTS)
def test_the_cost_number_is_the_decimal_reading(text: str) -> None:
    from fareway.wire.openai_stream import _cost_number

    got, want = _cost_number(text), _cost_by_decimal(text)
    assert got == want and (got is None) == (want is None)
    if got is not None and want is not None:
        assert math.copysign(1, got) == math.copysign(1, want)


@given(st.decimals(allow_nan=True, allow_infinity=True).map(str) | st.floats().map(repr))
def test_the_cost_number_is_the_decimal_reading_for_any_number(text: str) -> None:
    from fareway.wire.openai_stream import _cost_number

    assert _cost_number(text) == _cost_by_decimal(text)


# ------------------------------------------------------------------ the stream loop: deltas pass by


async def test_the_stream_loop_notes_usage_and_the_finish_among_deltas() -> None:
    # CallStream's loop skips its usage/finish tests for text deltas; the usage of a UsageUpdate
    # is still the call's, and a read that ends the answer (with the rest already in) goes out
    # with the closing chunk, in one piece
    from fareway.events import Finish, PartDelta, PartStart, ResponseStart, UsageUpdate
    from fareway.pipeline.context import CallContext
    from fareway.pipeline.gateway import CallStream
    from fareway.types import TextPart, Usage
    from fareway.wire.base import ResponseMeta
    from fareway.wire.openai_chat import WIRE

    usage = Usage(3, 2)
    batch = [
        ResponseStart("chatcmpl-1", "m", 1),
        PartStart(0, TextPart("")),
        PartDelta(0, "text", "a"),
        PartDelta(0, "text", "b"),
        Finish("stop"),
        UsageUpdate(usage),
    ]

    class Committed:
        def events(self) -> Any:
            return None  # (only passed to wrappers; there are none)

        async def batches(self) -> Any:
            yield batch

        def at_end(self) -> bool:
            return True

        def abort(self) -> None:
            raise AssertionError("not aborted")

    class Gw:
        wrappers: list[Any] = []

        def _account(self, ctx: Any) -> None:
            ctx.accounted = True

    ctx = CallContext("r", None, WIRE)  # type: ignore[arg-type]
    ctx.req = WIRE.parse_request(
        b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}', {}
    )
    ctx.committed = Committed()  # type: ignore[assignment]
    pieces = [p async for p in CallStream(Gw(), ctx, ResponseMeta("r"))]  # type: ignore[arg-type]
    assert ctx.usage is usage
    assert len(pieces) == 1 and pieces[0].endswith(b"data: [DONE]\n\n")


# ------------------------------------------- OpenAI parser: the optional fields' shortcut

_BAD_OPTIONAL = {  # each field after `stream`, with a value OpenAI's API refuses
    "stream_options": 5,
    "temperature": 5,
    "top_p": 2,
    "frequency_penalty": 9,
    "presence_penalty": 9,
    "stop": 5,
    "seed": "x",
    "n": 0,
    "user": 5,
    "metadata": "x",
    "reasoning_effort": 5,
    "response_format": "x",
    "tools": "x",
    "tool_choice": 5,
    "parallel_tool_calls": "x",
}


@pytest.mark.parametrize(("field", "value"), sorted(_BAD_OPTIONAL.items()))
def test_each_optional_field_alone_is_still_checked(field: str, value: Any) -> None:
    """parse_request checks the fields after `stream` only when one of _OPTIONAL_TOP is present:
    a field sent alone must still be checked (refused here), or the set has lost it."""
    import orjson

    from fareway.errors import BadRequest
    from fareway.wire.openai_chat import parse_request

    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value})
    with pytest.raises(BadRequest) as ei:
        parse_request(body)
    assert ei.value.param == field


def test_the_optional_fields_set_names_every_field_the_reader_gets() -> None:
    """A field added to _optional_fields must be added to _OPTIONAL_TOP too (else it is read
    only when another optional field is present)."""
    import inspect
    import re

    from fareway.wire import openai_chat

    read = set(re.findall(r'get\("(\w+)"\)', inspect.getsource(openai_chat._optional_fields)))
    read -= {"include_usage", "type"}  # keys inside a field's own object, not top-level fields
    assert read and read <= openai_chat._OPTIONAL_TOP
