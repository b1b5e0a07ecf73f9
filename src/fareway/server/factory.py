"""Build the whole gateway from a Config: the one place that knows every concrete class."""

from __future__ import annotations

from fareway.adapters.base import Adapter
from fareway.config import Config
from fareway.keys.store import KeyStore
from fareway.ledger.pricing import PriceBook
from fareway.ledger.writer import Ledger
from fareway.metrics import Metrics
from fareway.pipeline.accounting import Accounting
from fareway.pipeline.gateway import Gateway
from fareway.pipeline.resolve import Resolver
from fareway.providers.catalog import Catalog
from fareway.router.executor import Executor
from fareway.router.policies import Router
from fareway.router.stats import Stats
from fareway.scrub import register as register_secrets
from fareway.server.app import App
from fareway.server.routes import add_routes
from fareway.server.routes_admin import add_admin_routes
from fareway.transport import Transport


def build_adapters() -> dict[str, Adapter]:
    from fareway.adapters import openai_chat

    adapters: dict[str, Adapter] = {"openai": openai_chat.ADAPTER}
    try:
        from fareway.adapters import anthropic

        adapters["anthropic"] = anthropic.ADAPTER
    except ImportError:
        pass
    try:
        from fareway.adapters import gemini

        adapters["gemini"] = gemini.ADAPTER
    except ImportError:
        pass
    return adapters


def build_gateway(config: Config) -> Gateway:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    # Every stored provider key is scrubbed from whatever an upstream says (fareway.scrub).
    register_secrets([config.master_key, *(p.api_key for p in config.providers.values())])
    keys = KeyStore(config.state_dir / "state.db", master_key=config.master_key)
    transport = Transport(
        connect_timeout=config.timeouts.connect, max_response_bytes=config.limits.max_response_bytes
    )
    adapters = build_adapters()
    catalog = Catalog.builtin()
    stats = Stats(catalog)
    pricebook = PriceBook(config.prices or None)
    resolver = Resolver(config, catalog.offers())
    router = Router(
        catalog,
        stats,
        pricebook.unit_prices,
        resolver.upstream,
        keyed=config.keyed_providers(),
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
    ledger = None
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
    )
    gateway.on_start.append(_warm_tokenizer)
    return gateway


async def _warm_tokenizer() -> None:
    """Load the offline tokenizer (about 0.7 s) at start-up, in a thread, not on the first call."""
    import asyncio

    from fareway.tokens import estimate_text_tokens

    await asyncio.to_thread(estimate_text_tokens, "warm up")


def build_app(config: Config) -> App:
    from fareway.wire import openai_chat

    gateway = build_gateway(config)
    try:
        from fareway.wire import anthropic as anthropic_wire

        aw = anthropic_wire.WIRE
    except ImportError:
        aw = None
    app = App(gateway, error_wire=openai_chat.WIRE)
    add_routes(app, gateway, openai_chat.WIRE, aw)
    add_admin_routes(app, gateway)
    return app
