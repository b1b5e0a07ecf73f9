"""Configuration: a TOML file, secrets by ``${ENV_VAR}`` reference, defaults that need nothing.

Example (the smallest useful config)::

    [providers.local]
    dialect = "openai"
    base_url = "http://127.0.0.1:9100/v1"
    api_key = "${LOCAL_KEY}"

Top-level sections:

``[server]``      host, port, max_body_bytes, state_dir, and the limits that keep slow or hostile
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
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fareway.cache.settings import CacheSettings, CacheSettingsError
from fareway.cache.settings import parse as parse_cache
from fareway.errors import FarewayError
from fareway.providers.quirks import Quirks
from fareway.providers.registry import BUILTIN_PROVIDERS, ProviderSpec

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(FarewayError):
    status = 500
    type = "config_error"


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
}


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
    state_dir: Path = Path("fareway-data")
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
    master_key: str | None = None
    demo: bool = False
    source: str = "<defaults>"

    @property
    def ledger_spool(self) -> Path:
        """Where the Postgres ledger spools batches the database cannot take now."""
        return self.ledger_spool_path or self.state_dir / "ledger-spool"

    @property
    def ledger_file(self) -> Path:
        """The default SQLite ledger (the server writes it, `fareway usage`/`logs` read it)."""
        return self.state_dir / "fareway.db"

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
        raise ConfigError(f'[providers.{name}] needs dialect = "openai", "anthropic" or "gemini"')
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
    """Load ``path`` (or only defaults and environment variables when None)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    cfg = Config()
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text("utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {p}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
        cfg.source = str(p)

    server = _section(data, "server")
    unknown = sorted(set(server) - _SERVER_KEYS)
    if unknown:
        raise ConfigError(f"[server] has unknown key(s): {', '.join(unknown)}")
    cfg.limits = _limits(server)
    cfg.host = str(server.get("host", cfg.host))
    cfg.port = int(server.get("port", cfg.port))
    cfg.max_body_bytes = int(server.get("max_body_bytes", cfg.max_body_bytes))
    cfg.state_dir = Path(str(server.get("state_dir", env.get("FAREWAY_STATE_DIR", cfg.state_dir))))
    default_model = server.get("default_model")
    if default_model is not None and (not isinstance(default_model, str) or not default_model):
        raise ConfigError("[server] default_model must be a model name (a string)")
    cfg.default_model = default_model
    t = _section(data, "timeouts")
    stream_upstream = t.get("stream_upstream", True)
    if not isinstance(stream_upstream, bool):
        raise ConfigError("[timeouts] stream_upstream must be true or false")
    cfg.timeouts = Timeouts(
        **{
            k: float(v) for k, v in t.items() if k in Timeouts.__dataclass_fields__ and k != "stream_upstream"
        },
        stream_upstream=stream_upstream,
    )
    cfg.default_max_tokens = int(_section(data, "defaults").get("max_tokens", cfg.default_max_tokens))
    ledger = _section(data, "ledger")
    url = ledger.get("url", env.get("FAREWAY_LEDGER_URL"))
    cfg.ledger_url = require_env(url, env, "[ledger] url") if isinstance(url, str) else None
    cfg.ledger_batch_size = int(ledger.get("batch_size", cfg.ledger_batch_size))
    cfg.ledger_max_delay = float(ledger.get("max_delay", cfg.ledger_max_delay))
    if cfg.ledger_batch_size < 1 or not cfg.ledger_max_delay >= 0:
        raise ConfigError("[ledger] batch_size must be at least 1 and max_delay at least 0")
    cfg.ledger_enabled = bool(ledger.get("enabled", True))
    cfg.ledger_writer = str(ledger.get("writer", cfg.ledger_writer))
    if cfg.ledger_writer not in ("auto", "process", "thread"):
        raise ConfigError('[ledger] writer must be "auto", "process" or "thread"')
    cpus = ledger.get("writer_cpus")
    if cpus is not None:
        if not isinstance(cpus, list) or not all(isinstance(c, int) and c >= 0 for c in cpus):
            raise ConfigError("[ledger] writer_cpus must be a list of CPU numbers")
        cfg.ledger_writer_cpus = list(cpus)
    cfg.ledger_schema = str(ledger.get("schema", cfg.ledger_schema))
    for name in ("connect_timeout", "statement_timeout", "close_timeout", "spool_after"):
        value = ledger.get(name, getattr(cfg, f"ledger_{name}"))
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"[ledger] {name} must be a number of seconds above 0")
        setattr(cfg, f"ledger_{name}", float(value))
    if "spool_path" in ledger:
        cfg.ledger_spool_path = Path(str(ledger["spool_path"]))
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
    cfg.prices = _section(data, "prices")
    cache = dict(_section(data, "cache"))
    if isinstance(cache.get("url"), str):  # a password may be given as ${VAR}
        url = expand_env(cache["url"], env)
        if url is None:
            raise ConfigError("[cache] url refers to an environment variable that is not set")
        cache["url"] = url
    try:
        cfg.cache = parse_cache(cache, cfg.aliases)
    except CacheSettingsError as exc:
        raise ConfigError(str(exc)) from None
    master = data.get("master_key")
    cfg.master_key = (
        require_env(master, env, "master_key")
        if isinstance(master, str)
        else env.get("FAREWAY_MASTER_KEY") or None
    )
    return cfg
