"""The OpenAI embeddings dialect and the Vector codec: property tests of the base64/float encoding
(OpenAI's base64 is standard base64 of little-endian float32, WIRE.md 1g) and of input shapes."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fareway.errors import BadRequest
from fareway.types import EmbeddingRequest, EmbeddingResult, Usage, Vector
from fareway.wire.openai_embeddings import MAX_INPUTS, encode_response, parse_inputs, parse_request

float32s = st.floats(width=32, allow_nan=False)
"""Values a float32 holds exactly (so a round trip through base64 gives them back)."""
finite32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
"""...and that JSON can carry (a float response has no infinities)."""


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "text-embedding-3-small", "input": "hi", **fields})


# ------------------------------------------------------------------------------- the codec


@settings(max_examples=200, deadline=None)
@given(st.lists(float32s, max_size=300))
def test_base64_is_little_endian_float32_and_round_trips(values: list[float]) -> None:
    v = Vector(values)
    text = v.base64()
    # the expected bytes come from struct (an independent encoder), not from Vector
    assert base64.b64decode(text) == struct.pack(f"<{len(values)}f", *values)
    back = Vector.from_base64(text)
    assert len(back) == len(values)
    assert back.floats() == values
    assert back.base64() == text


@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30), max_size=50)
)
def test_floats_encode_to_their_nearest_float32(values: list[float]) -> None:
    raw = base64.b64decode(Vector(values).base64())
    assert list(struct.unpack(f"<{len(values)}f", raw)) == [
        struct.unpack("<f", struct.pack("<f", x))[0] for x in values
    ]


@given(st.binary(max_size=64).filter(lambda b: len(b) % 4 != 0))
def test_base64_of_partial_float32_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        Vector.from_base64(base64.b64encode(raw).decode())


@pytest.mark.parametrize("text", ["not base64!", "AAAA=AAA", "A"])
def test_malformed_base64_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Vector.from_base64(text)


@given(
    st.lists(st.lists(finite32s, min_size=1, max_size=8), min_size=1, max_size=5),
    st.sampled_from(["float", "base64"]),
)
def test_response_encodes_each_vector_as_asked(vectors: list[list[float]], fmt: str) -> None:
    req = EmbeddingRequest(model="m", inputs=["x"] * len(vectors), encoding_format=fmt)  # type: ignore[arg-type]
    result = EmbeddingResult([Vector(v) for v in vectors], "m", Usage(input_tokens=7))
    out = orjson.loads(encode_response(result, req, "m", "0.00000014"))
    assert out["object"] == "list" and out["model"] == "m"
    assert out["usage"] == {"prompt_tokens": 7, "total_tokens": 7, "cost": 1.4e-07}
    assert [d["index"] for d in out["data"]] == list(range(len(vectors)))
    for d, v in zip(out["data"], vectors, strict=True):
        assert d["object"] == "embedding"
        if fmt == "base64":
            assert list(struct.unpack(f"<{len(v)}f", base64.b64decode(d["embedding"]))) == v
        else:
            assert d["embedding"] == v


def test_unknown_cost_is_left_out_not_zero() -> None:
    req = EmbeddingRequest(model="m", inputs=["x"])
    out = orjson.loads(encode_response(EmbeddingResult([Vector([1.0])], "", None), req, "up-model", None))
    assert out["usage"] == {"prompt_tokens": 0, "total_tokens": 0}
    assert out["model"] == "up-model"


# ------------------------------------------------------------------------------ input shapes

texts = st.text(min_size=1, max_size=20)
token_ids = st.integers(min_value=0, max_value=2**31 - 1)
token_arrays = st.lists(token_ids, min_size=1, max_size=10)


@given(texts)
def test_a_string_is_one_input(text: str) -> None:
    assert parse_inputs(text) == [text]


@given(st.lists(texts, min_size=1, max_size=30))
def test_a_list_of_strings_is_one_input_each(items: list[str]) -> None:
    assert parse_inputs(items) == items


@given(token_arrays)
def test_one_token_array_is_one_input(tokens: list[int]) -> None:
    assert parse_inputs(tokens) == [tokens]


@given(st.lists(token_arrays, min_size=1, max_size=10))
def test_a_list_of_token_arrays_is_one_input_each(arrays: list[list[int]]) -> None:
    assert parse_inputs(arrays) == arrays


@given(
    st.one_of(
        st.just(""),
        st.just([]),
        st.just([[]]),
        st.just([""]),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.lists(st.one_of(st.floats(), st.booleans(), st.none()), min_size=1, max_size=3),
        st.tuples(texts, token_ids).map(list),  # mixed strings and ids
        st.tuples(token_arrays, texts).map(list),  # mixed arrays and strings
        st.lists(st.integers(max_value=-1), min_size=1, max_size=3),  # negative ids
        st.tuples(token_ids, st.booleans()).map(list),  # a bool among ids
    )
)
def test_every_other_shape_is_a_400_naming_input(value: Any) -> None:
    with pytest.raises(BadRequest) as info:
        parse_inputs(value)
    assert info.value.status == 400 and info.value.param == "input"


def test_too_many_inputs() -> None:
    assert len(parse_inputs(["x"] * MAX_INPUTS)) == MAX_INPUTS
    with pytest.raises(BadRequest, match="at most 2048"):
        parse_inputs(["x"] * (MAX_INPUTS + 1))


# ---------------------------------------------------------------------------- the request


def test_request_fields_and_pass_through() -> None:
    req = parse_request(
        body(input=["a", "b"], dimensions=64, encoding_format="base64", user="u", input_type="query")
    )
    assert req.inputs == ["a", "b"] and req.dimensions == 64 and req.encoding_format == "base64"
    assert req.user == "u" and req.extensions == {"input_type": "query"}
    assert parse_request(body()).encoding_format == "float"  # OpenAI's default
    assert parse_request(body(encoding_format=None, dimensions=None)).dimensions is None


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{", None),
        (b"[1]", None),
        (orjson.dumps({"input": "x"}), "model"),
        (orjson.dumps({"model": 3, "input": "x"}), "model"),
        (orjson.dumps({"model": "m"}), "input"),
        (body(dimensions=0), "dimensions"),
        (body(dimensions=-3), "dimensions"),
        (body(dimensions=1.5), "dimensions"),
        (body(dimensions=True), "dimensions"),
        (body(dimensions="64"), "dimensions"),
        (body(encoding_format="int8"), "encoding_format"),
        (body(encoding_format=1), "encoding_format"),
        (body(user=5), "user"),
    ],
)
def test_bad_requests_are_400_naming_the_field(raw: bytes, param: str | None) -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(raw)
    assert info.value.status == 400 and info.value.param == param
