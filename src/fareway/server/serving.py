"""Run the gateway on uvicorn with the ``[server]`` limits and a bounded graceful drain.

uvicorn with uvloop and httptools stays the hot path (chosen by measurement, see ARCHITECTURE.md);
this module adds what it lacks:

* the limits of :mod:`fareway.server.protocol` (header and body deadlines, header count and size,
  connection cap), checked by a sweep on uvicorn's 0.1 s tick rather than a timer per request;
* a drain bounded by ``[server] drain_seconds``: on SIGTERM (or SIGINT) the listener closes, idle
  connections close, in-flight calls may finish; at the bound every open upstream response is
  ended (a stream gets an error event in its client's dialect and a ledger row, a non-streamed
  call a 502), two seconds later whatever still runs is cancelled; then the ledger is flushed and
  the process exits 0 (uvicorn re-raises the signal, which made the exit code 143).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import resource
import signal
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from fareway.config import ServerLimits
from fareway.server.protocol import protocol_class, sweep

log = logging.getLogger("fareway.server")

DRAIN_REASON = "the gateway is shutting down and its drain time ran out"
END_GRACE = 2.0
"""Seconds between ending the upstream responses and cancelling what still runs."""


def install_tracemalloc_hook() -> bool:
    """With ``FAREWAY_TRACEMALLOC=<dir>`` in the environment, SIGUSR2 drives tracemalloc: the
    first signal starts tracing (10 frames deep; start-up is not traced, it would take minutes),
    each later one writes a snapshot to ``<dir>/snapshot-N.tracemalloc`` (then touches
    ``snapshot-N.done``).  A debugging aid for benchmarks/soak.py: tracing slows the gateway."""
    out = os.environ.get("FAREWAY_TRACEMALLOC")
    if not out or not hasattr(signal, "SIGUSR2"):
        return False
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    numbers = itertools.count()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(10)
            (directory / "tracing").touch()
            return
        n = next(numbers)
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        snap.dump(str(directory / f"snapshot-{n}.tracemalloc"))
        (directory / f"snapshot-{n}.done").touch()

    signal.signal(signal.SIGUSR2, on_signal)
    log.warning(
        "FAREWAY_TRACEMALLOC is set: SIGUSR2 starts tracemalloc, then writes snapshots to %s", directory
    )
    return True


def raise_open_file_limit(want: int = 65536) -> int:
    """Raise the soft open-file limit towards the hard one (at most ``want``); the soft limit."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(hard, want)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    except (ValueError, OSError):  # pragma: no cover - a platform without the limit
        return 1024
    return 1 << 30 if soft == resource.RLIM_INFINITY else int(soft)


def connection_cap(limits: ServerLimits, open_files: int) -> int:
    """``max_connections``, or when 0, half the open-file limit (the rest is for upstream
    connections, the ledger and the state database), at most 10,000."""
    if limits.max_connections:
        return limits.max_connections
    return max(16, min(10_000, (open_files - 64) // 2))


class FarewayServer(uvicorn.Server):
    """uvicorn's server with the connection sweep and the bounded drain."""

    def __init__(
        self, config: uvicorn.Config, limits: ServerLimits, on_drain_timeout: Callable[[], Any] | None = None
    ) -> None:
        super().__init__(config)
        self.limits = limits
        self.on_drain_timeout = on_drain_timeout
        self.expired = 0

    async def on_tick(self, counter: int) -> bool:
        self.expired += sweep(self.server_state.connections, asyncio.get_running_loop().time())
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # A drained shutdown is a clean exit: do not re-raise the signal afterwards (exit 143).
        if sig == signal.SIGTERM and self._captured_signals and self._captured_signals[-1] == sig:
            self._captured_signals.pop()

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        loop = asyncio.get_running_loop()
        state = self.server_state
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(state.connections):
            connection.shutdown()  # idle ones close now; busy ones after their response
        if state.tasks:
            log.warning(
                "shutting down: %d call(s) in flight, waiting up to %gs",
                len(state.tasks),
                self.limits.drain_seconds,
            )
        await self._wait_tasks(loop.time() + self.limits.drain_seconds)
        if state.tasks and not self.force_exit:
            log.warning("drain time over: ending %d call(s) still in flight", len(state.tasks))
            if self.on_drain_timeout is not None:
                self.on_drain_timeout()
            await self._wait_tasks(loop.time() + END_GRACE)
        if state.tasks:
            log.warning("cancelling %d call(s)", len(state.tasks))
            tasks = list(state.tasks)
            for t in tasks:
                t.cancel(msg="the gateway is shutting down")
            await asyncio.wait(tasks, timeout=1.0)
        for connection in list(state.connections):
            connection.transport.close()
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _wait_tasks(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while self.server_state.tasks and not self.force_exit:
            left = deadline - loop.time()
            if left <= 0:
                return
            # a short timeout: a second Ctrl+C (force_exit) is noticed soon
            await asyncio.wait(list(self.server_state.tasks), timeout=min(left, 0.25))


def build_server(
    app: Any,
    *,
    host: str,
    port: int,
    limits: ServerLimits,
    log_level: str = "warning",
    access_log: bool = False,
    on_drain_timeout: Callable[[], Any] | None = None,
    raise_fd_limit: bool = True,
) -> FarewayServer:
    open_files = raise_open_file_limit() if raise_fd_limit else resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http=protocol_class(limits, connection_cap(limits, open_files)),
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        proxy_headers=False,  # Fareway does not use the client address; skip the per-request middleware
    )
    return FarewayServer(config, limits, on_drain_timeout)
