"""The ``[shared]`` config section: routing state several gateways share on one Redis.  Imports
nothing of Fareway, so config may read it.  See docs/shared-state.md.

::

    [shared]
    health = "local"          # or "redis": cooldowns (429 Retry-After, quota walls), open circuits
                              # and latency/error numbers shared by every gateway on that Redis
    experiments = "local"     # or "redis": experiment counters and judge spend counted together
    # redis_url = "redis://127.0.0.1:6379/0"   # unset: [limits] redis_url
    prefix = "fareway:shared:"
    timeout = 0.25            # seconds a Redis operation may take (never on a call's path)
    sync_interval = 1.0       # seconds between polls of the shared state (pub/sub pushes sooner)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SharedSettingsError(ValueError):
    """A bad ``[shared]`` key or value (config turns it into a ConfigError)."""


@dataclass(frozen=True, slots=True)
class SharedSettings:
    health: str = "local"
    experiments: str = "local"
    redis_url: str = ""
    """Empty: the config fills in ``[limits] redis_url``."""
    prefix: str = "fareway:shared:"
    timeout: float = 0.25
    sync_interval: float = 1.0

    @property
    def any_redis(self) -> bool:
        return "redis" in (self.health, self.experiments)


_CHOICES = {"health": ("local", "redis"), "experiments": ("local", "redis")}


def parse(section: dict[str, Any], default_url: str) -> SharedSettings:
    """The section's settings; ``redis_url`` falls back to ``default_url`` ([limits] redis_url)."""
    fields = SharedSettings.__dataclass_fields__
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise SharedSettingsError(f"[shared] has unknown key(s): {', '.join(unknown)}")
    out: dict[str, Any] = {"redis_url": default_url}
    for name, value in section.items():
        default = fields[name].default
        if isinstance(default, str):
            if not isinstance(value, str) or not value:
                raise SharedSettingsError(f"[shared] {name} must be a non-empty string, not {value!r}")
            if name in _CHOICES and value not in _CHOICES[name]:
                raise SharedSettingsError(
                    f"[shared] {name} must be one of {', '.join(_CHOICES[name])}, not {value!r}"
                )
            if name == "redis_url" and not value.startswith(("redis://", "rediss://", "unix://")):
                raise SharedSettingsError("[shared] redis_url must be a redis://, rediss:// or unix:// URL")
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0.01:
                raise SharedSettingsError(f"[shared] {name} must be a number of seconds of at least 0.01")
            value = float(value)
        out[name] = value
    return SharedSettings(**out)


KEYS = frozenset(SharedSettings.__dataclass_fields__)
"""The section's keys (for the config's registry of sections)."""
