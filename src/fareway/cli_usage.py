"""``fareway usage`` and ``fareway logs``: read the ledger directly (no running server needed).

The ledger is found as the server finds it: ``ledger_url`` from the config (``[ledger] url`` or
``FAREWAY_LEDGER_URL``; Postgres or ``sqlite:///path``), else SQLite at ``<state_dir>/fareway.db``
(fareway.config_state: ``[server] state_dir``, else ``FAREWAY_HOME``, else the per-user data directory).

Examples::

    fareway usage --by provider,model --since 7d
    fareway usage --by key,day --since 2025-01-01 --csv > january.csv
    fareway logs -n 20 --model gpt-4o-mini
    fareway logs --json | jq '.data[0].attempts'
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from fareway.config import Config, ConfigError, load_config

T = TypeVar("T")
MAX_LOGS = 1000  # as /v1/logs (fareway.dashboard.data.MAX_LOGS)


def ledger_path(cfg: Config) -> Path:
    """The default SQLite ledger file (the server must open the same one)."""
    return cfg.ledger_file


def _config(config_path: str | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc


def _with_ledger(cfg: Config, fn: Callable[[Any], Awaitable[T]]) -> T | None:
    """Run ``fn(ledger)`` on a started ledger; None when the SQLite ledger does not exist yet."""
    from fareway.ledger.writer import Ledger

    url = cfg.ledger_url
    if not url or url.startswith("sqlite:"):
        ledger = Ledger.open(url, str(ledger_path(cfg)))
        path = Path(getattr(ledger.store, "path", ledger_path(cfg)))
        if not path.exists():
            return None
    else:
        ledger = Ledger.open(url, str(ledger_path(cfg)))

    import asyncio

    async def run() -> T:
        await ledger.start()
        try:
            return await fn(ledger)
        finally:
            await ledger.close()

    try:
        return asyncio.run(run())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the ledger: {exc}") from exc


def _console() -> Any:
    from rich.console import Console

    tty = sys.stdout.isatty()
    return Console(width=None if tty else 200, highlight=False, markup=False, soft_wrap=not tty)


def _parse(fn: Callable[[], T]) -> T:
    from fareway.errors import BadRequest

    try:
        return fn()
    except BadRequest as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.param}" if exc.param else None) from exc


def _cost(value: str | None, tokens: int = 1) -> str:
    """A cost for display: ``$0.0012``; ``unpriced`` when unknown; ``-`` when nothing was consumed."""
    if value is None:
        return "unpriced" if tokens else "-"
    return f"${value}"


# -------------------------------------------------------------------------------- usage


@click.command("usage")
@click.option(
    "--by", "by", multiple=True, help="Group by provider, model, key, day, user, tag (comma-separated)."
)
@click.option(
    "--since", default=None, help="Start: ISO date/datetime or relative (7d, 24h, 30m). Default: all."
)
@click.option("--until", default=None, help="End (exclusive), same forms as --since.")
@click.option("--key", "key_id", default=None, help="Only this key id.")
@click.option("--json", "as_json", is_flag=True, help="Print the /v1/usage JSON body.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the groups as CSV.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
def usage_cmd(
    by: tuple[str, ...],
    since: str | None,
    until: str | None,
    key_id: str | None,
    as_json: bool,
    as_csv: bool,
    config_path: str | None,
) -> None:
    """Spend, tokens and call counts from the ledger, grouped, with totals."""
    from fareway.dashboard import data

    if as_json and as_csv:
        raise click.UsageError("--json and --csv are exclusive")
    group_by = _parse(lambda: data.parse_group_by(list(by)))
    t0 = _parse(lambda: data.parse_time(since, "since"))
    t1 = _parse(lambda: data.parse_time(until, "until"))
    _parse(lambda: data.check_window(t0, t1))
    cfg = _config(config_path)
    rows = _with_ledger(cfg, lambda ledger: ledger.usage(t0, t1, group_by, key_id))
    total_rows = None
    if rows is not None and "tag" in group_by:  # a multi-tag call is in several groups, once in the totals
        total_rows = _with_ledger(cfg, lambda ledger: ledger.usage(t0, t1, [], key_id))
    payload = data.usage_payload(rows or [], group_by, t0, t1, key_id, total_rows)
    if as_json:
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    if as_csv:
        click.echo(data.usage_csv(payload), nl=False)
        return
    if rows is None:
        click.echo(f"no calls recorded yet (no ledger at {ledger_path(cfg)})", err=True)
    from rich.table import Table
    from rich.text import Text

    window = f"since {payload['since'] or 'the beginning'}" + (f" until {payload['until']}" if t1 else "")
    table = Table(title=f"Fareway usage {window}", title_justify="left", show_footer=bool(group_by))
    group_cols = [f for g in group_by for f in data.GROUP_FIELDS[g]]
    numeric = [
        ("calls", "calls"),
        ("errors", "errors"),
        ("input", "input_tokens"),
        ("cached", "cached_input_tokens"),
        ("output", "output_tokens"),
        ("reasoning", "reasoning_tokens"),
        ("cost (USD)", "cost"),
        ("cache hits", "cache_hits"),
        ("saved", "cost_saved"),
        ("unpriced", "unknown_cost_calls"),
    ]
    totals = payload["totals"]
    for i, col in enumerate(group_cols):
        table.add_column(col, footer="total" if i == 0 else "")
    for header, field in numeric:
        table.add_column(header, justify="right", footer=_fmt(totals[field]))
    for g in payload["groups"] if group_by else [totals]:
        cells = [Text("-" if g.get(c) is None else str(g[c])) for c in group_cols]
        cells += [Text(_fmt(g[f])) for _, f in numeric]
        table.add_row(*cells)
    _console().print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# --------------------------------------------------------------------------------- logs


@click.command("logs")
@click.option(
    "-n", "n", type=click.IntRange(1, MAX_LOGS), default=20, show_default=True, help="How many calls."
)
@click.option("-m", "--model", default=None, help="Only calls that requested or were served by this model.")
@click.option("--key", "key_id", default=None, help="Only this key id.")
@click.option("--json", "as_json", is_flag=True, help="Print the /v1/logs JSON body.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
def logs_cmd(n: int, model: str | None, key_id: str | None, as_json: bool, config_path: str | None) -> None:
    """The most recent calls, newest first, each with its upstream attempts."""
    from fareway.dashboard import data

    cfg = _config(config_path)
    calls = _with_ledger(cfg, lambda ledger: ledger.recent_calls(n, model, key_id))
    payload = data.logs_payload(calls or [])
    if as_json:
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    if not payload["data"]:
        where = "" if calls is not None else f" (no ledger at {ledger_path(cfg)})"
        click.echo(f"no calls recorded yet{where}", err=True)
        return
    for c in payload["data"]:
        served = f"{c['provider']}/{c['upstream_model']}" if c["provider"] else "no provider reached"
        stream = " stream" if c["stream"] else ""
        cache = " cache-hit" if c["cache"] == "hit" else ""
        click.echo(
            f"{c['time'][:19].replace('T', ' ')}  {c['request_id']}  {c['key_name'] or c['key_id'] or '-'}  "
            f"{c['requested_model']} -> {served}  {c['status']} {c['outcome']}{stream}{cache}  "
            f"in={c['input_tokens']:,} out={c['output_tokens']:,}{' (est.)' if c['estimated'] else ''}  "
            f"{_cost(c['cost'])}  {_ms(c['latency_ms'])}"
        )
        if c["error"]:
            click.echo(f"    error: {c['error']}")
        for a in c["attempts"]:
            err = f"  {a['error']}" if a["error"] else ""
            status = a["status"] if a["status"] is not None else "-"
            click.echo(
                f"    #{a['attempt_no']} {a['role']:<8} {a['provider']}/{a['model']}  {a['outcome']} {status}  "
                f"ttft={_ms(a['ttft_ms'])} latency={_ms(a['latency_ms'])}  "
                f"in={a['input_tokens']:,} out={a['output_tokens']:,}  "
                f"{_cost(a['cost'], a['input_tokens'] + a['output_tokens'])}{err}"
            )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def register(main: click.Group) -> None:
    """Add ``usage`` and ``logs`` to the ``fareway`` command group."""
    main.add_command(usage_cmd, "usage")
    main.add_command(logs_cmd, "logs")
