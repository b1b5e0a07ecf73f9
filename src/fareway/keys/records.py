"""The values the key store deals in: who is calling (:class:`Principal`), what a key or team is
(:class:`KeyInfo`, :class:`TeamInfo`), and the limits either may carry (:class:`Limits`).

Scopes of a gateway key::

    inference   chat, messages, responses, embeddings, models, its own usage and logs, GET /v1/key
    usage       read-only usage: /v1/usage, /v1/usage/export and /v1/logs of every key (a
                reporting tool); no calls, no key management
    admin       everything, the admin API (/v1/admin/...) and the dashboard included

``admin`` implies the other two.  A key made before scopes existed has the scopes of its role
(``admin`` -> all three, ``inference`` -> inference).

Allowed models and providers are glob patterns (``fnmatch``, case-sensitive: ``openai/*``,
``*mini*``).  A key restricted by its own list *and* its team's list may use what both allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

SCOPES = ("inference", "usage", "admin")
Scope = Literal["inference", "usage", "admin"]
Window = Literal["daily", "monthly", "total"]
WINDOWS: tuple[Window, ...] = ("daily", "monthly", "total")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,63}$")
_RESERVED_PREFIXES = ("key_", "team_", "pk_")


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is a valid key or team name, else ValueError saying why."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid {what} {name!r}: 1-64 characters, letters, digits and . _ @ : + - "
            "(starting with a letter or digit)"
        )
    if name.startswith(_RESERVED_PREFIXES):
        raise ValueError(f"invalid {what} {name!r}: names may not start with key_, team_ or pk_ (ids do)")
    return name


def scopes_of_role(role: str) -> frozenset[str]:
    return frozenset(SCOPES) if role == "admin" else frozenset({"inference"})


def check_scopes(scopes: Any) -> frozenset[str]:
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    if not isinstance(scopes, list | tuple | set | frozenset) or not scopes:
        raise ValueError(f"scopes must be a non-empty list of {', '.join(SCOPES)}")
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise ValueError(f"unknown scope(s) {', '.join(map(str, bad))}; scopes are {', '.join(SCOPES)}")
    out = frozenset(scopes)
    return frozenset(SCOPES) if "admin" in out else out


def check_patterns(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{what} must be a list of names or glob patterns")
    if any(len(v) > 200 for v in value) or len(value) > 200:
        raise ValueError(f"{what}: at most 200 patterns of at most 200 characters")
    return tuple(value)


def money(value: Any, what: str) -> Decimal | None:
    """A USD amount (a number or a decimal string, at least 0), or None for "no limit"."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an amount in USD, not {value!r}")
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{what} must be an amount in USD, not {value!r}") from exc
    if not d.is_finite() or d < 0 or d > Decimal(10) ** 9:
        raise ValueError(f"{what} must be between 0 and 1e9 USD, not {value!r}")
    return d


def count(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{what} must be a whole number, not {value!r}")
    try:
        n = int(value)
    except ValueError as exc:
        raise ValueError(f"{what} must be a whole number, not {value!r}") from exc
    if n < 1 or n > 10**12:
        raise ValueError(f"{what} must be between 1 and 1e12, not {value!r}")
    return n


@dataclass(frozen=True, slots=True)
class Limits:
    """Budgets (USD per UTC day, per UTC month, in total) and rate limits (requests and tokens per
    minute) of one key or one team; None: no such limit."""

    daily_usd: Decimal | None = None
    monthly_usd: Decimal | None = None
    total_usd: Decimal | None = None
    rpm: int | None = None
    tpm: int | None = None

    @property
    def any(self) -> bool:
        # plain checks, not any() over a generator: read for every call (Principal.limited)
        return (
            self.daily_usd is not None
            or self.monthly_usd is not None
            or self.total_usd is not None
            or self.rpm is not None
            or self.tpm is not None
        )

    @property
    def budgeted(self) -> bool:
        return self.daily_usd is not None or self.monthly_usd is not None or self.total_usd is not None

    def budgets(self) -> list[tuple[Window, Decimal]]:
        out: list[tuple[Window, Decimal]] = []
        for w, v in (("daily", self.daily_usd), ("monthly", self.monthly_usd), ("total", self.total_usd)):
            if v is not None:
                out.append((w, v))  # type: ignore[arg-type]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget_daily_usd": _s(self.daily_usd),
            "budget_monthly_usd": _s(self.monthly_usd),
            "budget_total_usd": _s(self.total_usd),
            "rpm": self.rpm,
            "tpm": self.tpm,
        }

    @classmethod
    def parse(cls, data: dict[str, Any], base: Limits | None = None) -> Limits:
        """From the admin API / CLI field names (``budget_daily_usd`` ... ``rpm``, ``tpm``); a
        field absent keeps ``base``'s value, a null clears it."""
        b = base or NO_LIMITS
        return cls(
            money(data["budget_daily_usd"], "budget_daily_usd")
            if "budget_daily_usd" in data
            else b.daily_usd,
            money(data["budget_monthly_usd"], "budget_monthly_usd")
            if "budget_monthly_usd" in data
            else b.monthly_usd,
            money(data["budget_total_usd"], "budget_total_usd")
            if "budget_total_usd" in data
            else b.total_usd,
            count(data["rpm"], "rpm") if "rpm" in data else b.rpm,
            count(data["tpm"], "tpm") if "tpm" in data else b.tpm,
        )


LIMIT_FIELDS = ("budget_daily_usd", "budget_monthly_usd", "budget_total_usd", "rpm", "tpm")
NO_LIMITS = Limits()


def _s(d: Decimal | None) -> str | None:
    return None if d is None else format(d.normalize(), "f")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a gateway key (with its team, if any) or the master key.  Carries what the
    admit stage needs (scopes, allow-lists, limits), so a call reads no database."""

    key_id: str
    name: str
    role: str = "inference"  # admin | inference: the scopes' legacy summary
    scopes: frozenset[str] = frozenset()
    """Empty: derived from ``role``."""
    team_id: str | None = None
    team_name: str | None = None
    allowed_models: tuple[tuple[str, ...], ...] = ()
    """One pattern list per owner that restricts (the key's, the team's): a model must match each."""
    allowed_providers: tuple[tuple[str, ...], ...] = ()
    key_limits: Limits = NO_LIMITS
    team_limits: Limits = NO_LIMITS
    expires_at: float | None = None
    prefix: str = ""

    def __post_init__(self) -> None:
        if not self.scopes:
            object.__setattr__(self, "scopes", scopes_of_role(self.role))

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    @property
    def restricted(self) -> bool:
        return bool(self.allowed_models or self.allowed_providers)

    @property
    def limited(self) -> bool:
        return self.key_limits.any or self.team_limits.any


MASTER = Principal("master", "master", "admin")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    name: str
    role: str
    prefix: str
    created_at: float
    revoked_at: float | None
    scopes: frozenset[str] = frozenset()
    team_id: str | None = None
    allowed_models: tuple[str, ...] = ()
    allowed_providers: tuple[str, ...] = ()
    expires_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    limits: Limits = NO_LIMITS
    rotated_at: float | None = None
    previous_valid_until: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.key_id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": sorted(self.scopes),
            "team_id": self.team_id,
            "allowed_models": list(self.allowed_models),
            "allowed_providers": list(self.allowed_providers),
            "expires_at": self.expires_at,
            "metadata": dict(self.metadata),
            **self.limits.as_dict(),
            "created_at": self.created_at,
            "rotated_at": self.rotated_at,
            "previous_valid_until": self.previous_valid_until,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class TeamInfo:
    team_id: str
    name: str
    created_at: float
    allowed_models: tuple[str, ...] = ()
    allowed_providers: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    limits: Limits = NO_LIMITS

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.team_id,
            "name": self.name,
            "allowed_models": list(self.allowed_models),
            "allowed_providers": list(self.allowed_providers),
            "metadata": dict(self.metadata),
            **self.limits.as_dict(),
            "created_at": self.created_at,
        }


def check_metadata(value: Any) -> dict[str, Any]:
    """Free-form metadata: a JSON object of at most 50 entries and 8 KiB."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("metadata must be an object with string keys")
    import json

    if len(value) > 50 or len(json.dumps(value)) > 8192:
        raise ValueError("metadata: at most 50 entries and 8 KiB of JSON")
    return dict(value)
