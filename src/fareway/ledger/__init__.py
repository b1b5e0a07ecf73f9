"""The ledger: prices, call/attempt records, storage (SQLite default, Postgres) and named queries.

Depends only on :mod:`fareway.types` and the standard library (plus genai-prices and asyncpg).
"""

from fareway.ledger.base import LedgerStats
from fareway.ledger.pricing import Cost, PriceBook, UnitPrices, price_data_version
from fareway.ledger.queries import LoggedCall, ProviderLatency, SpendPoint, UsageRow
from fareway.ledger.records import AttemptRecord, CallRecord, rollup
from fareway.ledger.writer import Ledger

__all__ = [
    "AttemptRecord",
    "CallRecord",
    "Cost",
    "Ledger",
    "LedgerStats",
    "LoggedCall",
    "PriceBook",
    "ProviderLatency",
    "SpendPoint",
    "UnitPrices",
    "UsageRow",
    "price_data_version",
    "rollup",
]
