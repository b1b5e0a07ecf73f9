"""The upstream transport seam (as ``httpx/_transports/base.py``): the executor sends an
:class:`~fareway.types.HttpRequest` through an :class:`UpstreamTransport` and reads an
:class:`OpenResponse`.  Nothing above this line knows about aiohttp.

Implementations: :class:`fareway.transport.Transport` (aiohttp, one pooled session) and
:class:`fareway.transport_mock.MockTransport` (in memory, for tests: a handler function from
request to response, streaming included).

Contract, whatever the implementation:

* ``send`` returns once the status and headers are known; a connection that cannot be made is an
  ``UpstreamConnectionError`` (or ``UpstreamTimeout(phase="connect")``), never a library error;
* ``next_chunk`` returns ``b""`` at the end of the body and raises
  ``UpstreamTimeout(phase="idle")`` when nothing arrives for ``idle`` seconds;
* every response is finished by exactly one of ``release()`` (body read, the connection may be
  reused) or ``close()`` (abort: the provider sees the disconnect and stops generating).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from fareway.types import HttpRequest


@runtime_checkable
class OpenResponse(Protocol):
    """An upstream response whose headers arrived and whose body is still to read."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes:
        """The whole body (non-streamed calls)."""
        ...

    async def next_chunk(self) -> bytes:
        """The next bytes of the body, ``b""`` at the end."""
        ...

    def at_eof(self) -> bool:
        """Whether the body has been read to its end already (the next read gives ``b""``
        without waiting); False when that is not known."""
        ...

    def release(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class UpstreamTransport(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, req: HttpRequest, provider: str, *, total: float, idle: float) -> OpenResponse:
        """Send ``req`` to ``provider``; ``total`` bounds a non-streamed call, ``idle`` the gap
        between two chunks of a body."""
        ...


__all__ = ["OpenResponse", "UpstreamTransport"]
