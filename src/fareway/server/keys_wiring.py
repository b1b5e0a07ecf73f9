"""Wiring of keys, teams, provider-key pools, budgets and rate limits into a gateway (the part of
server.factory that knows these concrete classes).

* the vault (provider keys at rest) with the ``[keys]`` master key, and the provider-key pools
  (the configured keys plus the vault's), kept in step with the state DB;
* the reservation store of ``[limits] store`` (in-process, or Redis);
* the two admissions of the admit stage, in order: access (allow-lists, provider keys), then
  limits (rate limits and budgets, one atomic reservation);
* the ledger as the source of spend already made (seeding a budget the store does not hold yet).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from fareway.config import Config, ConfigError
from fareway.keys.admin import Admin
from fareway.keys.pool import KeyPools, PoolRefresher
from fareway.keys.settings import KeySettingsError
from fareway.keys.store import KeyStore
from fareway.keys.vault import Vault, VaultLocked, parse_master_keys
from fareway.ledger.base import StoreUnavailable as LedgerUnavailable
from fareway.ledger.seams import LedgerReader, PriceSource
from fareway.limits.access import AccessAdmission
from fareway.limits.redis_store import RedisStore
from fareway.limits.reserve import LimitsAdmission, SpendFn
from fareway.limits.store import MemoryStore, ReservationStore, StoreUnavailable
from fareway.pipeline.accounting import Accounting
from fareway.pipeline.gateway import Gateway
from fareway.pipeline.stages import Admission


@dataclass(slots=True)
class KeyServices:
    keys: KeyStore
    vault: Vault
    pools: KeyPools
    refresher: PoolRefresher
    store: ReservationStore
    access: AccessAdmission
    limits: LimitsAdmission

    @property
    def admissions(self) -> list[Admission]:
        return [self.access, self.limits]

    def admin(self, config: Config) -> Admin:
        return Admin(self.keys, vault=self.vault, providers=config.providers)


def build_key_services(config: Config, keys: KeyStore, prices: PriceSource | None) -> KeyServices:
    try:
        master = parse_master_keys(config.key_settings.master_key_text())
        vault = Vault(keys.db, master)
    except (KeySettingsError, VaultLocked) as exc:
        raise ConfigError(str(exc)) from exc
    ks = config.key_settings
    pools = KeyPools(rate_limit_rest=ks.rate_limit_rest, quota_rest=ks.quota_rest)
    refresher = PoolRefresher(pools, vault, {n: p.api_key for n, p in config.providers.items() if p.api_key})
    refresher.refresh_now()
    ls = config.limit_settings
    store: ReservationStore
    if ls.store == "redis":
        store = RedisStore(ls.redis_url, prefix=ls.redis_prefix, timeout=ls.redis_timeout)
    else:
        store = MemoryStore()
    hold = ls.hold_seconds or config.timeouts.total + 60.0
    limits = LimitsAdmission(store, ls, prices, hold_s=hold)
    return KeyServices(keys, vault, pools, refresher, store, AccessAdmission(pools, refresher), limits)


def bind(services: KeyServices, gateway: Gateway) -> None:
    """Give the limits admission the ledger as its source of past spend, and close the store
    with the gateway."""
    services.limits.spend = _spend_source(gateway.accounting, services.keys)
    gateway.on_close.append(services.store.close)
    gateway.parts["keys"] = services


def _spend_source(accounting: Accounting, keys: KeyStore) -> SpendFn:
    async def spend(scope: str, owner: str, since: datetime | None) -> Decimal:
        ledger = accounting.ledger
        if not isinstance(ledger, LedgerReader):
            return Decimal(0)
        try:
            if scope == "key":
                rows = await ledger.usage(since, None, ["key"], owner)
                return sum((r.cost for r in rows), Decimal(0))
            ids = set(await asyncio.to_thread(keys.team_key_ids, owner))
            if not ids:
                return Decimal(0)
            rows = await ledger.usage(since, None, ["key"], None)
            return sum((r.cost for r in rows if r.key_id in ids), Decimal(0))
        except LedgerUnavailable as exc:
            raise StoreUnavailable(f"ledger: {exc}") from exc

    return spend


def services_of(gateway: Gateway) -> KeyServices | None:
    """The key services a gateway was built with (``gateway.parts["keys"]``), for build_app."""
    services = gateway.parts.get("keys")
    return services if isinstance(services, KeyServices) else None
