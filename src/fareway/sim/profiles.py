"""Latency profiles and the simulator's configuration.

A :class:`Profile` says how one (provider, model) behaves in time: the time to first token drawn
from a :class:`Dist`, the output speed in tokens per second, and the default reply length.  The
lookup order is ``(provider, model)`` → ``provider`` → :data:`DEFAULT_PROFILE` (no sleeps at all).

Draws come from one seeded :class:`random.Random` per provider, so the same config seed and the same
sequence of requests to a provider give the same draws whatever the other providers are doing.

TOML shape (``fareway sim --config sim.toml``)::

    seed = 7
    anthropic_cache_min_tokens = 0

    [providers.groq]
    ttft = { kind = "lognormal", median = 0.08, sigma = 0.4 }
    tokens_per_s = 900
    output_tokens = 64

    [providers.groq.models."llama-3.3-70b-versatile"]
    ttft = 0.05                          # a bare number is a fixed delay

    [providers.openai]
    ttft = { kind = "heavy", median = 0.35, sigma = 0.35, tail_p = 0.03, tail_mult = 6 }

    [providers.openai.models."gpt-4o"]
    signature = "[control]"              # put before each text answer (for a simulated judge)

    [judges."claude-sonnet-4-5"]         # a simulated judge (fareway.sim.judge)
    prefer = "[challenger]"
    over = "[control]"
    preference = 0.7
    position_bias = 0.1

    [[faults]]                           # rate-based faults for benchmark storms
    provider = "groq"
    kind = "429"
    rate = 0.05
    retry_after = 1
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fareway.sim.judge import JudgeSpec

INF = math.inf


@dataclass(frozen=True, slots=True)
class Dist:
    """A delay distribution in seconds.

    kinds: ``fixed`` (value), ``uniform`` (low, high), ``lognormal`` (median, sigma), ``heavy``
    (a lognormal body; with probability ``tail_p`` the draw is multiplied by
    ``tail_mult * pareto(alpha)``, a heavy tail like real provider queues).  ``cap`` bounds any draw.
    """

    kind: str = "fixed"
    value: float = 0.0
    low: float = 0.0
    high: float = 0.0
    median: float = 0.0
    sigma: float = 0.0
    tail_p: float = 0.0
    tail_mult: float = 1.0
    alpha: float = 2.5
    cap: float = INF

    @property
    def is_zero(self) -> bool:
        return self.kind == "fixed" and self.value <= 0.0

    def draw(self, rng: random.Random) -> float:
        k = self.kind
        if k == "fixed":
            v = self.value
        elif k == "uniform":
            v = rng.uniform(self.low, self.high)
        elif k == "lognormal":
            v = self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))
        elif k == "heavy":
            v = self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))
            if rng.random() < self.tail_p:
                v *= self.tail_mult * rng.paretovariate(self.alpha)
        else:  # pragma: no cover - rejected by from_obj
            raise ValueError(f"unknown distribution kind {k!r}")
        return max(0.0, min(v, self.cap))

    @classmethod
    def fixed(cls, value: float) -> Dist:
        return cls("fixed", value=value)

    @classmethod
    def from_obj(cls, obj: Any) -> Dist:
        if isinstance(obj, Dist):
            return obj
        if isinstance(obj, int | float):
            return cls.fixed(float(obj))
        if not isinstance(obj, dict):
            raise ValueError(f"a distribution is a number or a table, not {obj!r}")
        kind = str(obj.get("kind", "fixed"))
        if kind not in ("fixed", "uniform", "lognormal", "heavy"):
            raise ValueError(f"unknown distribution kind {kind!r}")
        known = {f for f in cls.__dataclass_fields__ if f != "kind"}
        extra = set(obj) - known - {"kind"}
        if extra:
            raise ValueError(f"unknown distribution fields {sorted(extra)}")
        return cls(kind, **{k: float(v) for k, v in obj.items() if k != "kind"})


@dataclass(frozen=True, slots=True)
class Profile:
    ttft: Dist = field(default_factory=Dist)
    tokens_per_s: float = INF
    """Output speed; ``inf`` streams everything at once."""
    output_tokens: int = 16
    """Default reply length in tokens (words), cut by the request's max tokens."""
    signature: str = ""
    """Put before every text answer (not an echo, tool calls or JSON) as one more token, so a
    simulated judge (fareway.sim.judge) can tell this model's answers from another's."""

    @property
    def instant(self) -> bool:
        return self.ttft.is_zero and math.isinf(self.tokens_per_s)

    def merged(self, obj: dict[str, Any]) -> Profile:
        out = self
        if "ttft" in obj:
            out = replace(out, ttft=Dist.from_obj(obj["ttft"]))
        if "tokens_per_s" in obj:
            tps = obj["tokens_per_s"]
            out = replace(out, tokens_per_s=INF if tps in ("inf", 0, None) else float(tps))
        if "output_tokens" in obj:
            out = replace(out, output_tokens=int(obj["output_tokens"]))
        if "signature" in obj:
            if not isinstance(obj["signature"], str):
                raise ValueError("a signature must be a string")
            out = replace(out, signature=obj["signature"])
        return out


DEFAULT_PROFILE = Profile()

# Realistic relative speeds for `fareway serve --demo`: Cerebras and Groq very fast, the big three
# slower with heavier tails.  Numbers are rough public medians, not measurements.
DEMO_PROFILES: dict[str, Profile] = {
    "cerebras": Profile(Dist("heavy", median=0.12, sigma=0.3, tail_p=0.02, tail_mult=4), 1800.0, 120),
    "groq": Profile(Dist("heavy", median=0.18, sigma=0.35, tail_p=0.03, tail_mult=5), 700.0, 120),
    "deepinfra": Profile(Dist("heavy", median=0.35, sigma=0.4, tail_p=0.04, tail_mult=5), 120.0, 120),
    "mistral": Profile(Dist("heavy", median=0.4, sigma=0.4, tail_p=0.04, tail_mult=5), 110.0, 120),
    "xai": Profile(Dist("heavy", median=0.5, sigma=0.45, tail_p=0.05, tail_mult=5), 90.0, 120),
    "openrouter": Profile(Dist("heavy", median=0.6, sigma=0.5, tail_p=0.06, tail_mult=5), 80.0, 120),
    "openai": Profile(Dist("heavy", median=0.5, sigma=0.45, tail_p=0.05, tail_mult=6), 85.0, 120),
    "anthropic": Profile(Dist("heavy", median=0.7, sigma=0.4, tail_p=0.05, tail_mult=6), 70.0, 120),
    "gemini": Profile(Dist("heavy", median=0.55, sigma=0.45, tail_p=0.05, tail_mult=6), 140.0, 120),
}

# Model ids listed by GET /{provider}/v1/models when the config names none for a provider.
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o-mini", "gpt-4o", "gpt-5-mini"),
    "cerebras": ("llama-3.3-70b", "gpt-oss-120b", "zai-glm-4.7"),
    "groq": ("llama-3.3-70b-versatile", "openai/gpt-oss-120b", "llama-3.1-8b-instant"),
    "deepinfra": ("meta-llama/Llama-3.3-70B-Instruct", "deepseek-ai/DeepSeek-V3"),
    "mistral": ("mistral-large-latest", "mistral-small-latest"),
    "xai": ("grok-4", "grok-3-mini"),
    "openrouter": ("openai/gpt-4o-mini", "anthropic/claude-sonnet-4.5"),
    "anthropic": ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-6"),
    "gemini": ("gemini-2.5-flash", "gemini-2.0-flash", "gemini-3-pro-preview"),
}


@dataclass(slots=True)
class SimConfig:
    seed: int = 0
    providers: dict[str, Profile] = field(default_factory=dict)
    models: dict[tuple[str, str], Profile] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    """Fault specs armed at start (same fields as ``POST /_sim/faults``)."""
    anthropic_cache_min_tokens: int = 0
    """Prefixes shorter than this are not cached (the real API uses 1024-4096 by model)."""
    judges: dict[str, JudgeSpec] = field(default_factory=dict)
    """Model ids that answer as simulated judges (fareway.sim.judge), on any provider."""

    def profile(self, provider: str, model: str) -> Profile:
        p = self.models.get((provider, model))
        if p is not None:
            return p
        return self.providers.get(provider, DEFAULT_PROFILE)

    def model_ids(self, provider: str) -> list[str]:
        ids = [m for (p, m) in self.models if p == provider]
        return ids or list(DEFAULT_MODELS.get(provider, ("sim-model",)))

    @classmethod
    def default(cls) -> SimConfig:
        """Zero latency, infinite speed: the profile for tests."""
        return cls()

    @classmethod
    def demo(cls, seed: int = 0) -> SimConfig:
        return cls(seed=seed, providers=dict(DEMO_PROFILES), anthropic_cache_min_tokens=1024)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        base = cls.demo() if data.get("demo") else cls()
        base.seed = int(data.get("seed", base.seed))
        base.anthropic_cache_min_tokens = int(
            data.get("anthropic_cache_min_tokens", base.anthropic_cache_min_tokens)
        )
        for name, table in (data.get("providers") or {}).items():
            if not isinstance(table, dict):
                raise ValueError(f"providers.{name} must be a table")
            prof = base.providers.get(name, DEFAULT_PROFILE).merged(table)
            base.providers[name] = prof
            for model, mtable in (table.get("models") or {}).items():
                base.models[(name, model)] = prof.merged(mtable)
        judges = data.get("judges") or {}
        if not isinstance(judges, dict):
            raise ValueError("judges must be a table of [judges.MODEL] tables")
        for model, jtable in judges.items():
            base.judges[model] = JudgeSpec.from_obj(model, jtable)
        faults = data.get("faults") or []
        if not isinstance(faults, list):
            raise ValueError("faults must be an array of tables")
        base.faults = [dict(f) for f in faults]
        return base

    @classmethod
    def load(cls, path: str | Path) -> SimConfig:
        with open(path, "rb") as fh:
            return cls.from_dict(tomllib.load(fh))
