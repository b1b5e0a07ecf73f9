"""``fareway serve --workers N``: N gateway processes sharing one listening socket.

The supervisor (the process ``fareway serve`` started) binds the socket once (so a port already
in use is an error, never two gateways silently sharing it, as ``SO_REUSEPORT`` would allow),
then starts N workers with multiprocessing's *spawn* (nothing of the supervisor's threads or
state is inherited). Each worker builds its own gateway from the config and runs the usual
:class:`~fareway.server.serving.FarewayServer` on the inherited socket; the kernel hands each new
connection to whichever worker accepts it first.

Signals: SIGTERM or SIGINT to the supervisor sends SIGTERM to every worker, which drains as a
single gateway does (``[server] drain_seconds``, then the ledger is flushed); the supervisor waits
for them (at most the drain bound plus the ledger's ``close_timeout`` plus a margin, then
SIGKILL) and exits 0 when they all did. A worker that dies on its own is started again, unless it
died within :data:`EARLY_EXIT` seconds of its start (a bad config, a port problem): then the
supervisor stops the others and exits with that worker's code.

What one process holds in memory is per worker: see :func:`per_worker_notes`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType

log = logging.getLogger("fareway.server")

EARLY_EXIT = 10.0
"""A worker that exits within this many seconds of its start is a start-up failure."""
STOP_MARGIN = 15.0
"""Seconds past the drain and ledger bounds the supervisor waits before it SIGKILLs a worker."""


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's cpuset), not the
    machine's count: ``os.cpu_count()`` says 8 where taskset or a cgroup allows 2."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - a platform without affinity
        return max(1, os.cpu_count() or 1)


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The listening socket every worker accepts on (IPv6 when ``host`` has a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker needs to build its gateway (picklable: it crosses to a spawned process)."""

    config_path: str | None
    host: str | None
    port: int | None
    sim_url: str | None
    log_level: str
    access_log: bool
    index: int = 0


WorkerMain = Callable[[WorkerSpec, socket.socket], None]


class Supervisor:
    """Starts, watches and stops the workers (see the module docstring)."""

    def __init__(
        self,
        target: WorkerMain,
        spec: WorkerSpec,
        sock: socket.socket,
        workers: int,
        *,
        stop_timeout: float,
    ) -> None:
        self.target = target
        self.spec = spec
        self.sock = sock
        self.count = workers
        self.stop_timeout = stop_timeout
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: list[BaseProcess | None] = [None] * workers
        self.started: list[float] = [0.0] * workers
        self.stopping = False
        self.exit_code = 0

    def _start(self, index: int) -> None:
        spec = dataclasses.replace(self.spec, index=index)
        proc = self.ctx.Process(
            target=self.target, args=(spec, self.sock), name=f"fareway-worker-{index}", daemon=False
        )
        proc.start()
        self.procs[index] = proc
        self.started[index] = time.monotonic()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.warning("supervisor: stopping %d worker(s) (signal %d)", self.count, signum)
        self.stopping = True

    def run(self) -> int:
        """Run until a signal (or a start-up failure); the exit code."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self.count):
                self._start(i)
            while not self.stopping:
                self._watch()
                time.sleep(0.2)
            self._stop_all()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            self.sock.close()
        return self.exit_code

    def _watch(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is None or proc.is_alive():
                continue
            code = proc.exitcode if proc.exitcode is not None else 1
            lived = time.monotonic() - self.started[i]
            if lived < EARLY_EXIT:
                log.error("worker %d exited with %s %.1fs after its start: stopping", i, code, lived)
                self.exit_code = code or 1
                self.stopping = True
                return
            log.error("worker %d (pid %s) exited with %s; starting it again", i, proc.pid, code)
            self._start(i)

    def _stop_all(self) -> None:
        live = [p for p in self.procs if p is not None and p.is_alive()]
        for p in live:
            if p.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                    os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for p in live:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in live:
            if p.is_alive():
                log.error("worker pid %s did not stop in %.0fs: killing it", p.pid, self.stop_timeout)
                p.kill()
                p.join(5)
                self.exit_code = self.exit_code or 1
            elif p.exitcode not in (0, None) and not self.exit_code:
                self.exit_code = p.exitcode
            # exitcode -15 would mean the worker died of the SIGTERM instead of draining


def per_worker_notes(
    *, limits_store: str, cache_url: str | None, sessions_shared: bool
) -> tuple[list[str], list[str]]:
    """(errors, warnings) for running several workers (or instances) with this configuration.

    An error is a contract a per-process store would break: rate limits and budgets kept in
    memory would each be enforced per worker (N workers: N times the limit). A warning is state
    that is merely less effective per process (the memory cache: fewer hits)."""
    errors: list[str] = []
    notes: list[str] = []
    if limits_store != "redis":
        errors.append(
            '[limits] store is "memory": each worker would count rate limits and budgets on its own '
            '(N workers admit N times a limit). Set [limits] store = "redis" to run several workers'
        )
    if not cache_url:
        notes.append("the response cache is in memory: each worker has its own (set [cache] url to share it)")
    if not sessions_shared:
        notes.append(
            "dashboard sessions are in memory: a login holds only on the worker that took it "
            "(configure a Redis url, see [dashboard] sessions)"
        )
    return errors, notes
