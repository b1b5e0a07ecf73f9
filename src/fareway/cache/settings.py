"""The ``[cache]`` section and the per-alias ``cache = {...}`` defaults, parsed and checked.

::

    [cache]
    enabled = true              # false: no lookups, no stores (requests that ask get `bypass`)
    url = "redis://127.0.0.1:6379/0"   # unset: the in-memory store of this process
    ttl = 3600                  # seconds an entry lives when the request gives no x-fareway-cache-ttl
    max_ttl = 86400             # a requested TTL above this is cut to it
    max_bytes = 67108864        # the memory store's byte budget (least recently used entries go first)
    max_entry_bytes = 1048576   # an answer bigger than this is not stored
    coalesce = true             # identical concurrent opted-in requests make one upstream call
    prefix = "fareway:cache:"   # Redis key prefix
    timeout = 0.25              # seconds a Redis operation may take before it counts as a miss
    embeddings_model = "text-embedding-3-small"   # what semantic matching embeds with (any routable
                                # embedding model: a bare id, provider/model or an alias)
    semantic_max_entries = 256  # vectors kept per (tenant, context, anchors) bucket (oldest go first)

    [cache.share]               # keys (by key id) that share one namespace; every other key has its own
    team-a = ["key_1a2b3c4d5e6f", "key_abcdef012345"]

    [aliases.fast]
    strategy = "fallback"
    targets = ["groq/llama-3.1-8b-instant", "cerebras/llama3.1-8b"]
    cache = { mode = "use", ttl = 600 }   # the default for requests naming this alias
    # cache = { semantic = 0.92 }         # also answer paraphrases (cosine >= 0.92; see cache.semantic)
    # cache = { semantic = 0.92, embeddings_model = "mistral/mistral-embed" }   # per-alias model

This module imports nothing of the project: ``fareway.config`` calls :func:`parse` and turns its
:class:`CacheSettingsError` (a ``ValueError`` that names the key) into a ``ConfigError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["use", "refresh", "bypass"]
MODES: tuple[Mode, ...] = ("use", "refresh", "bypass")

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KEYS = {
    "enabled",
    "url",
    "ttl",
    "max_ttl",
    "max_bytes",
    "max_entry_bytes",
    "coalesce",
    "prefix",
    "timeout",
    "share",
    "embeddings_model",
    "semantic_max_entries",
}
_ALIAS_KEYS = {"mode", "ttl", "semantic", "embeddings_model"}
KEYS = frozenset(_KEYS)
"""The keys of ``[cache]`` (fareway.config checks a file against them)."""


class CacheSettingsError(ValueError):
    """A wrong ``[cache]`` key or value; the message names it."""


@dataclass(frozen=True, slots=True)
class AliasCache:
    """``cache = {...}`` of one alias: what a request naming it gets when it says nothing itself."""

    mode: Mode = "bypass"
    ttl: int | None = None
    semantic: float | None = None
    """The cosine similarity at or above which a paraphrase is a hit (None: exact matching only)."""
    embeddings_model: str | None = None
    """The alias's own embeddings model (None: ``[cache] embeddings_model``)."""


@dataclass(frozen=True, slots=True)
class CacheSettings:
    enabled: bool = True
    url: str | None = None
    ttl: int = 3600
    max_ttl: int = 86400
    max_bytes: int = 64 * 1024 * 1024
    max_entry_bytes: int = 1024 * 1024
    coalesce: bool = True
    prefix: str = "fareway:cache:"
    timeout: float = 0.25
    embeddings_model: str | None = None
    """The embeddings model semantic matching uses when an alias names none."""
    semantic_max_entries: int = 256
    """Vectors kept per semantic bucket (the brute-force search is bounded by it)."""
    share: Mapping[str, str] = field(default_factory=dict)
    """key id -> the group whose namespace it shares (from ``[cache.share]``)."""
    aliases: Mapping[str, AliasCache] = field(default_factory=dict)
    """alias name -> its default (only aliases that declare ``cache``)."""

    def tenant(self, key_id: str) -> str:
        """The namespace of ``key_id``'s entries: its group's, or its own."""
        group = self.share.get(key_id)
        return f"g:{group}" if group is not None else f"k:{key_id}"

    def semantic(self, alias: str) -> tuple[float, str] | None:
        """(threshold, embeddings model) when requests naming ``alias`` may match semantically."""
        spec = self.aliases.get(alias)
        if spec is None or spec.semantic is None:
            return None
        model = spec.embeddings_model or self.embeddings_model
        return None if model is None else (spec.semantic, model)


_DEFAULT = CacheSettings()


def _int(value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise CacheSettingsError(f"{name} must be an integer of at least {least}, not {value!r}")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise CacheSettingsError(f"{name} must be true or false, not {value!r}")
    return value


def _share(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise CacheSettingsError("[cache] share must be a table: group = [key ids]")
    out: dict[str, str] = {}
    for group, keys in value.items():
        if not _NAME.match(group):
            raise CacheSettingsError(
                f"[cache.share] group name {group!r} must be 1-64 letters, digits, '_', '-' or '.'"
            )
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise CacheSettingsError(f"[cache.share] {group} must be a list of key ids")
        for k in keys:
            if k in out and out[k] != group:
                raise CacheSettingsError(f"[cache.share] key {k!r} is in two groups ({out[k]}, {group})")
            out[k] = group
    return out


def _alias(name: str, value: Any, max_ttl: int, default_model: str | None) -> AliasCache:
    where = f"[aliases.{name}] cache"
    if not isinstance(value, dict):
        raise CacheSettingsError(f'{where} must be a table, e.g. {{ mode = "use", ttl = 600 }}')
    unknown = sorted(set(value) - _ALIAS_KEYS)
    if unknown:
        raise CacheSettingsError(
            f"{where} has unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(_ALIAS_KEYS))})"
        )
    mode = value.get("mode", "use")
    if mode not in MODES:
        raise CacheSettingsError(f"{where} mode must be one of {', '.join(MODES)}, not {mode!r}")
    ttl = value.get("ttl")
    if ttl is not None:
        ttl = min(_int(ttl, f"{where} ttl", 1), max_ttl)
    semantic = value.get("semantic")
    if semantic is not None and (
        isinstance(semantic, bool) or not isinstance(semantic, int | float) or not 0 < semantic <= 1
    ):
        raise CacheSettingsError(f"{where} semantic must be a cosine similarity in (0, 1], not {semantic!r}")
    model = value.get("embeddings_model")
    if model is not None and (not isinstance(model, str) or not model):
        raise CacheSettingsError(f"{where} embeddings_model must be a non-empty string")
    if semantic is None and model is not None:
        raise CacheSettingsError(f"{where} embeddings_model is set but semantic is not")
    if semantic is not None and model is None and default_model is None:
        raise CacheSettingsError(
            f"{where} semantic needs an embeddings model: set embeddings_model there or in [cache]"
        )
    return AliasCache(mode, ttl, None if semantic is None else float(semantic), model)


def parse(section: Mapping[str, Any], aliases: Mapping[str, Any] | None = None) -> CacheSettings:
    """The ``[cache]`` table (``{}`` when absent) and the ``cache`` entries of ``[aliases]``."""
    unknown = sorted(set(section) - _KEYS)
    if unknown:
        raise CacheSettingsError(f"[cache] has unknown key(s): {', '.join(unknown)}")
    kw: dict[str, Any] = {}
    if "enabled" in section:
        kw["enabled"] = _bool(section["enabled"], "[cache] enabled")
    if "coalesce" in section:
        kw["coalesce"] = _bool(section["coalesce"], "[cache] coalesce")
    for name, least in (("ttl", 1), ("max_ttl", 1), ("max_bytes", 1024), ("max_entry_bytes", 1024)):
        if name in section:
            kw[name] = _int(section[name], f"[cache] {name}", least)
    url = section.get("url")
    if url is not None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise CacheSettingsError(
                f'[cache] url must be "redis://...", "rediss://..." or "unix://...", not {url!r}'
            )
        kw["url"] = url
    if "prefix" in section:
        prefix = section["prefix"]
        if not isinstance(prefix, str) or not prefix:
            raise CacheSettingsError("[cache] prefix must be a non-empty string")
        kw["prefix"] = prefix
    if "timeout" in section:
        t = section["timeout"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not t > 0:
            raise CacheSettingsError(f"[cache] timeout must be a number of seconds above 0, not {t!r}")
        kw["timeout"] = float(t)
    if "share" in section:
        kw["share"] = _share(section["share"])
    if "embeddings_model" in section:
        model = section["embeddings_model"]
        if not isinstance(model, str) or not model:
            raise CacheSettingsError("[cache] embeddings_model must be a non-empty string")
        kw["embeddings_model"] = model
    if "semantic_max_entries" in section:
        kw["semantic_max_entries"] = _int(section["semantic_max_entries"], "[cache] semantic_max_entries", 1)
    max_ttl = kw.get("max_ttl", _DEFAULT.max_ttl)
    if "ttl" in kw and kw["ttl"] > max_ttl:
        raise CacheSettingsError(f"[cache] ttl ({kw['ttl']}) must not exceed max_ttl ({max_ttl})")
    kw.setdefault("ttl", min(_DEFAULT.ttl, max_ttl))
    found: dict[str, AliasCache] = {}
    for name, spec in (aliases or {}).items():
        if isinstance(spec, dict) and "cache" in spec:
            found[name] = _alias(name, spec["cache"], max_ttl, kw.get("embeddings_model"))
    kw["aliases"] = found
    return CacheSettings(**kw)


__all__ = ["MODES", "AliasCache", "CacheSettings", "CacheSettingsError", "Mode", "parse"]
