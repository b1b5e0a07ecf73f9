"""The ledger layer's seams: what the pipeline and the server need from storage, prices and
metrics, as structural interfaces (``typing.Protocol``), so that another implementation (a
Redis-backed one, a test double) drops in without inheriting from anything.

=================  ==========================================  =======================================
protocol           who calls it                                implemented by
=================  ==========================================  =======================================
``LedgerSink``     accounting: one ``record`` per call         ``ledger.writer.Ledger``
``LedgerReader``   the usage, logs and dashboard routes        ``ledger.writer.Ledger``
``PriceSource``    accounting (``price``), router (unit prices) ``ledger.pricing.PriceBook``
``MetricsSink``    accounting: one ``observe`` per call        ``metrics.Metrics``
=================  ==========================================  =======================================

All are ``runtime_checkable`` (``isinstance`` checks the method names, not the signatures; mypy
checks the signatures where a concrete object is assigned to one of these types).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from fareway.ledger.records import AttemptRecord, CallRecord
from fareway.types import Usage

if TYPE_CHECKING:
    from fareway.ledger.pricing import Cost, UnitPrices
    from fareway.ledger.queries import GroupBy, LoggedCall, ProviderLatency, SpendPoint, UsageRow


@runtime_checkable
class LedgerSink(Protocol):
    """Where finished calls go.  ``record`` is on the request path: it never blocks, never awaits."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Everything recorded before is stored (or counted as dropped and logged)."""
        ...

    def record(self, call: CallRecord, attempts: Sequence[AttemptRecord] = ()) -> None: ...

    async def readiness(self) -> str:
        """``"ok"`` when the store answers a read, else ``"error: <ExceptionType>"``; never raises."""
        ...


@runtime_checkable
class LedgerReader(Protocol):
    """The named queries the usage API, ``/v1/logs`` and the dashboard read."""

    async def usage(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: Sequence[GroupBy] = (),
        key_id: str | None = None,
    ) -> list[UsageRow]: ...

    async def recent_calls(
        self, n: int = 20, model: str | None = None, key_id: str | None = None
    ) -> list[LoggedCall]: ...

    async def latency_by_provider(self, since: datetime | None = None) -> list[ProviderLatency]: ...

    async def spend_over_time(
        self,
        since: datetime | None = None,
        bucket: Literal["hour", "day"] = "hour",
        by: Literal["provider", "model", "key"] | None = "provider",
        until: datetime | None = None,
    ) -> list[SpendPoint]: ...

    async def export_csv(
        self, since: datetime | None = None, until: datetime | None = None, key_id: str | None = None
    ) -> str: ...


@runtime_checkable
class PriceSource(Protocol):
    """List prices.  An unknown price is ``None``, never 0."""

    def unit_prices(self, provider: str, model: str, when: datetime | None = None) -> UnitPrices | None:
        """USD per million tokens for ``provider``/``model`` (the router's expected cost)."""
        ...

    def price(self, provider: str, model: str, usage: Usage, when: datetime | None = None) -> Cost | None:
        """The cost of ``usage`` on ``provider``/``model`` (accounting, per attempt)."""
        ...


@runtime_checkable
class MetricsSink(Protocol):
    """Counts finished calls.  ``observe`` is on the request path: plain in-memory adds only."""

    def observe(self, call: CallRecord, attempts: list[AttemptRecord]) -> None: ...


__all__ = ["LedgerReader", "LedgerSink", "MetricsSink", "PriceSource"]
