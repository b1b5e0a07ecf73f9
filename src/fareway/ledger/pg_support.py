"""What the PostgreSQL stores share about talking to PostgreSQL, apart from any one store: the
ledger queries' SQL dialect, which errors are worth a retry, the backoff between retries, and a
database URL fit for a log line."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urlsplit


class PostgresDialect:
    name = "postgres"

    def ph(self, n: int) -> str:
        return f"${n}"

    def bucket(self, column: str, unit: str) -> str:
        fmt = "YYYY-MM-DD" if unit == "day" else 'YYYY-MM-DD"T"HH24'
        return f"to_char({column} AT TIME ZONE 'UTC', '{fmt}')"

    def money_sum(self, column: str) -> str:
        return f"SUM({column})"

    def percentile(self, expr: str, q: float) -> str:
        return f"percentile_cont({q!r}) WITHIN GROUP (ORDER BY {expr})"

    def time_param(self, value: Any) -> Any:
        return value

    def in_list(self, column: str, first_ph: int, count: int) -> tuple[str, bool]:
        return f"{column} = ANY(${first_ph})", True


def is_transient(exc: BaseException) -> bool:
    """Worth retrying (the database or the network, not the record): connection trouble,
    timeouts (ours or the server's statement_timeout), lock and serialization conflicts,
    a server shutting down or read-only after a failover."""
    import asyncpg
    from asyncpg import exceptions as e

    if isinstance(exc, e.DataError):  # a value asyncpg cannot encode: the record, not the database
        return False
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | e.InsufficientResourcesError
        | e.OperatorInterventionError
        | e.TransactionRollbackError
        | e.LockNotAvailableError
        | e.ReadOnlySQLTransactionError,
    )


def backoff_delay(failures: int, first: float, cap: float) -> float:
    """Exponential backoff with jitter: about ``first * 2**(failures-1)``, at most ``cap``, drawn
    from the upper half of that so that many gateways do not retry in step."""
    delay = min(cap, first * 2 ** max(0, failures - 1))
    return delay * random.uniform(0.5, 1.0)


def safe_url(url: str) -> str:
    """``url`` without its password, for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"
