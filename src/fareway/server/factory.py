"""Build the whole gateway from a Config: the one place that knows every concrete class.

Adapters (outbound dialects) and wire dialects (inbound) are registered explicitly, from plain
imports: a module that is missing or fails to import stops start-up with its ``ImportError``
(which names it), and a registered object that does not fulfil its contract, or a configured
provider whose dialect has no adapter, stops it with a :class:`StartupError` naming the part.
Nothing is silently left out (no route quietly missing because an import failed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fareway.adapters.base import Adapter
from fareway.adapters.embeddings import EmbeddingAdapter
from fareway.cache.wiring import install as install_cache
from fareway.config import Config, ConfigError
from fareway.dashboard.sessions import RedisSessionStore, Sessions, SessionStore
from fareway.errors import FarewayError
from fareway.experiments.manager import ExperimentManager
from fareway.experiments.manager import build as build_experiments
from fareway.experiments.store import open_store as open_experiment_store
from fareway.keys.state_db import StateStore, open_state_db
from fareway.keys.store import KeyStore
from fareway.ledger.pricing import PriceBook
from fareway.ledger.writer import Ledger
from fareway.metrics import Metrics
from fareway.pipeline.accounting import Accounting
from fareway.pipeline.embeddings import EmbeddingService
from fareway.pipeline.gateway import Gateway
from fareway.pipeline.resolve import Resolver
from fareway.providers.catalog import Catalog
from fareway.router.embed_executor import EmbeddingExecutor
from fareway.router.executor import Executor
from fareway.router.policies import PolicyConfig, Router
from fareway.router.shared_health import SharedStats
from fareway.router.stats import Stats
from fareway.scrub import register as register_secrets
from fareway.server.app import App
from fareway.server.keys_wiring import bind as bind_key_services
from fareway.server.keys_wiring import build_key_services, services_of
from fareway.server.routes import add_routes
from fareway.server.routes_admin import add_admin_routes
from fareway.server.routes_dashboard import add_dashboard_routes
from fareway.server.routes_embeddings import add_embedding_routes
from fareway.server.routes_experiments import add_experiment_routes
from fareway.server.routes_keys import add_key_routes
from fareway.server.routes_responses import add_responses
from fareway.transport import Transport
from fareway.wire.base import WireDialect

if TYPE_CHECKING:
    from fareway.ledger.seams import LedgerReader, LedgerSink, MetricsSink, PriceSource
    from fareway.router.health import HealthRecorder, HealthView
    from fareway.transport_base import UpstreamTransport

    def _seams(
        transport: Transport, stats: Stats, prices: PriceBook, metrics: Metrics, ledger: Ledger
    ) -> None:
        """Never runs: mypy checks here that each concrete part fulfils its seam."""
        _: tuple[
            UpstreamTransport, HealthView, HealthRecorder, PriceSource, MetricsSink, LedgerSink, LedgerReader
        ]
        _ = (transport, stats, stats, prices, metrics, ledger, ledger)


class StartupError(ConfigError):
    """A part the gateway cannot run without is missing or does not fulfil its contract."""


def build_adapters() -> dict[str, Adapter]:
    """Every outbound adapter, by the upstream dialect it speaks."""
    from fareway.adapters import anthropic, gemini, openai_chat, openai_responses

    adapters: dict[str, Adapter] = {
        "openai": openai_chat.ADAPTER,
        "anthropic": anthropic.ADAPTER,
        "gemini": gemini.ADAPTER,
        "openai_responses": openai_responses.ADAPTER,
    }
    for name, adapter in adapters.items():
        if not isinstance(adapter, Adapter) or adapter.dialect != name:
            raise StartupError(
                f"the `{name}` adapter ({type(adapter).__module__}.{type(adapter).__qualname__}) does not "
                f"fulfil fareway.adapters.base.Adapter for the `{name}` dialect"
            )
    return adapters


def build_wires() -> dict[str, WireDialect]:
    """Every inbound dialect, by name: ``openai`` (/v1/chat/completions), ``anthropic`` (/v1/messages),
    ``openai_responses`` (/v1/responses)."""
    from fareway.wire import anthropic, openai_chat, openai_responses

    wires: dict[str, WireDialect] = {
        "openai": openai_chat.WIRE,
        "anthropic": anthropic.WIRE,
        "openai_responses": openai_responses.WIRE,
    }
    for name, wire in wires.items():
        if not isinstance(wire, WireDialect) or wire.name != name:
            raise StartupError(
                f"the `{name}` wire dialect ({type(wire).__module__}.{type(wire).__qualname__}) does not "
                f"fulfil fareway.wire.base.WireDialect under the name `{name}`"
            )
    if not callable(getattr(wires["anthropic"], "count_tokens_request", None)):
        raise StartupError(
            "the `anthropic` wire dialect has no count_tokens_request (for /v1/messages/count_tokens)"
        )
    return wires


def build_embedding_adapters() -> dict[str, EmbeddingAdapter]:
    """Every outbound embeddings adapter, by dialect (Anthropic has no embeddings API)."""
    from fareway.adapters import gemini_embeddings, openai_embeddings

    adapters: dict[str, EmbeddingAdapter] = {
        "openai": openai_embeddings.ADAPTER,
        "gemini": gemini_embeddings.ADAPTER,
    }
    for name, adapter in adapters.items():
        if not isinstance(adapter, EmbeddingAdapter) or adapter.dialect != name:
            raise StartupError(
                f"the `{name}` embeddings adapter ({type(adapter).__module__}.{type(adapter).__qualname__}) "
                f"does not fulfil fareway.adapters.embeddings.EmbeddingAdapter for the `{name}` dialect"
            )
    return adapters


def check_adapters(config: Config, adapters: Mapping[str, Adapter]) -> None:
    """Every configured provider's dialect has an adapter (else start-up stops, naming it)."""
    for name, p in sorted(config.providers.items()):
        if p.spec.dialect not in adapters:
            raise StartupError(
                f"provider `{name}` speaks the `{p.spec.dialect}` dialect, but no adapter is registered for it "
                f"(registered: {', '.join(sorted(adapters))})"
            )


def build_pricebook(config: Config) -> PriceBook:
    """The price book with the config's ``[prices]``; a wrong price table is a ConfigError."""
    try:
        return PriceBook(config.prices or None)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{config.source}: [prices] {exc}") from None


def check_config(config: Config) -> None:
    """What a config needs beyond its own parse: an adapter per dialect, valid price tables."""
    check_adapters(config, build_adapters())
    build_pricebook(config)


def open_keys_db(config: Config) -> StateStore:
    """The state DB of keys, teams, vault and audit: SQLite in state_dir, or ``[keys] database_url``."""
    ks = config.key_settings
    return open_state_db(
        config.state_dir / "state.db", database_url=ks.database_url, schema=ks.schema, pool_size=ks.pool_size
    )


def build_gateway(config: Config) -> Gateway:
    adapters = build_adapters()
    check_adapters(config, adapters)
    pricebook = build_pricebook(config)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    # Every stored provider key is scrubbed from whatever an upstream says (fareway.scrub).
    register_secrets([config.master_key, *(p.api_key for p in config.providers.values())])
    keys = KeyStore(config.state_dir / "state.db", master_key=config.master_key, db=open_keys_db(config))
    transport = Transport(
        connect_timeout=config.timeouts.connect, max_response_bytes=config.limits.max_response_bytes
    )
    catalog = Catalog.builtin()
    stats = _health(config, catalog)
    resolver = Resolver(config, catalog.offers())
    # provider keys: the configured ones, and the vault's (a team's own, several per provider)
    key_services = build_key_services(config, keys, pricebook)
    resolver.stored_keys = lambda: key_services.pools.provider_set
    router = Router(
        catalog,
        stats,
        pricebook.unit_prices,
        resolver.upstream,
        keyed=None,  # resolver.upstream knows which providers have a key (configured or stored)
        aliases=config.aliases,
        providers=config.providers,
        key_hint=resolver.key_hint,
        default_model=config.default_model,
    )
    resolver.router = router
    t = config.timeouts
    executor = Executor(
        transport,
        adapters,
        first_token_timeout=t.first_token,
        idle_timeout=t.idle,
        total_timeout=t.total,
        stats=stats,
        stream_whole_answers=t.stream_upstream,
    )
    ledger: Ledger | None = None
    metrics = Metrics()
    if config.ledger_enabled:
        ledger = Ledger.open(
            config.ledger_url,
            path=str(config.ledger_file),
            batch_size=config.ledger_batch_size,
            max_delay=config.ledger_max_delay,
            writer=config.ledger_writer,
            writer_cpus=config.ledger_writer_cpus,
            schema=config.ledger_schema,
            connect_timeout=config.ledger_connect_timeout,
            statement_timeout=config.ledger_statement_timeout,
            close_timeout=config.ledger_close_timeout,
            spool_path=str(config.ledger_spool),
            spool_after=config.ledger_spool_after,
            keep_calls_days=config.ledger_keep_calls_days,
        )
        metrics.bind_ledger(ledger)
    accounting = Accounting(pricebook=pricebook, ledger=ledger, metrics=metrics)
    gateway = Gateway(
        config,
        keys=keys,
        transport=transport,
        adapters=adapters,
        resolver=resolver,
        executor=executor,
        accounting=accounting,
        stats=stats,
        admissions=key_services.admissions,
    )
    bind_key_services(key_services, gateway)
    gateway.embeddings = EmbeddingService(
        router=Router(
            catalog,
            stats,
            pricebook.embedding_unit_prices,
            resolver.upstream,
            keyed=None,
            aliases=config.aliases,
            config=PolicyConfig(default_output_tokens=0),
            providers=config.providers,
            key_hint=resolver.key_hint,
            kind="embedding",
        ),
        executor=EmbeddingExecutor(transport, build_embedding_adapters(), timeout=t.first_token, stats=stats),
        wire=build_wires()["openai"],
        admit=gateway.admit,
        account=gateway._account,
    )
    gateway.on_start.append(_warm_tokenizer)
    if config.key_settings.database_url:  # the PostgreSQL pool and its LISTEN connection
        gateway.on_close.append(lambda: asyncio.to_thread(keys.close))
    if isinstance(stats, SharedStats):
        gateway.on_start.append(stats.start)
        gateway.on_close.append(stats.close)
    cache = install_cache(gateway, config.cache, price=accounting.price)
    metrics.bind_cache_store(cache.store)
    gateway.parts["experiments"] = _experiments(config, gateway)
    return gateway


def _health(config: Config, catalog: Catalog) -> Stats:
    """Live provider health: this process's (``[shared] health = "local"``) or shared through Redis
    by every gateway on it (fareway.router.shared_health), started and closed with the gateway."""
    sh = config.shared
    if sh.health != "redis":
        return Stats(catalog)
    return SharedStats(
        catalog,
        redis_url=sh.redis_url,
        prefix=sh.prefix,
        timeout=sh.timeout,
        sync_interval=sh.sync_interval,
    )


def _experiments(config: Config, gateway: Gateway) -> ExperimentManager:
    """The A/B experiments (``[experiments.NAME]`` and those made through the API), their state
    beside the ledger's (fareway.experiments.store)."""
    store = open_experiment_store(
        config.ledger_url,
        config.ledger_file,
        schema=config.ledger_schema,
        connect_timeout=config.ledger_connect_timeout,
        statement_timeout=config.ledger_statement_timeout,
    )
    try:
        return build_experiments(gateway, store)
    except FarewayError as exc:
        raise StartupError(f"[experiments]: {exc.message}") from exc


async def _warm_tokenizer() -> None:
    """Load the offline tokenizer (about 0.7 s) at start-up, in a thread, not on the first call."""
    import asyncio

    from fareway.tokens import estimate_text_tokens

    await asyncio.to_thread(estimate_text_tokens, "warm up")


def build_sessions(config: Config, gateway: Gateway) -> Sessions:
    """Dashboard sessions: in Redis when ``[dashboard] sessions`` finds a Redis url, else in memory."""
    d = config.dashboard
    url = config.sessions_url()
    store: Sessions
    if url is None:
        store = SessionStore(ttl=d.session_ttl)
    else:
        store = RedisSessionStore(url, prefix=d.redis_prefix, ttl=d.session_ttl)
    gateway.on_close.append(store.close)
    return store


def build_app(config: Config) -> App:
    wires = build_wires()
    gateway = build_gateway(config)
    app = App(gateway, error_wire=wires["openai"])
    add_routes(app, gateway, wires["openai"], wires["anthropic"])
    add_responses(app, gateway, wires["openai_responses"], config)
    add_admin_routes(app, gateway)
    services = services_of(gateway)
    if services is not None:
        add_key_routes(
            app, services.admin(config), limits=services.limits, reload=services.refresher.refresh_now
        )
    sessions = add_dashboard_routes(app, gateway, build_sessions(config, gateway))
    add_experiment_routes(app, gateway, gateway.parts["experiments"], sessions)
    assert gateway.embeddings is not None
    add_embedding_routes(app, gateway.embeddings, wires["openai"])
    return app
