"""Load the real recorded provider traffic in ../shared/fixtures (see its README).

Tests look for the folder next to the checkout (``../shared/fixtures``) or at
``$FAREWAY_FIXTURES``; a test module that needs it skips with a clear reason when it is absent.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_HERE = Path(__file__).resolve().parent


def fixtures_dir() -> Path | None:
    env = os.environ.get("FAREWAY_FIXTURES")
    candidates = [Path(env)] if env else []
    candidates += [_HERE.parent.parent / "shared" / "fixtures", _HERE.parent / "shared" / "fixtures"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


@dataclass
class Interaction:
    file: str
    index: int
    method: str
    uri: str
    request_headers: dict[str, list[str]]
    request_json: Any
    status: int
    response_headers: dict[str, str]
    """Lower-cased names, first value."""
    body: bytes
    """The response body exactly as the provider sent it (gunzipped; parsed_body re-serialised)."""

    @property
    def is_stream(self) -> bool:
        ct = self.response_headers.get("content-type", "")
        return "event-stream" in ct or (self.body[:5] == b"data:" or self.body[:6] == b"event:")

    def response_json(self) -> Any:
        return json.loads(self.body)


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


def load_cassette(path: Path) -> list[Interaction]:
    data = yaml.load(path.read_text("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    out = []
    for i, it in enumerate(data.get("interactions", [])):
        req, resp = it["request"], it["response"]
        rheaders = {
            k.lower(): (v[0] if isinstance(v, list) and v else v)
            for k, v in (resp.get("headers") or {}).items()
        }
        if "parsed_body" in resp:
            body = json.dumps(resp["parsed_body"]).encode()
        else:
            raw = (resp.get("body") or {}).get("string", b"")
            body = _to_bytes(raw)
            if "gzip" in str(rheaders.get("content-encoding", "")) and body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
        if "parsed_body" in req:
            rjson = req["parsed_body"]
        else:
            rb = req.get("body")
            rb = rb.get("string") if isinstance(rb, dict) else rb
            try:
                rjson = json.loads(rb) if rb else None
            except (TypeError, ValueError):
                rjson = rb
        out.append(
            Interaction(
                file=path.name,
                index=i,
                method=req.get("method", "POST"),
                uri=req.get("uri", ""),
                request_headers=req.get("headers") or {},
                request_json=rjson,
                status=int(resp["status"]["code"]),
                response_headers=rheaders,
                body=body,
            )
        )
    return out


def cassettes(provider: str) -> list[Path]:
    d = fixtures_dir()
    if d is None:
        return []
    return sorted((d / provider).glob("*.yaml"))


def raw_bodies(provider: str) -> list[Path]:
    d = fixtures_dir()
    if d is None:
        return []
    return sorted((d / provider).glob("*.bin"))
