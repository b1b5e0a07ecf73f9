"""``fareway ledger stats`` and ``fareway ledger prune``: the ledger's size and its retention,
read and done directly on the database the server uses (found as ``fareway usage`` finds it).

Examples::

    fareway ledger stats                 # rows per table, size on disk, oldest row
    fareway ledger stats --json
    fareway ledger prune                 # delete raw rows older than [ledger] keep_calls_days
    fareway ledger prune --keep-days 30 --vacuum

Pruning deletes raw call and attempt rows and their minute rollups; the hour and day rollups,
which every aggregate (usage, dashboard, /metrics) reads, are kept.  ``--vacuum`` then rewrites
a SQLite file to give the space back at once (run it with the gateway stopped; it also switches
an older ledger file to incremental vacuuming) or runs ``VACUUM`` on Postgres.
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from fareway.cli_usage import _config, _with_ledger, ledger_path


@click.group("ledger")
def ledger_group() -> None:
    """The ledger's storage: size, retention."""


@ledger_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
def stats_cmd(as_json: bool, config_path: str | None) -> None:
    """Rows per table, size on disk, the oldest raw rows, where pruning stopped."""
    cfg = _config(config_path)

    async def read(ledger: Any) -> dict[str, Any]:
        out: dict[str, Any] = await ledger.storage_stats()
        return out

    stats = _with_ledger(cfg, read)
    if stats is None:
        raise click.ClickException(f"no ledger at {ledger_path(cfg)}")
    stats["keep_calls_days"] = cfg.ledger_keep_calls_days
    if as_json:
        click.echo(orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode())
        return
    where = stats.get("path") or f"schema {stats.get('schema')}"
    click.echo(f"ledger: {stats['backend']} ({where})")
    for table, n in stats["rows"].items():
        size = stats.get("tables", {}).get(table)
        click.echo(f"  {table:<16} {n:>14,} rows" + (f"  {_bytes(size)}" if size is not None else ""))
    click.echo(f"  size on disk     {_bytes(stats['size_bytes']):>14}")
    if "free_bytes" in stats:
        click.echo(
            f"  free pages       {_bytes(stats['free_bytes']):>14}  (auto_vacuum: {stats['auto_vacuum']})"
        )
    click.echo(f"  oldest call      {stats['oldest_call'] or '-'}")
    click.echo(f"  oldest attempt   {stats['oldest_attempt'] or '-'}")
    click.echo(f"  pruned before    {stats['pruned_before'] or '-'}")
    keep = cfg.ledger_keep_calls_days
    click.echo(f"  keep_calls_days  {keep if keep is not None else '- (every row is kept)'}")


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@ledger_group.command("prune")
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Keep raw rows this many days (default: [ledger] keep_calls_days).",
)
@click.option("--vacuum", is_flag=True, help="Then give the freed space back at once (see the help).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
def prune_cmd(keep_days: float | None, vacuum: bool, config_path: str | None) -> None:
    """Delete raw call and attempt rows older than the retention; hour and day rollups are kept."""
    cfg = _config(config_path)
    days = keep_days if keep_days is not None else cfg.ledger_keep_calls_days
    if days is None:
        raise click.UsageError("nothing to prune: set [ledger] keep_calls_days or pass --keep-days")

    async def run(ledger: Any) -> tuple[int, int]:
        deleted: tuple[int, int] = await ledger.prune(days, pause=0.0)
        if vacuum:
            await ledger.store.reclaim(full=True)
        return deleted

    from fareway.ledger.retention import cutoff

    before = cutoff(days)
    done = _with_ledger(cfg, run)
    if done is None:
        raise click.ClickException(f"no ledger at {ledger_path(cfg)}")
    calls, attempts = done
    click.echo(
        f"pruned {calls:,} call(s) and {attempts:,} attempt(s) older than {before.isoformat()}"
        + (" and vacuumed" if vacuum else "")
    )


def register(main: click.Group) -> None:
    """Add ``ledger`` to the ``fareway`` command group."""
    main.add_command(ledger_group, "ledger")
