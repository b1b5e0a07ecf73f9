"""Accounting: the cost of each call and its ledger records, computed off the response bytes'
critical path (a dict lookup for the price, an enqueue for the ledger)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fareway.errors import FarewayError
from fareway.router.executor import AttemptLog, CallLog
from fareway.types import ChatRequest, Usage

if TYPE_CHECKING:
    from fareway.pipeline.gateway import CallInfo

log = logging.getLogger("fareway.accounting")


class Accounting:
    def __init__(self, pricebook: Any = None, ledger: Any = None) -> None:
        self.pricebook = pricebook
        self.ledger = ledger

    async def start(self) -> None:
        if self.ledger is not None:
            await self.ledger.start()

    async def close(self) -> None:
        if self.ledger is not None:
            await self.ledger.close()

    async def readiness(self) -> dict[str, str]:
        if self.ledger is None:
            return {}
        try:
            await self.ledger.ping()
            return {"ledger": "ok"}
        except Exception as exc:  # a probe reports, it never raises
            return {"ledger": f"error: {type(exc).__name__}"}

    def cost(self, provider: str, model: str, usage: Usage | None) -> str | None:
        if self.pricebook is None or usage is None:
            return None
        c = self.pricebook.price(provider, model, usage)
        return None if c is None else format(c.total, "f")

    def call_done(
        self,
        info: CallInfo,
        call: CallLog,
        req: ChatRequest,
        winner: AttemptLog,
        usage: Usage | None,
        *,
        status: int,
        error: FarewayError | None = None,
    ) -> str | None:
        up = winner.target.upstream
        return self.cost(up.provider, up.model, usage)

    def call_failed(self, info: CallInfo, call: CallLog, req: ChatRequest, exc: FarewayError) -> None:
        return None
