"""The ``[limits]`` config section (budgets and rate limits; the limits themselves are set per key
and per team with the CLI or the admin API).  Imports nothing of Fareway, so config may read it.

::

    [limits]
    store = "memory"           # or "redis": reservations shared by every gateway on that Redis
    redis_url = "redis://127.0.0.1:6379/0"
    redis_prefix = "fareway:"
    redis_timeout = 1.0        # seconds, each script call
    output_tokens = 4096       # output reserved for a request that sets no max_tokens
    prompt_margin = 1.2        # prompt tokens (counted offline, o200k) times this, for tokenizers
                               # that count more than o200k (Claude, Gemini)
    unpriced = "refuse"        # a budgeted call no price is known for: "refuse" (402) or "admit"
    on_store_error = "refuse"  # the store unreachable: "refuse" (503) or "admit" (unmetered)
    hold_seconds = 0           # how long a reservation holds if its gateway dies (0: the total
                               # timeout plus 60 s)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class LimitSettingsError(ValueError):
    """A bad ``[limits]`` key or value (config turns it into a ConfigError)."""


@dataclass(frozen=True, slots=True)
class LimitSettings:
    store: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "fareway:"
    redis_timeout: float = 1.0
    output_tokens: int = 4096
    prompt_margin: float = 1.2
    unpriced: str = "refuse"
    on_store_error: str = "refuse"
    hold_seconds: float = 0.0


_CHOICES = {
    "store": ("memory", "redis"),
    "unpriced": ("refuse", "admit"),
    "on_store_error": ("refuse", "admit"),
}


def parse(section: dict[str, Any]) -> LimitSettings:
    fields = LimitSettings.__dataclass_fields__
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise LimitSettingsError(f"[limits] has unknown key(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, value in section.items():
        default = fields[name].default
        if isinstance(default, str):
            if not isinstance(value, str) or not value:
                raise LimitSettingsError(f"[limits] {name} must be a string")
            if name in _CHOICES and value not in _CHOICES[name]:
                raise LimitSettingsError(
                    f"[limits] {name} must be one of {', '.join(_CHOICES[name])}, not {value!r}"
                )
            if name == "redis_url" and not value.startswith(("redis://", "rediss://", "unix://")):
                raise LimitSettingsError("[limits] redis_url must be a redis://, rediss:// or unix:// URL")
        elif isinstance(default, int) and not isinstance(default, bool) and not isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LimitSettingsError(f"[limits] {name} must be a whole number of at least 1")
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise LimitSettingsError(f"[limits] {name} must be a number")
            least = 1.0 if name == "prompt_margin" else 0.0 if name == "hold_seconds" else 0.001
            if not value >= least:
                raise LimitSettingsError(f"[limits] {name} must be at least {least:g}")
            value = float(value)
        out[name] = value
    return LimitSettings(**out)


KEYS = frozenset(LimitSettings.__dataclass_fields__)
"""The section's keys (for the config's registry of sections)."""
