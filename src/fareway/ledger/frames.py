"""Length-prefixed frames between the gateway and its ledger writer process.

A frame is a 4-byte little-endian length followed by a :mod:`marshal` payload.  marshal is the
fastest serializer in the standard library for what the ledger ships (tuples and lists of str,
int, float, bool and None) and both ends are the same Python, which is all marshal requires.
Never use it for data from outside the process pair.
"""

from __future__ import annotations

import marshal
import struct
from typing import IO, Any

_LEN = struct.Struct("<I")
HEADER = _LEN.size


def encode(obj: Any) -> bytes:
    payload = marshal.dumps(obj)
    return _LEN.pack(len(payload)) + payload


def payload_size(header: bytes) -> int:
    return int(_LEN.unpack(header)[0])


def decode(payload: bytes) -> Any:
    return marshal.loads(payload)


def write_frame(out: IO[bytes], obj: Any) -> None:
    out.write(encode(obj))
    out.flush()


def _read_exact(inp: IO[bytes], n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = inp.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(inp: IO[bytes]) -> Any:
    """The next frame's object, or None at end of input (a frame cut short counts as the end)."""
    header = _read_exact(inp, HEADER)
    if header is None:
        return None
    payload = _read_exact(inp, payload_size(header))
    return None if payload is None else decode(payload)
