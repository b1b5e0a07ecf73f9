"""The model catalog: which (provider, model) offers exist and what each can do.

Loaded from ``catalog.toml`` beside this module, then extended by the config's
``[[models]]`` entries and by user-defined providers (whose models are not known in advance:
``provider/anything`` is accepted for them).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Offer:
    provider: str
    model: str
    """The upstream model id sent to the provider."""
    family: str
    """The model's identity across providers (the same open model on Cerebras and Groq)."""
    context_window: int = 8192
    max_output: int = 4096
    tools: bool = False
    vision: bool = False
    json_schema: bool = False
    reasoning: bool = False
    quality: int = 2

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}"


def load_builtin_catalog() -> list[Offer]:
    text = resources.files("fareway.providers").joinpath("catalog.toml").read_text("utf-8")
    return [Offer(**row) for row in tomllib.loads(text).get("offer", [])]
