"""``fareway config check FILE``, ``fareway init [PATH]`` and the CLI's error discipline.

:class:`FarewayGroup` is the command group's class: a user error anywhere (a bad config, a
Fareway error, a file that cannot be written, a click error) ends the command with one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from fareway.config import Config, ConfigError, load_config, unroutable_aliases
from fareway.errors import FarewayError
from fareway.scrub import fingerprint

EXAMPLE_NAME = "fareway.example.toml"


class UserError(click.ClickException):
    """A mistake of the user's: one line, exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class FarewayGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.UsageError:
            raise
        except click.ClickException as exc:
            raise UserError(exc.format_message()) from None
        except FarewayError as exc:
            raise UserError(exc.message) from None
        except OSError as exc:
            raise UserError(str(exc)) from None


def load(config_path: str | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise UserError(exc.message) from None


def state_line(cfg: Config) -> str:
    return f"state: {cfg.state_dir}  (from {cfg.state_source})"


# ------------------------------------------------------------------------- resolved view


def _mask(secret: str | None) -> str | None:
    return fingerprint(secret) if secret else None


def _mask_url(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:{fingerprint(parts.password)}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def resolved(cfg: Config) -> dict[str, Any]:
    """The configuration as the gateway will run it, secrets replaced by fingerprints."""
    server: dict[str, Any] = {
        "host": cfg.host,
        "port": cfg.port,
        "max_body_bytes": cfg.max_body_bytes,
        "state_dir": str(cfg.state_dir),
        **dataclasses.asdict(cfg.limits),
    }
    if cfg.default_model:
        server["default_model"] = cfg.default_model
    ledger: dict[str, Any] = {
        "url": _mask_url(cfg.ledger_url) or f"sqlite:///{cfg.ledger_file}",
        "enabled": cfg.ledger_enabled,
        "writer": cfg.ledger_writer,
        "batch_size": cfg.ledger_batch_size,
        "max_delay": cfg.ledger_max_delay,
        "schema": cfg.ledger_schema,
        "connect_timeout": cfg.ledger_connect_timeout,
        "statement_timeout": cfg.ledger_statement_timeout,
        "close_timeout": cfg.ledger_close_timeout,
        "spool_path": str(cfg.ledger_spool),
        "spool_after": cfg.ledger_spool_after,
    }
    if cfg.ledger_writer_cpus is not None:
        ledger["writer_cpus"] = cfg.ledger_writer_cpus
    if cfg.ledger_keep_calls_days is not None:
        ledger["keep_calls_days"] = cfg.ledger_keep_calls_days
    providers: dict[str, Any] = {}
    for name, p in sorted(cfg.providers.items()):
        entry: dict[str, Any] = {
            "dialect": p.spec.dialect,
            "base_url": p.spec.base_url,
            "api_key": _mask(p.api_key) or "(none)",
        }
        if p.spec.key_env:
            entry["key_env"] = p.spec.key_env
        if p.models:
            entry["models"] = p.models
        if p.embedding_models:
            entry["embedding_models"] = p.embedding_models
        providers[name] = entry
    cache = {
        k: v
        for k, v in dataclasses.asdict(cfg.cache).items()
        if k not in ("share", "aliases") and v is not None
    }
    if cache.get("url"):
        cache["url"] = _mask_url(cache["url"])
    out: dict[str, Any] = {
        "server": server,
        "timeouts": dataclasses.asdict(cfg.timeouts),
        "defaults": {"max_tokens": cfg.default_max_tokens},
        "ledger": ledger,
        "cache": cache,
        "providers": providers,
    }
    ks = cfg.key_settings
    out["server"]["workers"] = cfg.workers
    out["keys"] = (
        {"database_url": _mask_url(ks.database_url), "schema": ks.schema, "pool_size": ks.pool_size}
        if ks.database_url
        else {"database_url": f"sqlite:///{cfg.state_dir / 'state.db'}"}
    )
    sessions = cfg.sessions_url()
    out["dashboard"] = {
        "sessions": "memory" if sessions is None else "redis",
        **(
            {"redis_url": _mask_url(sessions), "redis_prefix": cfg.dashboard.redis_prefix} if sessions else {}
        ),
        "session_ttl": cfg.dashboard.session_ttl,
    }
    if cfg.master_key:
        out = {"master_key": _mask(cfg.master_key), **out}
    if cfg.aliases:
        out["aliases"] = cfg.aliases
    if cfg.prices:
        out["prices"] = cfg.prices
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def to_toml(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for k, v in data.items():
        if not isinstance(v, dict):
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for section, table in data.items():
        if not isinstance(table, dict):
            continue
        named = section in ("providers", "prices")
        if not named:
            lines += ["", f"[{section}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
            continue
        for name, entry in table.items():
            lines += ["", f"[{section}.{_toml_key(name)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


# ------------------------------------------------------------------------------- commands


def example_text() -> str:
    """The documented example config (shipped in the package; the repo root holds the same)."""
    return resources.files("fareway").joinpath(EXAMPLE_NAME).read_text("utf-8")


def register(main: click.Group) -> None:
    @main.group("config")
    def config_group() -> None:
        """Check a configuration file."""

    @config_group.command("check")
    @click.argument("file", type=click.Path(dir_okay=False))
    def config_check(file: str) -> None:
        """Print FILE's resolved configuration (secrets as fingerprints), or its first mistake
        (exit code 2)."""
        from fareway.server.factory import check_config

        cfg = load(file)
        check_config(cfg)
        click.echo(f"# {file}: OK", err=True)
        click.echo(f"# {state_line(cfg)}", err=True)
        for name in unroutable_aliases(cfg):
            click.echo(
                f"# warning: alias {name!r} has no target on a provider with a key: it cannot route now",
                err=True,
            )
        click.echo(to_toml(resolved(cfg)), nl=False)

    @main.command("init")
    @click.argument("path", default="fareway.toml", type=click.Path(dir_okay=False))
    @click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
    def init(path: str, force: bool) -> None:
        """Write a documented config file (every setting, with its default) to PATH."""
        target = Path(path)
        if target.exists() and not force:
            raise UserError(f"{target} exists; use --force to overwrite it")
        target.write_text(example_text(), "utf-8")
        click.echo(f"wrote {target}; check it with: fareway config check {target}", err=True)


def fail(message: str) -> None:
    """One line on stderr and exit code 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)
