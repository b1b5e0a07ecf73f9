"""``fareway experiments``: list, show, pause, resume, stop, promote, on the database directly (no
running server needed; a running gateway applies a status change within a second or so).

The database is the ledger's, found as ``fareway usage`` finds it (``[ledger] url`` or
``FAREWAY_LEDGER_URL``, else SQLite at ``<state_dir>/fareway.db``); the experiments are the
config's ``[experiments.NAME]`` tables and those created through ``POST /v1/experiments``.

Examples::

    fareway experiments list
    fareway experiments show support-bot
    fareway experiments show support-bot --json | jq .decision
    fareway experiments pause support-bot
    fareway experiments promote support-bot            # to the decision's winner
    fareway experiments promote support-bot --to control
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from fareway.cli_usage import _config
from fareway.config import Config
from fareway.errors import FarewayError
from fareway.experiments.control import transition
from fareway.experiments.queries import VariantStats, variant_stats
from fareway.experiments.results import History, State, brief, summarize, tally_of
from fareway.experiments.results import text as summary_text
from fareway.experiments.settings import ExperimentSettings, SettingsError, parse
from fareway.experiments.store import ExperimentStore, StoredExperiment, open_store

T = TypeVar("T")


def _sqlite_missing(cfg: Config) -> bool:
    url = cfg.ledger_url
    if url and not url.startswith("sqlite:"):
        return False
    path = url.removeprefix("sqlite:").removeprefix("///") if url else ""
    return not Path(path or cfg.ledger_file).exists()


def _with_store(cfg: Config, fn: Callable[[ExperimentStore], Awaitable[T]]) -> T:
    store = open_store(
        cfg.ledger_url,
        cfg.ledger_file,
        schema=cfg.ledger_schema,
        connect_timeout=cfg.ledger_connect_timeout,
        statement_timeout=cfg.ledger_statement_timeout,
    )

    async def run() -> T:
        await store.start()
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the experiments' state: {exc}") from exc


async def _variants(cfg: Config, name: str) -> dict[str, VariantStats] | None:
    from fareway.ledger.writer import Ledger

    ledger = Ledger.open(cfg.ledger_url, str(cfg.ledger_file), schema=cfg.ledger_schema, writer="thread")
    await ledger.start()
    try:
        return await variant_stats(ledger.store, name)
    finally:
        await ledger.close()


def _settings(cfg: Config, rows: dict[str, StoredExperiment]) -> dict[str, tuple[ExperimentSettings, str]]:
    out = {name: (s, "config") for name, s in cfg.experiments.items()}
    for name, row in rows.items():
        if name in out or row.source != "api":
            continue
        try:
            out[name] = (parse(name, {k: v for k, v in row.definition.items() if k != "name"}), "api")
        except SettingsError as exc:
            click.echo(f"warning: experiment {name} in the database is not valid: {exc}", err=True)
    return out


def _state(s: ExperimentSettings, source: str, row: StoredExperiment | None) -> State:
    st = State(s, source)
    if row is not None:
        st.status, st.promoted_to = row.status, row.promoted_to
        st.counters, st.spend = dict(row.counters), row.spend
    return st


def _summaries(cfg: Config, name: str | None, with_series: bool) -> list[dict[str, Any]]:
    if _sqlite_missing(cfg):
        rows: dict[str, StoredExperiment] = {}
        known = _settings(cfg, rows)
        if name is not None and name not in known:
            raise click.ClickException(f"no experiment named {name!r}")
        return [
            summarize(_state(s, src, None), History(s)) for n, (s, src) in known.items() if name in (None, n)
        ]

    async def fetch(store: ExperimentStore) -> list[dict[str, Any]]:
        rows = {r.name: r for r in await store.load()}
        known = _settings(cfg, rows)
        if name is not None and name not in known:
            raise click.ClickException(f"no experiment named {name!r}")
        out = []
        for n, (s, src) in known.items():
            if name not in (None, n):
                continue
            pairs = await store.pairs(n)
            variants = await _variants(cfg, n) if name is not None else None
            history = History.of(s, pairs)
            out.append(summarize(_state(s, src, rows.get(n)), history, variants, with_series=with_series))
        return out

    return _with_store(cfg, fetch)


@click.group("experiments")
def experiments() -> None:
    """A/B experiments with an LLM judge: results, pause/resume/stop, promote."""


@experiments.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the /v1/experiments JSON body.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
def list_cmd(as_json: bool, config_path: str | None) -> None:
    """Every experiment: status, pairs judged, win rate, interval, decision."""
    cfg = _config(config_path)
    data = [brief(s) for s in _summaries(cfg, None, False)]
    if as_json:
        click.echo(orjson.dumps({"object": "list", "data": data}, option=orjson.OPT_INDENT_2).decode())
        return
    if not data:
        click.echo("no experiments: add an [experiments.NAME] table to the config", err=True)
        return
    for e in data:
        rate = "-" if e["win_rate"] is None else f"{e['win_rate']:.1%}"
        lo, hi = e["interval"]
        click.echo(
            f"{e['name']:<20} {e['status']:<9} {e['mode']:<7} {e['model']:<20} pairs {e['pairs']:>6}  "
            f"win rate {rate:>6} [{lo:.1%}, {hi:.1%}]  {e['decision']}"
        )


@experiments.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the /v1/experiments/NAME JSON body.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
def show_cmd(name: str, as_json: bool, config_path: str | None) -> None:
    """One experiment's results: pairs, win rate with its always-valid interval, decision,
    cost/latency/errors per variant."""
    cfg = _config(config_path)
    (summary,) = _summaries(cfg, name, as_json)
    if as_json:
        click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(summary_text(summary))


def _control(name: str, action: str, to: str | None, config_path: str | None) -> None:
    cfg = _config(config_path)

    async def apply(store: ExperimentStore) -> str:
        rows = {r.name: r for r in await store.load()}
        known = _settings(cfg, rows)
        if name not in known:
            raise click.ClickException(f"no experiment named {name!r}")
        s, source = known[name]
        row = rows.get(name) or await store.ensure(name, source, s.as_dict())
        tally = tally_of(s, await store.pairs(name))
        try:
            status, promoted_to = transition(s, row.status, row.promoted_to, action, tally, to)
        except FarewayError as exc:
            raise click.ClickException(exc.message) from exc
        await store.set_status(name, status, promoted_to)
        return f"{name}: {status}" + (
            f" (the model name {s.model} now goes to {promoted_to})" if promoted_to else ""
        )

    click.echo(_with_store(cfg, apply))


for _action, _help in (
    ("pause", "Stop judging and send every caller to the control (resume undoes it)."),
    ("resume", "Run a paused experiment again."),
    ("stop", "End the experiment: callers stay on the control; the results are kept."),
):

    def _make(action: str) -> Callable[..., None]:
        @click.argument("name")
        @click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
        def cmd(name: str, config_path: str | None) -> None:
            _control(name, action, None, config_path)

        return cmd

    experiments.command(_action, help=_help)(_make(_action))


@experiments.command("promote")
@click.argument("name")
@click.option(
    "--to",
    type=click.Choice(["control", "challenger"]),
    default=None,
    help="Promote this arm even without a decision (default: the decision's winner).",
)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
def promote_cmd(name: str, to: str | None, config_path: str | None) -> None:
    """Point the experiment's model name at the winner (persisted; survives restarts)."""
    _control(name, "promote", to, config_path)


def register(main: click.Group) -> None:
    main.add_command(experiments, "experiments")
