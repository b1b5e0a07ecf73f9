"""The ``[dashboard]`` config section: where dashboard sessions live.  Imports nothing of
Fareway, so config may read it.

::

    [dashboard]
    sessions = "auto"                  # "memory", "redis", or "auto": Redis when a Redis url is
                                       # configured (this section's redis_url, else [limits]
                                       # redis_url with [limits] store = "redis", else [cache] url)
    redis_url = "redis://127.0.0.1:6379/0"
    redis_prefix = "fareway:ui:"       # Redis keys are PREFIX + "session:" + a digest of the id
    session_ttl = 43200                # seconds a login lasts
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class DashboardSettingsError(ValueError):
    """A bad ``[dashboard]`` key or value (config turns it into a ConfigError)."""


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    sessions: str = "auto"
    redis_url: str | None = None
    redis_prefix: str = "fareway:ui:"
    session_ttl: float = 12 * 3600.0


def parse(section: dict[str, Any]) -> DashboardSettings:
    fields = DashboardSettings.__dataclass_fields__
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise DashboardSettingsError(f"[dashboard] has unknown key(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, value in section.items():
        if name == "session_ttl":
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 60:
                raise DashboardSettingsError(
                    "[dashboard] session_ttl must be a number of seconds, at least 60"
                )
            out[name] = float(value)
            continue
        if not isinstance(value, str) or not value:
            raise DashboardSettingsError(f"[dashboard] {name} must be a string")
        if name == "sessions" and value not in ("auto", "memory", "redis"):
            raise DashboardSettingsError(
                f'[dashboard] sessions must be "auto", "memory" or "redis", not {value!r}'
            )
        if name == "redis_url" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise DashboardSettingsError("[dashboard] redis_url must be a redis://, rediss:// or unix:// URL")
        out[name] = value
    return DashboardSettings(**out)


KEYS = frozenset(DashboardSettings.__dataclass_fields__)
"""The section's keys (for the config's registry of sections)."""
