"""The cache key: a digest of the canonical request after name resolution, built by a deny-list.

Everything in :class:`~fareway.types.ChatRequest` is in the key — the system and every message
(text, images, tool calls and results, thinking blocks with their signatures, every part's
dialect extensions), tools, tool choice, response format, every sampling and reasoning parameter
(temperature, top_p, top_k, stop, seed, n, max_tokens, thinking/reasoning_effort), user and
metadata, the dialect extension bags (``frequency_penalty``, ``logit_bias``, Anthropic
``service_tier``, any field added later...) and the forwarded dialect headers (``anthropic-beta``)
— except what :data:`DENIED_FIELDS`, :data:`DENIED_EXTENSIONS` and :data:`DENIED_HEADERS` list.
A field added to the canonical model later is in the key without anyone remembering to add it.

The key is namespaced by tenant (:meth:`fareway.cache.settings.CacheSettings.tenant`: the calling
key's own namespace, or its ``[cache.share]`` group's), and versioned (:data:`KEY_VERSION`).

Only the core is imported here (the key is a pure function of the request).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from fareway.types import ChatRequest, Message, Part, TextPart

KEY_VERSION = b"fareway-cache-key-1"
"""Changing how keys are derived changes this, so entries of an older gateway are never read."""

BODY_FIELD = "fareway_cache"
"""The request body field for clients that cannot set headers (removed before the call goes on)."""

DENIED_FIELDS: Mapping[str, Any] = {
    "model": "",  # replaced by the resolved route (see derive): two names for one route share
    "stream": False,  # one entry serves streamed and non-streamed calls
    "include_usage": False,  # what a stream shows, not what the model answers
    "source_dialect": "openai",  # the client dialect: one entry serves both endpoints
}
"""Top-level request fields left out of the key, each replaced by a fixed value."""

DENIED_EXTENSIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("fareway", "max_tokens_field"),  # `max_tokens` vs `max_completion_tokens`: a spelling
        ("openai", BODY_FIELD),  # the cache controls themselves
        ("anthropic", BODY_FIELD),
    }
)
"""(extension bag, field) pairs left out of the key; every other extension field is in it."""

DENIED_HEADERS: frozenset[str] = frozenset({"anthropic-version"})
"""Forwarded dialect headers left out (the wire version every Anthropic client sends); the others
(``anthropic-beta``) are in the key."""

_SEP = b"\x00"


def _extensions(ext: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for bag, fields in ext.items():
        kept = {k: v for k, v in fields.items() if (bag, k) not in DENIED_EXTENSIONS}
        if kept:
            out[bag] = kept
    return out


def canonical_view(req: ChatRequest, route: str) -> ChatRequest:
    """``req`` with what the deny-lists leave out replaced by fixed values and ``model`` by the
    resolved route.  A shallow copy: ``req`` itself is not changed."""
    headers = {k: v for k, v in req.headers.items() if k not in DENIED_HEADERS}
    changes: dict[str, Any] = {**DENIED_FIELDS, "model": route}
    return replace(req, **changes, extensions=_extensions(req.extensions), headers=headers)


def _digest(tenant: str, body: bytes) -> str:
    h = hashlib.blake2b(KEY_VERSION, digest_size=20)
    h.update(_SEP + tenant.encode() + _SEP)
    h.update(body)
    return h.hexdigest()


def _dumps(view: ChatRequest) -> bytes:
    return orjson.dumps(view, option=orjson.OPT_SORT_KEYS)


@dataclass(slots=True, eq=False)
class CacheKey:
    """The key of one request: ``storage`` names its entry in a store."""

    tenant: str
    digest: str
    view: ChatRequest = field(repr=False)
    """The canonical view the digest was made from (for a matcher that needs the request)."""

    @property
    def storage(self) -> str:
        return f"{self.tenant}:{self.digest}"

    def last_user_text(self) -> str:
        """The text of the last user turn (what a semantic matcher compares)."""
        for m in reversed(self.view.messages):
            if m.role == "user":
                return m.text()
        return ""

    def context_digest(self) -> str:
        """The digest of everything but the text of the last user turn: a semantic matcher may
        only match requests whose context digests are equal (same tenant, system, tools,
        parameters and earlier turns)."""
        messages = list(self.view.messages)
        for i in range(len(messages) - 1, -1, -1):
            m = messages[i]
            if m.role == "user":
                kept: list[Part] = [p for p in m.content if not isinstance(p, TextPart)]
                messages[i] = Message(m.role, kept, m.name, m.extensions)
                break
        return _digest(self.tenant, b"context" + _SEP + _dumps(replace(self.view, messages=messages)))


class NotCacheable(ValueError):
    """A request the cache does not take (the reason is the message)."""


def derive(req: ChatRequest, route: str, tenant: str) -> CacheKey:
    """The key of ``req`` (as resolved to ``route``) for ``tenant``.  Raises NotCacheable for a
    request whose answer one entry cannot replay (``n`` > 1) or that has no JSON form."""
    if req.n is not None and req.n > 1:
        raise NotCacheable("n > 1 (a stream replays one choice)")
    view = canonical_view(req, route)
    try:
        body = _dumps(view)
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits in an extension
        raise NotCacheable(f"no canonical JSON form ({exc})") from None
    return CacheKey(tenant, _digest(tenant, body), view)


__all__ = [
    "BODY_FIELD",
    "DENIED_EXTENSIONS",
    "DENIED_FIELDS",
    "DENIED_HEADERS",
    "KEY_VERSION",
    "CacheKey",
    "NotCacheable",
    "canonical_view",
    "derive",
]
