"""``fareway keys|teams|vault|audit``: manage gateway keys, teams and provider keys in the local
state DB (``state_dir/state.db``), with the same rules and audit trail as the admin HTTP API
(fareway.keys.admin).  The actor in the audit log is ``cli:<user>``.

A running gateway sees every change at its next request (it watches the state DB): a revoked key
fails at once, a provider key added here is used from the next call.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from fareway.cli_config import load, state_line
from fareway.errors import FarewayError
from fareway.keys.admin import Admin, parse_span
from fareway.keys.audit import Actor
from fareway.keys.records import LIMIT_FIELDS, KeyInfo, TeamInfo
from fareway.keys.settings import KeySettingsError
from fareway.keys.state_db import open_state_db
from fareway.keys.store import KeyStore
from fareway.keys.vault import Vault, VaultLocked, new_master_key, parse_master_keys

T = TypeVar("T")


def _admin(config_path: str | None) -> Admin:
    cfg = load(config_path)
    click.echo(state_line(cfg), err=True)
    ks = cfg.key_settings
    db = open_state_db(
        cfg.state_dir / "state.db", database_url=ks.database_url, schema=ks.schema, pool_size=1
    )
    keys = KeyStore(cfg.state_dir / "state.db", db=db)
    click.get_current_context().call_on_close(keys.close)
    try:
        master = parse_master_keys(cfg.key_settings.master_key_text())
        vault = Vault(keys.db, master)
    except (KeySettingsError, VaultLocked) as exc:
        raise click.ClickException(str(exc)) from exc
    return Admin(keys, vault=vault, providers=cfg.providers)


def _actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}")


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except FarewayError as exc:
        raise click.ClickException(exc.message) from exc
    except ValueError as exc:  # bad input, a locked vault
        raise click.ClickException(str(exc)) from exc


def _when(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _metadata(pairs: tuple[str, ...]) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise click.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--metadata")
        out[k] = v
    return out


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")(
        f
    )


def limit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt, hlp in reversed(
        [
            ("--budget-daily", "USD per UTC day."),
            ("--budget-monthly", "USD per UTC month."),
            ("--budget-total", "USD in total."),
            ("--rpm", "Requests per minute."),
            ("--tpm", "Tokens per minute (prompt + output)."),
        ]
    ):
        f = click.option(opt, default=None, help=hlp)(f)
    f = click.option("--provider", "providers", multiple=True, help="Allowed provider (glob; repeatable).")(f)
    f = click.option("--model", "models", multiple=True, help="Allowed model (glob; repeatable).")(f)
    f = click.option("--metadata", multiple=True, help="KEY=VALUE (repeatable).")(f)
    return f


def _limit_fields(kw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in (
        ("budget_daily", "budget_daily_usd"),
        ("budget_monthly", "budget_monthly_usd"),
        ("budget_total", "budget_total_usd"),
        ("rpm", "rpm"),
        ("tpm", "tpm"),
    ):
        if kw.get(name) is not None:
            out[field] = kw[name]
    if kw.get("models"):
        out["allowed_models"] = list(kw["models"])
    if kw.get("providers"):
        out["allowed_providers"] = list(kw["providers"])
    meta = _metadata(kw.get("metadata") or ())
    if meta is not None:
        out["metadata"] = meta
    return out


def _print_key(info: KeyInfo) -> None:
    d = info.as_dict()
    for k, v in d.items():
        if k.endswith(("_at", "_until")):
            v = _when(v)
        elif isinstance(v, list | dict):
            v = json.dumps(v) if v else "-"
        click.echo(f"{k + ':':<22} {'-' if v is None else v}")


# --------------------------------------------------------------------------------- keys


@click.group()
def keys() -> None:
    """Manage Fareway keys (stored only as hashes in the state DB)."""


@keys.command("create")
@click.option("--name", required=True, help="A unique name for the key (among active keys).")
@click.option(
    "--role", type=click.Choice(["inference", "admin"]), default=None, help="Shorthand for the scopes."
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["inference", "usage", "admin"]),
    help="inference, usage (read-only usage), admin (everything); repeatable. Default: inference.",
)
@click.option("--team", default=None, help="The team (id or name) the key belongs to.")
@click.option("--expires", default=None, help="An ISO date/datetime or a span from now (30d, 12h).")
@limit_options
@config_option
def keys_create(
    name: str,
    role: str | None,
    scopes: tuple[str, ...],
    team: str | None,
    expires: str | None,
    config_path: str | None,
    **kw: Any,
) -> None:
    """Issue a key.  It is printed once and never again."""
    fields: dict[str, Any] = {"name": name, **_limit_fields(kw)}
    if scopes:
        fields["scopes"] = list(scopes)
    elif role:
        fields["role"] = role
    if team:
        fields["team"] = team
    if expires:
        fields["expires_at"] = expires
    admin = _admin(config_path)
    secret, info = _run(lambda: admin.create_key(_actor(), fields))
    click.echo(secret)
    click.echo(
        f"created {info.key_id} ({','.join(sorted(info.scopes))}) named {name!r}; store it now, it cannot be shown again",
        err=True,
    )


@keys.command("list")
@click.option("--team", default=None, help="Only this team's keys.")
@click.option("--active", is_flag=True, help="Leave out revoked keys.")
@click.option("--json", "as_json", is_flag=True)
@config_option
def keys_list(team: str | None, active: bool, as_json: bool, config_path: str | None) -> None:
    """List keys (id, name, scopes, team, prefix, created, expires, revoked)."""
    admin = _admin(config_path)
    rows = _run(lambda: admin.list_keys(team=team, include_revoked=not active))
    if as_json:
        click.echo(json.dumps([k.as_dict() for k in rows], indent=2))
        return
    if not rows:
        click.echo("no keys; create one with: fareway keys create --name NAME")
        return
    click.echo(
        f"{'id':<18} {'name':<20} {'scopes':<22} {'team':<18} {'prefix':<8} {'created':<20} {'expires':<20} revoked"
    )
    for k in rows:
        click.echo(
            f"{k.key_id:<18} {k.name:<20} {','.join(sorted(k.scopes)):<22} {k.team_id or '-':<18} {k.prefix:<8} "
            f"{_when(k.created_at):<20} {_when(k.expires_at):<20} {_when(k.revoked_at)}"
        )


@keys.command("show")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True)
@config_option
def keys_show(key: str, as_json: bool, config_path: str | None) -> None:
    """Show one key (by id or name): scopes, team, allow-lists, expiry, metadata, limits."""
    admin = _admin(config_path)
    info = _run(lambda: admin.show_key(key))
    if as_json:
        click.echo(json.dumps(info.as_dict(), indent=2))
    else:
        _print_key(info)


@keys.command("update")
@click.argument("key")
@click.option("--name", default=None, help="A new name.")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(["inference", "usage", "admin"]))
@click.option("--team", default=None)
@click.option("--expires", default=None, help="An ISO date/datetime or a span from now (30d).")
@click.option(
    "--clear",
    multiple=True,
    type=click.Choice(["team", "expires", "models", "providers", "metadata", *LIMIT_FIELDS]),
    help="Remove a setting (repeatable).",
)
@limit_options
@config_option
def keys_update(
    key: str,
    name: str | None,
    scopes: tuple[str, ...],
    team: str | None,
    expires: str | None,
    clear: tuple[str, ...],
    config_path: str | None,
    **kw: Any,
) -> None:
    """Change a key's name, scopes, team, allow-lists, expiry, metadata or limits."""
    changes = _limit_fields(kw)
    if name:
        changes["name"] = name
    if scopes:
        changes["scopes"] = list(scopes)
    if team:
        changes["team"] = team
    if expires:
        changes["expires_at"] = expires
    aliases = {
        "team": "team_id",
        "expires": "expires_at",
        "models": "allowed_models",
        "providers": "allowed_providers",
    }
    for c in clear:
        changes[aliases.get(c, c)] = None
    admin = _admin(config_path)
    info = _run(lambda: admin.update_key(_actor(), key, changes))
    _print_key(info)


@keys.command("rotate")
@click.argument("key")
@click.option(
    "--grace", default="0", show_default=True, help="How long the old secret keeps working (1h, 30m)."
)
@config_option
def keys_rotate(key: str, grace: str, config_path: str | None) -> None:
    """Give a key a new secret (printed once); id, name, limits and spend stay."""
    admin = _admin(config_path)
    secret, info = _run(lambda: admin.rotate_key(_actor(), key, grace))
    click.echo(secret)
    g = parse_span(grace)
    old = (
        f"the old secret works until {_when(info.previous_valid_until)}"
        if g
        else "the old secret stopped working"
    )
    click.echo(f"rotated {info.key_id} ({info.name!r}); {old}", err=True)


@keys.command("revoke")
@click.argument("key")
@config_option
def keys_revoke(key: str, config_path: str | None) -> None:
    """Revoke a key by id or name (a running gateway refuses it at its next request)."""
    admin = _admin(config_path)
    info = admin.keys.get(key)
    if info is None or info.revoked_at is not None:
        raise click.ClickException(f"no active key with id or name {key!r}")
    _run(lambda: admin.revoke_key(_actor(), info.key_id))
    click.echo("revoked 1 key(s)")


# -------------------------------------------------------------------------------- teams


@click.group()
def teams() -> None:
    """Manage teams: shared allow-lists, budgets, rate limits and provider keys for their keys."""


def _print_team(t: TeamInfo) -> None:
    for k, v in t.as_dict().items():
        if k.endswith("_at"):
            v = _when(v)
        elif isinstance(v, list | dict):
            v = json.dumps(v) if v else "-"
        click.echo(f"{k + ':':<22} {'-' if v is None else v}")


@teams.command("create")
@click.option("--name", required=True)
@limit_options
@config_option
def teams_create(name: str, config_path: str | None, **kw: Any) -> None:
    """Create a team."""
    admin = _admin(config_path)
    team = _run(lambda: admin.create_team(_actor(), {"name": name, **_limit_fields(kw)}))
    click.echo(f"created {team.team_id} named {team.name!r}")


@teams.command("list")
@click.option("--json", "as_json", is_flag=True)
@config_option
def teams_list(as_json: bool, config_path: str | None) -> None:
    admin = _admin(config_path)
    rows = admin.list_teams()
    if as_json:
        click.echo(json.dumps([t.as_dict() for t in rows], indent=2))
        return
    click.echo(f"{'id':<18} {'name':<20} {'daily $':<10} {'monthly $':<10} {'total $':<10} {'rpm':<8} tpm")
    for t in rows:
        d = t.as_dict()
        click.echo(
            f"{t.team_id:<18} {t.name:<20} {d['budget_daily_usd'] or '-':<10} {d['budget_monthly_usd'] or '-':<10} "
            f"{d['budget_total_usd'] or '-':<10} {d['rpm'] or '-'!s:<8} {d['tpm'] or '-'}"
        )


@teams.command("show")
@click.argument("team")
@config_option
def teams_show(team: str, config_path: str | None) -> None:
    admin = _admin(config_path)
    _print_team(_run(lambda: admin.show_team(team)))


@teams.command("update")
@click.argument("team")
@click.option("--name", default=None)
@click.option(
    "--clear",
    multiple=True,
    type=click.Choice(["models", "providers", "metadata", *LIMIT_FIELDS]),
    help="Remove a setting (repeatable).",
)
@limit_options
@config_option
def teams_update(
    team: str, name: str | None, clear: tuple[str, ...], config_path: str | None, **kw: Any
) -> None:
    changes = _limit_fields(kw)
    if name:
        changes["name"] = name
    aliases = {"models": "allowed_models", "providers": "allowed_providers"}
    for c in clear:
        changes[aliases.get(c, c)] = None
    admin = _admin(config_path)
    _print_team(_run(lambda: admin.update_team(_actor(), team, changes)))


@teams.command("delete")
@click.argument("team")
@config_option
def teams_delete(team: str, config_path: str | None) -> None:
    """Delete a team without active keys (its provider keys are revoked)."""
    admin = _admin(config_path)
    t = _run(lambda: admin.delete_team(_actor(), team))
    click.echo(f"deleted {t.team_id} ({t.name!r})")


# -------------------------------------------------------------------------------- vault


@click.group()
def vault() -> None:
    """Provider keys at rest (encrypted with the vault master key; shown only as fingerprints)."""


@vault.command("add")
@click.argument("provider")
@click.option("--team", default=None, help="The team that owns the key (default: the gateway).")
@click.option("--label", default=None)
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the key from standard input.")
@config_option
def vault_add(
    provider: str, team: str | None, label: str | None, from_stdin: bool, config_path: str | None
) -> None:
    """Store a provider key (asked for with hidden input, or read from stdin)."""
    secret = sys.stdin.readline().strip() if from_stdin else click.prompt(f"{provider} key", hide_input=True)
    admin = _admin(config_path)
    info = _run(lambda: admin.add_provider_key(_actor(), provider, secret, team=team, label=label))
    owner = f"team {team}" if team else "the gateway"
    click.echo(f"stored {info.pk_id}: {provider} key {info.fingerprint} for {owner}")


@vault.command("list")
@click.option("--team", default=None)
@click.option("--provider", default=None)
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True)
@config_option
def vault_list(
    team: str | None, provider: str | None, include_revoked: bool, as_json: bool, config_path: str | None
) -> None:
    admin = _admin(config_path)
    rows = _run(
        lambda: admin.list_provider_keys(team=team, provider=provider, include_revoked=include_revoked)
    )
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    click.echo(
        f"{'id':<16} {'provider':<12} {'team':<18} {'fingerprint':<12} {'label':<20} {'created':<20} revoked"
    )
    for r in rows:
        click.echo(
            f"{r.pk_id:<16} {r.provider:<12} {r.team_id or '(gateway)':<18} {r.fingerprint:<12} {r.label or '-':<20} "
            f"{_when(r.created_at):<20} {_when(r.revoked_at)}"
        )


@vault.command("revoke")
@click.argument("pk_id")
@config_option
def vault_revoke(pk_id: str, config_path: str | None) -> None:
    admin = _admin(config_path)
    info = _run(lambda: admin.revoke_provider_key(_actor(), pk_id))
    click.echo(f"revoked {info.pk_id} ({info.provider} key {info.fingerprint})")


@vault.command("new-master-key")
def vault_new_master_key() -> None:
    """Print a fresh vault master key (for FAREWAY_VAULT_KEY)."""
    click.echo(new_master_key())


@vault.command("rotate-master")
@config_option
def vault_rotate_master(config_path: str | None) -> None:
    """Re-encrypt every stored provider key with the first master key (put the new key first,
    the old one after it, run this, then drop the old one)."""
    admin = _admin(config_path)
    n = _run(lambda: admin.rotate_master(_actor()))
    click.echo(f"re-encrypted {n} provider key(s) with the first master key")


# -------------------------------------------------------------------------------- audit


@click.command()
@click.option("-n", "n", default=20, show_default=True)
@click.option("--action", default=None, help="An action (key.revoke) or a prefix ending in a dot (key.).")
@click.option("--target", default=None, help="A target's id or name.")
@click.option("--actor", default=None, help="An actor's name or key id.")
@click.option("--since", default=None, help="A span ago (7d) or an ISO date.")
@click.option("--json", "as_json", is_flag=True)
@config_option
def audit(
    n: int,
    action: str | None,
    target: str | None,
    actor: str | None,
    since: str | None,
    as_json: bool,
    config_path: str | None,
) -> None:
    """The audit log of admin actions, newest first."""
    admin = _admin(config_path)
    since_t = None
    if since:
        now = admin.clock()
        try:
            since_t = (
                now - parse_span(since)
                if since[-1:].lower() in "smhdw"
                else datetime.fromisoformat(since).replace(tzinfo=UTC).timestamp()
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from exc
    rows = admin.audit_log(n=n, action=action, target=target, actor=actor, since=since_t)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in rows], indent=2))
        return
    for e in rows:
        details = json.dumps(e.details, sort_keys=True) if e.details else ""
        click.echo(
            f"{_when(e.at)}  {e.actor:<20} {e.action:<20} {e.target_type}:{e.target_id or '-'} {e.target_name or ''}  {details}"
        )


def register(main: click.Group) -> None:
    for cmd in (keys, teams, vault, audit):
        main.add_command(cmd)
