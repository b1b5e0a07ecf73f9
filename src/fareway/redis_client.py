"""One way to open a Redis client for state the gateway can do without for a while (the cache,
shared health, experiment counters): every command bounded by ``timeout`` (connect included) and
never retried, so an unreachable Redis costs a call at most ``timeout`` and the caller's own
fail-open or fail-closed rule decides what happens (docs/shared-state.md)."""

from __future__ import annotations

from typing import Any


def fail_fast_client(url: str, timeout: float) -> Any:
    """A ``redis.asyncio.Redis`` for ``url``: no retry, no background health check, commands and
    connects bounded by ``timeout`` seconds.  (``Any``: redis-py's asyncio client is untyped.)"""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )
