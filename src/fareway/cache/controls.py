"""What one request asks of the cache: read, store, for how long.

From, first match wins for each setting:

1. headers: ``x-fareway-cache: use | refresh | bypass``, ``x-fareway-cache-ttl: SECONDS``,
   ``Cache-Control: no-store`` (do not store this answer) and ``no-cache`` (do not answer from the
   cache: with ``use`` that is ``refresh``);
2. the body field ``fareway_cache`` for clients that cannot set headers: ``"use"`` or
   ``{"mode": "use", "ttl": 600, "no_store": false}`` (removed from the request before anything
   else sees it, so it never goes upstream and is not in the key);
3. the alias's ``cache = {mode, ttl}`` default;
4. ``bypass``, with ``[cache] ttl``.

``use``: read, and store on a miss; ``refresh``: store without reading; ``bypass``: neither.
A value that is not one of these, or a TTL that is not a whole number of seconds of at least 1,
is a 400 naming the header or field; a TTL over ``[cache] max_ttl`` is cut to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fareway.cache.key import BODY_FIELD
from fareway.cache.settings import MODES, AliasCache, CacheSettings, Mode
from fareway.errors import BadRequest
from fareway.types import ChatRequest

HEADER = "x-fareway-cache"
TTL_HEADER = "x-fareway-cache-ttl"


@dataclass(frozen=True, slots=True)
class Controls:
    mode: Mode
    read: bool
    write: bool
    ttl: int


def pop_body_field(req: ChatRequest) -> Any:
    """Remove the ``fareway_cache`` body field from ``req`` and return it (None when absent)."""
    value = None
    for bag in ("openai", "anthropic"):
        ext = req.extensions.get(bag)
        if ext and BODY_FIELD in ext:
            value = ext.pop(BODY_FIELD)
            if not ext:
                del req.extensions[bag]
    return value


def _mode(value: Any, where: str) -> Mode:
    if isinstance(value, str):
        v = value.strip().lower()
        for m in MODES:
            if v == m:
                return m
    raise BadRequest(f"Invalid `{where}`: {value!r}; use one of: {', '.join(MODES)}.", param=where)


def _ttl(value: Any, where: str, settings: CacheSettings) -> int:
    n: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and value.strip().isdigit():
        n = int(value.strip())
    if n is None or n < 1:
        raise BadRequest(
            f"Invalid `{where}`: {value!r}; give a whole number of seconds, at least 1.", param=where
        )
    return min(n, settings.max_ttl)


def _body(value: Any) -> tuple[Mode | None, Any, bool]:
    """(mode, ttl value, no_store) from the body field."""
    if value is None:
        return None, None, False
    if isinstance(value, str):
        return _mode(value, BODY_FIELD), None, False
    if not isinstance(value, dict):
        raise BadRequest(
            f"Invalid `{BODY_FIELD}`: give a mode string or an object {{mode, ttl, no_store}}.",
            param=BODY_FIELD,
        )
    unknown = sorted(set(value) - {"mode", "ttl", "no_store"})
    if unknown:
        raise BadRequest(
            f"Invalid `{BODY_FIELD}`: unknown field(s) {', '.join(unknown)} (known: mode, ttl, no_store).",
            param=BODY_FIELD,
        )
    mode = _mode(value["mode"], f"{BODY_FIELD}.mode") if "mode" in value else None
    no_store = value.get("no_store", False)
    if not isinstance(no_store, bool):
        raise BadRequest(f"Invalid `{BODY_FIELD}.no_store`: true or false.", param=f"{BODY_FIELD}.no_store")
    return mode, value.get("ttl"), no_store


def controls(
    headers: Mapping[str, str], body_value: Any, alias: AliasCache | None, settings: CacheSettings
) -> Controls:
    body_mode, body_ttl, no_store = _body(body_value)
    raw = headers.get(HEADER)
    mode: Mode
    if raw is not None:
        mode = _mode(raw, HEADER)
    elif body_mode is not None:
        mode = body_mode
    elif alias is not None:
        mode = alias.mode
    else:
        mode = "bypass"
    raw_ttl = headers.get(TTL_HEADER)
    if raw_ttl is not None:
        ttl = _ttl(raw_ttl, TTL_HEADER, settings)
    elif body_ttl is not None:
        ttl = _ttl(body_ttl, f"{BODY_FIELD}.ttl", settings)
    elif alias is not None and alias.ttl is not None:
        ttl = alias.ttl
    else:
        ttl = settings.ttl
    if mode == "bypass":  # neither reads nor stores, whatever Cache-Control says
        return Controls(mode, False, False, ttl)
    directives = {d.strip().lower() for d in headers.get("cache-control", "").split(",")}
    read = mode == "use" and "no-cache" not in directives
    write = mode in ("use", "refresh") and not no_store and "no-store" not in directives
    return Controls(mode, read, write, ttl)


__all__ = ["HEADER", "TTL_HEADER", "Controls", "controls", "pop_body_field"]
