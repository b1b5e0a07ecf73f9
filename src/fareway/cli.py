"""The ``fareway`` command line: serve, sim, keys, providers, models (and usage, logs, route,
experiments)."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from typing import Any

import click

from fareway import __version__
from fareway.cli_config import FarewayGroup, UserError, load, state_line
from fareway.config import Config, unroutable_aliases
from fareway.errors import FarewayError
from fareway.server.workers import WorkerSpec

DEMO_KEY = "demo"


def _load(config_path: str | None) -> Config:
    return load(config_path)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@click.group(cls=FarewayGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fareway")
def main() -> None:
    """Fareway: a self-hosted, zero-markup LLM gateway.

    Point the OpenAI or Anthropic SDK at Fareway (base URL + a Fareway key); bring your own
    provider keys; Fareway routes, falls back, races and accounts the real cost of every call.

    State (keys, ledger) lives in one place for the server and every command: [server] state_dir
    of the config, else $FAREWAY_HOME, else the per-user data directory; `fareway config check`
    and the commands that read it say which.
    """


# --------------------------------------------------------------------------- serve


def _serve_config(config_path: str | None, host: str | None, port: int | None, sim_url: str | None) -> Config:
    """The config ``fareway serve`` runs with (the same in the supervisor and in every worker)."""
    cfg = _load(config_path)
    if host:
        cfg.host = host
    if port:
        cfg.port = port
    if sim_url is not None:
        cfg = cfg.with_demo(sim_url)
        if not cfg.master_key:
            cfg = dataclasses.replace(cfg, master_key=DEMO_KEY)
    return cfg


WORKERS_HELP = (
    "Gateway processes sharing the port (default: [server] workers, else the usable cores when "
    '[limits] store = "redis", else 1). Each worker has its own memory: with several, rate limits '
    'and budgets need [limits] store = "redis" (else start-up refuses: each worker would admit '
    "the whole limit), the response cache is shared only with [cache] url and dashboard sessions "
    "only with a Redis url; keys and the ledger (SQLite in state_dir, or PostgreSQL) are shared "
    "(docs/deployment.md)."
)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8080).")
@click.option(
    "--demo", is_flag=True, help="Serve simulated stand-ins for the nine providers (no keys needed)."
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help=WORKERS_HELP)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def serve(
    config_path: str | None,
    host: str | None,
    port: int | None,
    demo: bool,
    workers: int | None,
    log_level: str,
    access_log: bool,
) -> None:
    """Run the gateway (OpenAI-compatible /v1/chat/completions, Anthropic-compatible /v1/messages).

    It needs at least one provider key (see the README); with --demo, every provider is the
    built-in simulator instead and every response is simulated (marked x-fareway-simulated: true).
    """
    cfg = _serve_config(config_path, host, port, None)
    sim_port: int | None = None
    if not demo and not cfg.keyed_providers():
        # never a silent demo: a deployment missing its keys must not serve simulated answers
        click.echo(
            "error: no provider key is configured, so there is nothing to route to.\n"
            "  Add one: export OPENAI_API_KEY=... (or ANTHROPIC_API_KEY, GROQ_API_KEY, ...; see the README),\n"
            "  or set api_key in a [providers.NAME] table of your config file;\n"
            "  or try Fareway with simulated providers: fareway serve --demo",
            err=True,
        )
        raise SystemExit(2)
    sim_url: str | None = None
    if demo:
        sim_port = _free_port("127.0.0.1")
        sim_url = f"http://127.0.0.1:{sim_port}"
        cfg = _serve_config(config_path, host, port, sim_url)
    dead = [] if demo else unroutable_aliases(cfg)
    if dead:
        raise UserError(
            f"{cfg.source}: alias(es) {', '.join(dead)} have no target on a provider with an API key: "
            "add the key or change the targets"
        )
    count = _worker_count(cfg, workers)
    if not cfg.master_key:
        click.echo(
            "FAREWAY_MASTER_KEY is not set: only keys made with `fareway keys create` are accepted.", err=True
        )
    url = f"http://{cfg.host}:{cfg.port}"
    click.echo(
        f"Fareway {__version__} on {url}  (OpenAI base_url {url}/v1, Anthropic base_url {url})", err=True
    )
    click.echo(state_line(cfg), err=True)
    if cfg.demo:
        key_note = "the key in FAREWAY_MASTER_KEY" if cfg.master_key != DEMO_KEY else f"key: {DEMO_KEY}"
        click.echo(f"DEMO MODE: every response is simulated, no provider is called. {key_note}", err=True)
        sim = f"http://127.0.0.1:{sim_port}"
        click.echo(f"The simulated providers listen on {sim}. To see a fallback, make one fail:", err=True)
        click.echo(
            f"  curl -X POST {sim}/_sim/faults -H 'content-type: application/json' "
            """-d '{"provider": "openai", "kind": "429", "count": 3}'""",
            err=True,
        )
    spec = WorkerSpec(config_path, host, port, sim_url, log_level, access_log)
    if count > 1:
        _serve_workers(cfg, spec, count, sim_port)
        return
    _run_gateway(cfg, spec, sim_port)


def _worker_count(cfg: Config, asked: int | None) -> int:
    """``--workers``, else ``[server] workers``, else auto; refuses a count whose per-process
    state would break a contract (see fareway.server.workers.per_worker_notes)."""
    from fareway.server.workers import per_worker_notes, usable_cores

    ls = cfg.limit_settings
    errors, notes = per_worker_notes(
        limits_store=ls.store, cache_url=cfg.cache.url, sessions_shared=cfg.sessions_url() is not None
    )
    explicit = asked or cfg.workers or None
    if explicit is None:
        cores = usable_cores()
        if errors and cores > 1:
            click.echo(f"1 worker ({cores} usable cores, but {errors[0]})", err=True)
            return 1
        count = cores
    else:
        count = explicit
        if count > 1 and errors:
            asked_by = f"--workers {count}" if asked else f"{cfg.source}: [server] workers = {count}"
            raise UserError(f"{asked_by}: " + "; ".join(errors))
    if count > 1:
        click.echo(
            f"{count} workers; per worker: " + "; ".join(notes) if notes else f"{count} workers", err=True
        )
    return count


def _serve_workers(cfg: Config, spec: WorkerSpec, count: int, sim_port: int | None) -> None:
    import threading

    from fareway.server.serving import END_GRACE
    from fareway.server.workers import Supervisor, bind_socket

    try:
        sock = bind_socket(cfg.host, cfg.port)
    except OSError as exc:
        raise UserError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from exc
    if sim_port is not None:  # one simulator for every worker, in the supervisor
        threading.Thread(target=_run_sim_forever, args=(sim_port,), daemon=True, name="demo-sim").start()
    stop_timeout = cfg.limits.drain_seconds + END_GRACE + cfg.ledger_close_timeout + 15.0
    code = Supervisor(_worker_main, spec, sock, count, stop_timeout=stop_timeout).run()
    if code:
        raise SystemExit(code)


def _run_sim_forever(port: int) -> None:
    import asyncio

    from fareway.sim.server import SimConfig, start_sim

    async def main() -> None:
        await start_sim("127.0.0.1", port, SimConfig.demo())
        await asyncio.Event().wait()

    asyncio.run(main())


def _worker_main(spec: WorkerSpec, sock: socket.socket) -> None:
    """A worker process of ``fareway serve --workers N`` (spawned: it loads the config anew)."""
    cfg = _serve_config(spec.config_path, spec.host, spec.port, spec.sim_url)
    _run_gateway(cfg, spec, None, sockets=[sock])


def _run_gateway(
    cfg: Config, spec: WorkerSpec, sim_port: int | None, sockets: list[socket.socket] | None = None
) -> None:
    from fareway.server.factory import build_app
    from fareway.server.serving import DRAIN_REASON, build_server, install_tracemalloc_hook

    app = build_app(cfg)
    if sim_port is not None:
        from fareway.sim.server import SimConfig, start_sim

        async def start_demo_sim() -> None:
            handle = await start_sim("127.0.0.1", sim_port, SimConfig.demo())
            app.gateway.on_close.append(handle.stop)

        app.gateway.on_start.append(start_demo_sim)

    def end_upstreams() -> None:
        interrupt = getattr(app.gateway.transport, "interrupt", None)
        if interrupt is not None:
            interrupt(DRAIN_REASON)

    install_tracemalloc_hook()
    server = build_server(
        app,
        host=cfg.host,
        port=cfg.port,
        limits=cfg.limits,
        log_level=spec.log_level,
        access_log=spec.access_log,
        on_drain_timeout=end_upstreams,
    )
    server.run(sockets=sockets)


# ----------------------------------------------------------------------------- sim


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9100, show_default=True)
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Simulator TOML config."
)
@click.option("--demo", is_flag=True, help="Use the demo profiles (realistic relative speeds).")
def sim(host: str, port: int, config_path: str | None, demo: bool) -> None:
    """Run the provider simulator (OpenAI, Anthropic and Gemini dialects, latency and faults)."""
    from fareway.sim.server import run_sim

    click.echo(
        f"Fareway simulator on http://{host}:{port}  (e.g. base_url http://{host}:{port}/openai/v1)", err=True
    )
    run_sim(host, port, config_path, demo)


# ------------------------------------------------------------------ providers/models


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
def providers(config_path: str | None) -> None:
    """List providers, their dialect, endpoint and whether a key is configured."""
    cfg = _load(config_path)
    click.echo(f"{'provider':<14} {'dialect':<10} {'key':<5} {'key env':<20} base_url")
    for name, p in sorted(cfg.providers.items()):
        has = "yes" if p.api_key else "no"
        click.echo(f"{name:<14} {p.spec.dialect:<10} {has:<5} {p.spec.key_env or '-':<20} {p.spec.base_url}")


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--all", "show_all", is_flag=True, help="Include models of providers without a key.")
def models(config_path: str | None, show_all: bool) -> None:
    """List the models routable with the configured keys."""
    from fareway.providers.catalog import load_builtin_catalog

    cfg = _load(config_path)
    keyed = cfg.keyed_providers()
    if not keyed and not show_all:
        click.echo(
            "no model is routable: no provider has an API key.\n"
            "  Add one: export OPENAI_API_KEY=... (or ANTHROPIC_API_KEY, GROQ_API_KEY, ...; see `fareway providers`),\n"
            "  or set api_key in a [providers.NAME] table of your config file.\n"
            "  `fareway models --all` lists every model the catalog knows; `fareway serve --demo` simulates them.",
            err=True,
        )
        return
    for o in load_builtin_catalog():
        if show_all or o.provider in keyed:
            mark = "" if o.provider in keyed else "  (no key)"
            kind = "  kind=embedding" if o.kind == "embedding" else ""
            click.echo(f"{o.provider}/{o.model:<40} family={o.family}{kind}{mark}")


# --------------------------------------------------------------------------- route


@main.group()
def route() -> None:
    """Inspect routing decisions."""


@route.command("explain")
@click.option(
    "--model",
    "-m",
    default="auto",
    show_default=True,
    help="auto, auto:fast, auto:cheap, an alias or a model.",
)
@click.option("--prompt-file", type=click.File("r"), help="A file whose text is the user message.")
@click.option("--prompt", default=None, help="The user message (instead of --prompt-file).")
@click.option("--max-tokens", type=int, default=None)
@click.option("--tools", is_flag=True, help="Pretend the request carries tools (needs a tool-capable offer).")
@click.option("--image", is_flag=True, help="Pretend the request carries an image.")
@click.option("--json-schema", is_flag=True, help="Pretend the request asks for JSON-schema output.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--demo", is_flag=True, help="Explain as the demo would (every provider keyed).")
@click.option("--json", "as_json", is_flag=True)
def route_explain(
    model: str,
    prompt_file: Any,
    prompt: str | None,
    max_tokens: int | None,
    tools: bool,
    image: bool,
    json_schema: bool,
    config_path: str | None,
    demo: bool,
    as_json: bool,
) -> None:
    """Print how a request would be routed: the candidates, why each was kept or dropped, the
    chosen offer and the fallback chain (the same decision x-fareway-route reports)."""
    import json as _json

    from fareway.server.factory import build_gateway
    from fareway.types import ChatRequest, ImagePart, Message, ResponseFormat, TextPart, ToolSpec

    cfg = _load(config_path)
    if demo or not cfg.keyed_providers():
        cfg = cfg.with_demo("http://127.0.0.1:9")
    text = prompt_file.read() if prompt_file is not None else (prompt or "Hello")
    parts: list[Any] = [TextPart(text)]
    if image:
        parts.append(ImagePart(url="https://example.invalid/cat.png"))
    req = ChatRequest(
        model=model,
        messages=[Message("user", parts)],
        max_tokens=max_tokens,
        tools=[ToolSpec("tool")] if tools else [],
        response_format=ResponseFormat("json_schema", name="out", schema={"type": "object"})
        if json_schema
        else None,
    )
    gw = build_gateway(cfg)
    try:
        data = gw.resolver.router.explain(req)
    except FarewayError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(_json.dumps(data, indent=2, default=str))
        return
    click.echo(f"model:   {data.get('model')}")
    click.echo(f"policy:  {data.get('policy', '-')}  quality floor: {data.get('quality_floor', '-')}")
    if data.get("requirements"):
        click.echo(f"needs:   {data['requirements']}")
    for c in data.get("candidates", []):
        mark = "+" if c.get("kept") else "-"
        why = c.get("reason") or c.get("why") or ""
        nums = ", ".join(
            f"{k}={c[k]}" for k in ("expected_cost_usd", "expected_latency_s", "quality") if k in c
        )
        click.echo(f"  {mark} {c.get('offer', c.get('key', '?')):<50} {nums}  {why}")
    if data.get("chosen"):
        click.echo(f"chosen:  {data['chosen']}  ({data.get('chosen_label', '')})")
    for f in data.get("fallbacks", []):
        click.echo(f"  then:  {f['offer']}  ({f['label']})")
    click.echo(f"x-fareway-route: {data.get('header')}")


def _register_extras() -> None:
    from fareway.cli_experiments import register as register_experiments
    from fareway.cli_keys import register as register_keys
    from fareway.cli_usage import register

    register(main)
    from fareway.cli_config import register as register_config

    register_config(main)
    from fareway.cli_ledger import register as register_ledger

    register_ledger(main)
    register_experiments(main)
    register_keys(main)
    from fareway.cli_catalog import register as register_catalog

    register_catalog(main)


_register_extras()


def run() -> None:  # pragma: no cover - console entry for `python -m fareway`
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()


if __name__ == "__main__":  # pragma: no cover
    run()
