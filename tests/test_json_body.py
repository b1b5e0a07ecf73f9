"""Upstream request bodies are allocated at their own size (adapters.base.json_body; orjson 3.13's
result holds a buffer of about 4 KiB whatever its length), measured with tracemalloc."""

from __future__ import annotations

import tracemalloc

import orjson

from fareway.adapters.base import json_body

OBJ = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def _allocated(make: object) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = [make() for _ in range(200)]  # type: ignore[operator]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(keep) == 200
    return (after - before) // 200


def test_a_body_is_the_json_orjson_writes_in_an_allocation_of_its_size() -> None:
    body = json_body(OBJ)
    assert body == orjson.dumps(OBJ) and type(body) is bytes
    size = len(body)
    assert _allocated(lambda: json_body(OBJ)) < size + 200  # (a bytes object's header, the list slot)
