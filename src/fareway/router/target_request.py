"""Per attempt: which adapter speaks to this upstream, and the request as this upstream gets it.

* **Native dialect.**  When the client's dialect is one the provider also speaks
  (``Quirks.native_dialects``: OpenAI speaks the Responses API) and an adapter for it is
  registered, that adapter is used: same dialect on both sides, nothing translated.  Otherwise
  the adapter of the provider's own dialect.
* **Native-only features.**  ``extensions["fareway"]["native_only"]`` names request features
  only the client's own dialect can carry (the Responses API's built-in tools): sent anywhere
  else they would be dropped, so the attempt is refused (:class:`NativeOnly`, a 400 naming the
  first of them) before anything is sent.  A fallback chain goes on to its next target (the
  provider is not at fault: no circuit or cooldown is touched); when no target can run it, the
  call's error is that 400.
* **Reasoning history.**  A ThinkingPart read from a Responses reasoning item carries the
  provider that made it (``extensions["fareway"]["origin"]``): it goes back only to that provider
  (its signature or encrypted content is that provider's proof); every other provider gets the
  visible history without it.  Parts without an origin (other clients' history) are untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from fareway.adapters.base import Adapter
from fareway.errors import UpstreamClientError
from fareway.types import ChatRequest, Message, ThinkingPart, Upstream

__all__ = ["NativeOnly", "for_target"]


class NativeOnly(UpstreamClientError):
    """This target cannot carry a feature of the request (a built-in tool): try another."""

    code = "unsupported_tool"
    retryable = True


def _native(up: Upstream, dialect: str) -> bool:
    natives = getattr(up.quirks, "native_dialects", None)
    return natives is not None and dialect in natives


def _origin(part: ThinkingPart) -> str | None:
    fw = part.extensions.get("fareway")
    if not fw:
        return None
    origin = fw.get("origin")
    return origin if isinstance(origin, str) else None


def _visible_history(req: ChatRequest, provider: str) -> ChatRequest:
    changed = False
    messages: list[Message] = []
    for m in req.messages:
        keep = [
            p
            for p in m.content
            if not (isinstance(p, ThinkingPart) and (o := _origin(p)) is not None and o != provider)
        ]
        if len(keep) != len(m.content):
            changed = True
            if not keep:
                continue  # a turn that was reasoning only: nothing visible to send
            m = dataclasses.replace(m, content=keep)
        messages.append(m)
    return dataclasses.replace(req, messages=messages) if changed else req


def for_target(
    adapters: Mapping[str, Adapter], up: Upstream, req: ChatRequest
) -> tuple[Adapter | None, ChatRequest]:
    """(the adapter for this attempt, or None when none is registered; the request for it)."""
    fw = req.extensions.get("fareway")
    source = req.source_dialect
    adapter: Adapter | None = None
    if source != up.dialect and _native(up, source):
        adapter = adapters.get(source)
    native = adapter is not None or source == up.dialect
    if adapter is None:
        adapter = adapters.get(up.dialect)
    if fw:
        need = fw.get("native_only")
        if need and not native:
            raise NativeOnly(
                f"{need[0]} runs only on a provider that speaks the OpenAI Responses API natively (openai); "
                f"`{up.provider}` cannot run it. Remove the tool or pin an OpenAI model.",
                param="tools",
                provider=up.provider,
            )
        if fw.get("responses") is not None:
            req = _visible_history(req, up.provider)
    return adapter, req
