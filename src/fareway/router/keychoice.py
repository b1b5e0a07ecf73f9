"""The per-call provider-key seam: which key an attempt sends, and the next one after a 429.

The executor reads ``CallLog.keys`` (None: every target's configured key, the default).  The
admit stage sets it for calls whose caller has keys of its own (a team's bring-your-own-key) or
when a provider has several keys (fareway.keys.pool implements it):

* ``pick(up)``: ``up`` with the key this call sends to its provider (``up`` itself when the key
  is the same), or None when this caller has no key for that provider (the attempt fails as an
  auth error without sending anything; the call falls back);
* ``limited(up, exc)``: ``up``'s key got a 429 or a quota error (``exc``); the same upstream
  with the next key to try at once, or None when there is no other.  A key that is rotated away
  from is the key's problem, not the provider's: that attempt does not cool the offer down.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fareway.errors import UpstreamError
from fareway.types import Upstream


@runtime_checkable
class KeyChoice(Protocol):
    def pick(self, up: Upstream) -> Upstream | None: ...

    def limited(self, up: Upstream, exc: UpstreamError) -> Upstream | None: ...


__all__ = ["KeyChoice"]
