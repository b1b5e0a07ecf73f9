"""Configuration: a TOML file, secrets by ``${ENV_VAR}`` reference, defaults that need nothing.

Example (the smallest useful config)::

    [providers.local]
    dialect = "openai"
    base_url = "http://127.0.0.1:9100/v1"
    api_key = "${LOCAL_KEY}"

Top-level sections:

``[server]``      host, port, max_body_bytes, state_dir (see fareway.config_state), and the limits that keep slow or hostile
                  clients and upstreams from exhausting the gateway:
                  header_timeout (seconds from connect, or from a request's first byte on a
                  kept-alive connection, to the end of its headers; 10), body_timeout (seconds from
                  the end of the headers to the end of the body; 60), max_headers (header lines per
                  request, 100) and max_header_bytes (request line plus headers, 65536): over either
                  the answer is 431; max_connections (open client connections; 0, the default, is
                  half the open-file limit, at most 10000: at the limit the longest-idle connection
                  without a request in flight is closed to admit the new one, or the new one gets a
                  503), drain_seconds (on SIGTERM: how long in-flight calls may take to finish
                  before streams are ended with an error event and the rest cancelled; 30; the
                  process then exits 0), max_response_bytes (an upstream answer, or the bytes of a
                  streamed one, over this is an upstream error: a fallback trigger before the
                  commit point; 33554432), default_model (where a request for a model nothing routes
                  goes; unset: a 404)
``[timeouts]``    connect, first_token, idle, total (seconds); stream_upstream (true: non-streamed
                  calls are read from the upstream as streams, so first_token and idle apply)
``[defaults]``    max_tokens (for Anthropic upstreams when an OpenAI client sends none)
``[ledger]``      url (``postgresql://...``; default: SQLite state_dir/fareway.db),
                  batch_size (calls per write, 500) and max_delay (seconds a call may wait to be
                  written, 0.05: also what a crash of the gateway can lose),
                  enabled (false: no ledger at all — for measuring its cost only),
                  writer ("process": a child process owns the SQLite write connection; "thread":
                  a writer thread in the gateway; "auto", the default: the process when the
                  gateway may use more than one CPU, else the thread),
                  writer_cpus (with writer = "process": CPUs the writer may use, e.g. [1]);
                  Postgres: schema ("fareway"), connect_timeout (5) and statement_timeout (10)
                  seconds, close_timeout (5: how long shutdown waits for the database before
                  spooling), spool_path (state_dir/ledger-spool), spool_after (1: seconds a write
                  may hang before the calls behind it are spooled);
                  keep_calls_days (raw call and attempt rows older than this many days are
                  pruned in the background, with their minute rollups; the hour and day rollups
                  every aggregate reads are kept; unset: keep every row)
``[providers.X]`` a built-in provider's overrides (api_key, base_url) or a new provider
                  (dialect + base_url + api_key; models = [...] and embedding_models = [...]
                  optional, listed by /v1/models)
``[aliases]``     name = "provider/model" or {strategy = "fallback", targets = [...]}
``[prices.X]``    per-provider prices per million tokens: {"model" = {input=..., output=...}}
``[cache]``       opt-in response caching (fareway.cache.settings: enabled, url, ttl, max_ttl,
                  max_bytes, max_entry_bytes, coalesce, prefix, timeout, embeddings_model,
                  semantic_max_entries, [cache.share]); an alias table may carry
                  ``cache = {mode, ttl, semantic, embeddings_model}``
``[experiments.NAME]`` an A/B experiment with an LLM judge on one model name (fareway.experiments.settings)
``[keys]``        the provider-key vault's master key and key rest times (fareway.keys.settings)
``[limits]``      where budget and rate-limit reservations live and how they are estimated
                  (fareway.limits.settings)
``[shared]``      provider health and experiment counters shared by gateways on one Redis
                  (fareway.router.shared_settings, docs/shared-state.md)
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fareway.cache.settings import KEYS as CACHE_KEYS
from fareway.cache.settings import CacheSettings, CacheSettingsError
from fareway.cache.settings import parse as parse_cache
from fareway.config_schema import (
    SECTIONS,
    ConfigError,
    Section,
    check_document,
    get_bool,
    get_float,
    get_int,
    get_str,
    suggest,
)
from fareway.config_state import resolve_state_dir
from fareway.dashboard.settings import KEYS as DASHBOARD_KEYS
from fareway.dashboard.settings import DashboardSettings, DashboardSettingsError
from fareway.dashboard.settings import parse as parse_dashboard
from fareway.experiments.settings import KEYS as EXPERIMENT_KEYS
from fareway.experiments.settings import ExperimentSettings, SettingsError
from fareway.experiments.settings import parse_section as parse_experiments
from fareway.keys.settings import KEYS as KEY_SETTINGS_KEYS
from fareway.keys.settings import KeySettings, KeySettingsError
from fareway.keys.settings import parse as parse_key_settings
from fareway.limits.settings import KEYS as LIMIT_SETTINGS_KEYS
from fareway.limits.settings import LimitSettings, LimitSettingsError
from fareway.limits.settings import parse as parse_limit_settings
from fareway.providers.quirks import Quirks
from fareway.providers.registry import BUILTIN_PROVIDERS, ProviderSpec
from fareway.router.shared_settings import KEYS as SHARED_SETTINGS_KEYS
from fareway.router.shared_settings import SharedSettings, SharedSettingsError
from fareway.router.shared_settings import parse as parse_shared_settings

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, env: dict[str, str] | os._Environ[str] | None = None) -> str | None:
    """Replace ``${VAR}`` references.  A reference to an unset variable makes the whole value None
    (the secret is absent), never the literal text."""
    env = os.environ if env is None else env
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        v = env.get(m.group(1))
        if v is None or v == "":
            missing = True
            return ""
        return v

    out = _ENV_REF.sub(sub, value)
    return None if missing else out


def unset_refs(value: str, env: Any) -> list[str]:
    """The ``${VAR}`` references in ``value`` whose variable is unset or empty."""
    return [m.group(1) for m in _ENV_REF.finditer(value) if not env.get(m.group(1))]


def require_env(value: str, env: Any, where: str) -> str:
    """``value`` with its ``${VAR}`` references replaced; a reference to an unset variable is a
    start-up error naming it (a missing secret never silently leaves a provider unconfigured,
    nor turns a production config into the demo)."""
    missing = unset_refs(value, env)
    if missing:
        names = ", ".join(f"${{{n}}}" for n in missing)
        raise ConfigError(
            f"{where} refers to {names}, which is not set in the environment: set it, or remove the reference"
        )
    out = expand_env(value, env)
    assert out is not None
    return out


@dataclass(slots=True)
class Timeouts:
    connect: float = 5.0
    first_token: float = 30.0
    idle: float = 30.0
    total: float = 600.0
    stream_upstream: bool = True
    """Read non-streamed calls from the upstream as streams, so ``first_token`` and ``idle`` apply
    to them too (a stalled provider is left after ``first_token``, not ``total``).  False: a
    non-streamed call is sent as one and bounded by ``total`` only (less CPU per call)."""


@dataclass(slots=True)
class ServerLimits:
    """The ``[server]`` limits (see the module docstring)."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_headers: int = 100
    max_header_bytes: int = 64 * 1024
    max_connections: int = 0
    drain_seconds: float = 30.0
    max_response_bytes: int = 32 * 1024 * 1024


_SERVER_KEYS = {
    "host",
    "port",
    "max_body_bytes",
    "state_dir",
    "default_model",
    *ServerLimits.__dataclass_fields__,
    "workers",
}


_PROVIDER_KEYS = {
    "dialect",
    "base_url",
    "api_key",
    "models",
    "embedding_models",
    "unsupported_params",
    "unsupported_policy",
}
_ALIAS_KEYS = {"strategy", "targets", "weights", "hedge_ms", "max_cost_usd", "cache"}
STRATEGIES = ("fallback", "race", "hedge", "split", "single")
"""The alias strategies (fareway.router.policies.STRATEGIES)."""
_LEDGER_KEYS = {
    "url",
    "batch_size",
    "max_delay",
    "enabled",
    "writer",
    "writer_cpus",
    "schema",
    "connect_timeout",
    "statement_timeout",
    "close_timeout",
    "spool_path",
    "spool_after",
    "keep_calls_days",
}

# The registry of sections (fareway.config_schema): a new section joins with one line.
SECTIONS["server"] = Section(keys=_SERVER_KEYS)
SECTIONS["timeouts"] = Section(keys={"connect", "first_token", "idle", "total", "stream_upstream"})
SECTIONS["defaults"] = Section(keys={"max_tokens"})
SECTIONS["ledger"] = Section(keys=_LEDGER_KEYS)
SECTIONS["providers"] = Section(named=True, entry_keys=_PROVIDER_KEYS)
SECTIONS["aliases"] = Section(named=True, entry_keys=_ALIAS_KEYS, scalar_entries=True)
SECTIONS["prices"] = Section(named=True)  # model tables checked by the price book at start-up
SECTIONS["cache"] = Section(keys=CACHE_KEYS)
SECTIONS["experiments"] = Section(named=True, entry_keys=EXPERIMENT_KEYS)
SECTIONS["keys"] = Section(keys=KEY_SETTINGS_KEYS)
SECTIONS["limits"] = Section(keys=LIMIT_SETTINGS_KEYS)
SECTIONS["dashboard"] = Section(keys=DASHBOARD_KEYS)
SECTIONS["shared"] = Section(keys=SHARED_SETTINGS_KEYS)


@dataclass(slots=True)
class ProviderConfig:
    spec: ProviderSpec
    api_key: str | None
    models: list[str] = field(default_factory=list)
    """Models a custom provider declares (for /v1/models); any model is accepted by address."""
    embedding_models: list[str] = field(default_factory=list)
    """Embedding models it declares: listed by /v1/models with ``kind: "embedding"``."""


@dataclass(slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 8 * 1024 * 1024
    state_dir: Path = field(default_factory=lambda: resolve_state_dir(None, None, {})[0])
    state_source: str = "the per-user data directory"
    """Where ``state_dir`` came from (FAREWAY_HOME, [server] state_dir, ...): the CLI says it."""
    default_model: str | None = None
    """Where a request for a model nothing routes goes (None: such a request is a 404)."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: ServerLimits = field(default_factory=ServerLimits)
    default_max_tokens: int = 4096
    ledger_url: str | None = None
    ledger_enabled: bool = True
    ledger_writer: str = "auto"
    ledger_writer_cpus: list[int] | None = None
    ledger_batch_size: int = 500
    ledger_max_delay: float = 0.05
    ledger_schema: str = "fareway"
    ledger_connect_timeout: float = 5.0
    ledger_statement_timeout: float = 10.0
    ledger_close_timeout: float = 5.0
    ledger_spool_path: Path | None = None
    ledger_spool_after: float = 1.0
    ledger_keep_calls_days: float | None = None
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    aliases: dict[str, Any] = field(default_factory=dict)
    prices: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    cache: CacheSettings = field(default_factory=CacheSettings)
    experiments: dict[str, ExperimentSettings] = field(default_factory=dict)
    """``[experiments.NAME]``: A/B experiments with an LLM judge (fareway.experiments)."""
    key_settings: KeySettings = field(default_factory=KeySettings)
    limit_settings: LimitSettings = field(default_factory=LimitSettings)
    shared: SharedSettings = field(
        default_factory=lambda: SharedSettings(redis_url=LimitSettings().redis_url)
    )
    """``[shared]``: provider health and experiment counters on Redis (fareway.router.shared_settings)."""
    master_key: str | None = None
    demo: bool = False
    source: str = "<defaults>"
    workers: int = 0
    """``[server] workers``: gateway processes for ``fareway serve`` (0: auto, see cli)."""
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)

    @property
    def ledger_spool(self) -> Path:
        """Where the Postgres ledger spools batches the database cannot take now."""
        return self.ledger_spool_path or self.state_dir / "ledger-spool"

    @property
    def ledger_file(self) -> Path:
        """The default SQLite ledger (the server writes it, `fareway usage`/`logs` read it)."""
        return self.state_dir / "fareway.db"

    def sessions_url(self) -> str | None:
        """The Redis of dashboard sessions (``[dashboard] sessions``), None for memory."""
        d = self.dashboard
        if d.sessions == "memory":
            return None
        ls = self.limit_settings
        url = d.redis_url or (ls.redis_url if ls.store == "redis" else None) or self.cache.url
        if url is None and d.sessions == "redis":
            raise ConfigError(
                '[dashboard] sessions = "redis" needs a Redis url: [dashboard] redis_url, '
                '[limits] redis_url (with store = "redis") or [cache] url'
            )
        return url

    def keyed_providers(self) -> set[str]:
        return {name for name, p in self.providers.items() if p.api_key}

    def with_demo(self, sim_url: str) -> Config:
        """Point every built-in provider at the simulator (``sim_url`` with a path per provider)."""
        providers = dict(self.providers)
        for name, spec in BUILTIN_PROVIDERS.items():
            if spec.dialect == "openai":
                base = f"{sim_url}/{name}/v1"
            elif spec.dialect == "anthropic":
                base = f"{sim_url}/{name}"
            else:
                base = f"{sim_url}/{name}/v1beta"
            providers[name] = ProviderConfig(spec.with_base_url(base), api_key="demo-key")
        return replace(self, providers=providers, demo=True)


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _provider(name: str, table: dict[str, Any], env: Any) -> ProviderConfig:
    base = BUILTIN_PROVIDERS.get(name)
    dialect = table.get("dialect", base.dialect if base else None)
    if dialect not in ("openai", "anthropic", "gemini"):
        raise ConfigError(
            f'[providers.{name}] needs dialect = "openai", "anthropic" or "gemini", not {dialect!r}'
            + suggest(str(dialect), ("openai", "anthropic", "gemini"))
        )
    base_url = table.get("base_url", base.base_url if base else None)
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"[providers.{name}] needs base_url = an http(s) URL")
    base_url = require_env(base_url, env, f"[providers.{name}] base_url")
    if base is not None and base.dialect == dialect:
        spec = base.with_base_url(base_url)
    else:
        auth_header = {"anthropic": "x-api-key", "gemini": "x-goog-api-key"}.get(dialect, "authorization")
        spec = ProviderSpec(
            name,
            dialect,
            base_url.rstrip("/"),
            key_env=None,
            auth_header=auth_header,
            auth_scheme="Bearer" if auth_header == "authorization" else None,
            builtin=False,
        )
    if "unsupported_params" in table or "unsupported_policy" in table:
        q = spec.quirks
        spec = replace(
            spec,
            quirks=Quirks(
                **{
                    **{f: getattr(q, f) for f in q.__dataclass_fields__},
                    "unsupported_params": frozenset(table.get("unsupported_params", q.unsupported_params)),
                    "unsupported_policy": table.get("unsupported_policy", q.unsupported_policy),
                }
            ),
        )
    key: str | None = None
    raw_key = table.get("api_key")
    if raw_key is not None and not isinstance(raw_key, str):
        raise ConfigError(f'[providers.{name}] api_key must be a string such as "${{ENV_VAR}}"')
    if isinstance(raw_key, str):
        key = require_env(raw_key, env, f"[providers.{name}] api_key") or None
    elif spec.key_env:
        key = env.get(spec.key_env) or None
    models = table.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ConfigError(f"[providers.{name}] models must be a list of strings")
    embedding_models = table.get("embedding_models", [])
    if not isinstance(embedding_models, list) or not all(isinstance(m, str) for m in embedding_models):
        raise ConfigError(f"[providers.{name}] embedding_models must be a list of strings")
    return ProviderConfig(spec, key, list(models), list(embedding_models))


def _limits(server: dict[str, Any]) -> ServerLimits:
    """The [server] limits, each checked: a number of the right kind and in range."""
    out = ServerLimits()
    for name, f in ServerLimits.__dataclass_fields__.items():
        if name not in server:
            continue
        v = server[name]
        if isinstance(f.default, int):
            ok = isinstance(v, int) and not isinstance(v, bool)
            kind = "an integer"
        else:
            ok = isinstance(v, int | float) and not isinstance(v, bool)
            kind = "a number of seconds"
        least = 0 if name in ("max_connections", "drain_seconds") else 1 if kind == "an integer" else 0.001
        if not ok or not v >= least:
            raise ConfigError(f"[server] {name} must be {kind} of at least {least:g}, not {v!r}")
        setattr(out, name, v if kind == "an integer" else float(v))
    return out


def load_config(path: str | Path | None = None, env: Any = None) -> Config:
    """Load ``path`` (or only defaults and environment variables when None).

    Any mistake (an unknown key, a wrong type, an alias that cannot route) is a ConfigError whose
    message starts with the file's name and names the key."""
    try:
        return _load_config(path, env)
    except ConfigError as exc:
        if path is not None and not exc.message.startswith(str(path)):
            raise ConfigError(f"{path}: {exc.message}") from None
        raise


def _load_config(path: str | Path | None, env: Any) -> Config:
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    cfg = Config()
    file: Path | None = None
    if path is not None:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text("utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {file}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {file} cannot be read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from exc
        cfg.source = str(file)
    check_document(data)

    server = _section(data, "server")
    cfg.limits = _limits(server)
    cfg.host = get_str(server, "host", cfg.host, "[server]")
    cfg.port = get_int(server, "port", cfg.port, "[server]", least=0)
    if cfg.port > 65535:
        raise ConfigError(f"[server] port must be at most 65535, not {cfg.port}")
    cfg.max_body_bytes = get_int(server, "max_body_bytes", cfg.max_body_bytes, "[server]", least=1)
    state_dir = server.get("state_dir")
    if state_dir is not None and (not isinstance(state_dir, str) or not state_dir):
        raise ConfigError(f"[server] state_dir must be a path (a string), not {state_dir!r}")
    cfg.state_dir, cfg.state_source = resolve_state_dir(state_dir, file, env)
    default_model = server.get("default_model")
    if default_model is not None and (not isinstance(default_model, str) or not default_model):
        raise ConfigError("[server] default_model must be a model name (a string)")
    cfg.default_model = default_model
    t = _section(data, "timeouts")
    cfg.timeouts = Timeouts(
        **{
            k: get_float(t, k, getattr(cfg.timeouts, k), "[timeouts]", above=0)
            for k in ("connect", "first_token", "idle", "total")
        },
        stream_upstream=get_bool(t, "stream_upstream", True, "[timeouts]"),
    )
    cfg.default_max_tokens = get_int(
        _section(data, "defaults"), "max_tokens", cfg.default_max_tokens, "[defaults]", least=1
    )
    ledger = _section(data, "ledger")
    url = ledger.get("url", env.get("FAREWAY_LEDGER_URL"))
    if url is not None and not isinstance(url, str):
        raise ConfigError(f"[ledger] url must be a string, not {url!r}")
    cfg.ledger_url = require_env(url, env, "[ledger] url") if isinstance(url, str) else None
    cfg.ledger_batch_size = get_int(ledger, "batch_size", cfg.ledger_batch_size, "[ledger]", least=1)
    cfg.ledger_max_delay = get_float(ledger, "max_delay", cfg.ledger_max_delay, "[ledger]")
    if not cfg.ledger_max_delay >= 0:
        raise ConfigError("[ledger] max_delay must be at least 0")
    cfg.ledger_enabled = get_bool(ledger, "enabled", True, "[ledger]")
    cfg.ledger_writer = get_str(ledger, "writer", cfg.ledger_writer, "[ledger]")
    if cfg.ledger_writer not in ("auto", "process", "thread"):
        raise ConfigError(
            '[ledger] writer must be "auto", "process" or "thread"'
            + suggest(cfg.ledger_writer, ("auto", "process", "thread"))
        )
    cpus = ledger.get("writer_cpus")
    if cpus is not None:
        if not isinstance(cpus, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus
        ):
            raise ConfigError("[ledger] writer_cpus must be a list of CPU numbers")
        cfg.ledger_writer_cpus = list(cpus)
    cfg.ledger_schema = get_str(ledger, "schema", cfg.ledger_schema, "[ledger]")
    for name in ("connect_timeout", "statement_timeout", "close_timeout", "spool_after"):
        value = ledger.get(name, getattr(cfg, f"ledger_{name}"))
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"[ledger] {name} must be a number of seconds above 0, not {value!r}")
        setattr(cfg, f"ledger_{name}", float(value))
    if "spool_path" in ledger:
        cfg.ledger_spool_path = Path(get_str(ledger, "spool_path", "", "[ledger]"))
    keep = ledger.get("keep_calls_days")
    if keep is not None:
        if isinstance(keep, bool) or not isinstance(keep, int | float) or not keep > 0:
            raise ConfigError("[ledger] keep_calls_days must be a number of days above 0")
        cfg.ledger_keep_calls_days = float(keep)

    tables = _section(data, "providers")
    for name in BUILTIN_PROVIDERS:
        cfg.providers[name] = _provider(name, tables.get(name, {}), env)
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"[providers.{name}] must be a table")
        if name not in BUILTIN_PROVIDERS:
            if "/" in name:
                raise ConfigError(f"provider name {name!r} must not contain '/'")
            cfg.providers[name] = _provider(name, table, env)

    cfg.aliases = _section(data, "aliases")
    for name, spec in cfg.aliases.items():
        check_alias(name, spec, cfg.providers)
    cfg.prices = _section(data, "prices")
    for provider, models in cfg.prices.items():
        for model, table in models.items():
            if not isinstance(table, dict):
                raise ConfigError(
                    f'[prices.{provider}] "{model}" must be a table {{input = ..., output = ...}}'
                )
    cache = dict(_section(data, "cache"))
    if isinstance(cache.get("url"), str):  # a password may be given as ${VAR}
        cache["url"] = require_env(cache["url"], env, "[cache] url")
    try:
        cfg.cache = parse_cache(cache, cfg.aliases)
    except CacheSettingsError as exc:
        raise ConfigError(str(exc)) from None
    try:
        cfg.experiments = parse_experiments(data.get("experiments"))
    except SettingsError as exc:
        raise ConfigError(str(exc)) from exc
    keys_section = dict(_section(data, "keys"))
    if isinstance(keys_section.get("vault_key"), str):
        keys_section["vault_key"] = require_env(keys_section["vault_key"], env, "[keys] vault_key")
    if isinstance(keys_section.get("database_url"), str):  # a password may be given as ${VAR}
        keys_section["database_url"] = require_env(keys_section["database_url"], env, "[keys] database_url")
    limits_section = dict(_section(data, "limits"))
    if isinstance(limits_section.get("redis_url"), str):  # a password may be given as ${VAR}
        limits_section["redis_url"] = require_env(limits_section["redis_url"], env, "[limits] redis_url")
    try:
        cfg.key_settings = parse_key_settings(keys_section, env)
        cfg.limit_settings = parse_limit_settings(limits_section)
    except (KeySettingsError, LimitSettingsError) as exc:
        raise ConfigError(str(exc)) from exc
    cfg.workers = get_int(server, "workers", 0, "[server]", least=0)
    dashboard_section = dict(_section(data, "dashboard"))
    if isinstance(dashboard_section.get("redis_url"), str):  # a password may be given as ${VAR}
        dashboard_section["redis_url"] = require_env(
            dashboard_section["redis_url"], env, "[dashboard] redis_url"
        )
    try:
        cfg.dashboard = parse_dashboard(dashboard_section)
    except DashboardSettingsError as exc:
        raise ConfigError(str(exc)) from exc
    cfg.sessions_url()  # sessions = "redis" without any Redis url fails here
    shared_section = dict(_section(data, "shared"))
    if isinstance(shared_section.get("redis_url"), str):  # a password may be given as ${VAR}
        shared_section["redis_url"] = require_env(shared_section["redis_url"], env, "[shared] redis_url")
    try:
        cfg.shared = parse_shared_settings(shared_section, cfg.limit_settings.redis_url)
    except SharedSettingsError as exc:
        raise ConfigError(str(exc)) from exc
    master = data.get("master_key")
    cfg.master_key = (
        require_env(master, env, "master_key")
        if isinstance(master, str)
        else env.get("FAREWAY_MASTER_KEY") or None
    )
    return cfg


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_alias(name: str, spec: Any, providers: dict[str, ProviderConfig]) -> None:
    """An alias's form, strategy and targets: each target is ``provider/model`` on a provider this
    config knows (the checks fareway.router.policies would otherwise make at request time)."""
    where = f"[aliases] {name}"
    if isinstance(spec, str):
        targets: Any = [spec]
    elif isinstance(spec, dict):
        strategy = spec.get("strategy", "fallback")
        if strategy not in STRATEGIES:
            raise ConfigError(
                f'{where}: unknown strategy "{strategy}"{suggest(str(strategy), STRATEGIES)}'
                f" (one of {', '.join(STRATEGIES)})"
            )
        targets = spec.get("targets")
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not targets:
            raise ConfigError(f'{where} needs targets = ["provider/model", ...]')
        weights = spec.get("weights")
        if weights is not None and (
            not isinstance(weights, list)
            or len(weights) != len(targets)
            or not all(_number(w) and w >= 0 for w in weights)
            or not any(w > 0 for w in weights)
        ):
            raise ConfigError(f"{where}: weights must be one non-negative number per target, not all zero")
        for key in ("hedge_ms", "max_cost_usd"):
            if key in spec and (not _number(spec[key]) or spec[key] < 0):
                raise ConfigError(f"{where}: {key} must be a non-negative number, not {spec[key]!r}")
    else:
        raise ConfigError(f'{where} must be "provider/model" or a table {{strategy = ..., targets = [...]}}')
    for t in targets:
        if not isinstance(t, str):
            raise ConfigError(f"{where}: target {t!r} must be a string")
        provider, _, model = t.partition("/")
        if not model:
            raise ConfigError(f'{where}: target "{t}" must be "provider/model"{_pin_hint(t, providers)}')
        if provider not in providers:
            raise ConfigError(
                f'{where}: target "{t}" names an unknown provider "{provider}"{suggest(provider, providers)}'
            )


def _pin_hint(model: str, providers: dict[str, ProviderConfig]) -> str:
    from fareway.providers.catalog import load_builtin_catalog

    keys = sorted(o.key for o in load_builtin_catalog() if o.model == model and o.provider in providers)
    return f'; did you mean "{keys[0]}"?' if keys else ""


def unroutable_aliases(cfg: Config) -> list[str]:
    """Aliases none of whose targets is on a provider with a key (they could only fail)."""
    keyed = cfg.keyed_providers()
    out = []
    for name, spec in cfg.aliases.items():
        targets = [spec] if isinstance(spec, str) else spec.get("targets", [])
        targets = [targets] if isinstance(targets, str) else targets
        if not any(str(t).partition("/")[0] in keyed for t in targets):
            out.append(name)
    return out
