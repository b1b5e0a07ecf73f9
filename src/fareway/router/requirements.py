"""What a request needs from an offer, and what it would cost there.

* :func:`estimate_prompt_tokens` — the offline prompt-size estimate the policies use.  It calls
  ``fareway.tokens.count_tokens(req)`` when that module exists; otherwise it counts characters of
  everything that is sent as text (messages, tool calls and results, tool schemas, the response
  schema) and divides by 4, rounding up, plus 4 tokens of framing per message and a flat
  1,000 tokens per image.  chars/4 is the usual rule of thumb for English with BPE tokenizers; the
  per-image figure is a rough middle (image token costs vary from ~85 to ~1,600 by provider and
  size).  Swap the whole thing by passing ``estimate_tokens=`` to the router.
* :class:`Requirements` — tools, vision, json_schema, reasoning, prompt tokens, output tokens.
* :func:`expected_cost` — prompt tokens * input price + expected output * output price, in
  ``Decimal`` USD; ``None`` when the price is unknown (never 0).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import orjson

from fareway.providers.catalog import Offer
from fareway.types import (
    ChatRequest,
    ImagePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)

CHARS_PER_TOKEN = 4
TOKENS_PER_IMAGE = 1000
TOKENS_PER_MESSAGE = 4
PER_MILLION = Decimal(1_000_000)


class UnitPricesLike(Protocol):
    """USD per million tokens (``ledger.pricing.UnitPrices`` fits)."""

    @property
    def input(self) -> Decimal: ...

    @property
    def output(self) -> Decimal: ...


PriceFn = Callable[[str, str], UnitPricesLike | None]
"""``(provider, model) -> prices or None``; ``PriceBook.unit_prices`` fits."""

TokenEstimator = Callable[[ChatRequest], int]


def _chars_of_part(part: Any) -> tuple[int, int]:
    """(characters, images) of one content part."""
    if isinstance(part, TextPart):
        return len(part.text), 0
    if isinstance(part, ImagePart):
        return 0, 1
    if isinstance(part, ToolCallPart):
        return len(part.name) + len(part.arguments), 0
    if isinstance(part, ToolResultPart):
        chars, images = 0, 0
        for p in part.content:
            c, i = _chars_of_part(p)
            chars, images = chars + c, images + i
        return chars, images
    if isinstance(part, ThinkingPart):
        return len(part.text), 0
    return 0, 0


def chars_estimate(req: ChatRequest) -> int:
    """The chars/4 estimate described in the module docstring."""
    chars = 0
    images = 0
    for m in req.messages:
        for p in m.content:
            c, i = _chars_of_part(p)
            chars += c
            images += i
    for t in req.tools:
        chars += len(t.name) + len(t.description or "") + len(orjson.dumps(t.parameters))
    rf = req.response_format
    if rf is not None and rf.schema is not None:
        chars += len(orjson.dumps(rf.schema))
    return (
        math.ceil(chars / CHARS_PER_TOKEN)
        + TOKENS_PER_MESSAGE * len(req.messages)
        + TOKENS_PER_IMAGE * images
    )


_counter: TokenEstimator | None = None
_counter_checked = False


def _find_counter() -> TokenEstimator | None:
    global _counter, _counter_checked
    if not _counter_checked:
        _counter_checked = True
        if importlib.util.find_spec("fareway.tokens") is not None:
            fn = getattr(importlib.import_module("fareway.tokens"), "count_tokens", None)
            if callable(fn):
                _counter = fn
    return _counter


def estimate_prompt_tokens(req: ChatRequest) -> int:
    """Prompt tokens: ``fareway.tokens.count_tokens`` if present and usable, else chars/4."""
    counter = _find_counter()
    if counter is not None:
        try:
            n = counter(req)
        except Exception:  # a counter bug must not take routing down
            n = None
        if isinstance(n, int) and n >= 0:
            return n
    return chars_estimate(req)


@dataclass(frozen=True, slots=True)
class Requirements:
    tools: bool = False
    vision: bool = False
    json_schema: bool = False
    reasoning: bool = False
    prompt_tokens: int = 0
    output_tokens: int = 0
    """Expected output: ``max_tokens`` when given, else the router's default."""
    max_tokens: int | None = None
    """The caller's explicit limit (must fit the offer's max_output); None when not given."""

    @classmethod
    def of(cls, req: ChatRequest, prompt_tokens: int, default_output_tokens: int) -> Requirements:
        rf = req.response_format
        thinking = req.thinking is not None and req.thinking.type != "disabled"
        return cls(
            tools=req.needs_tools(),
            vision=req.needs_vision(),
            json_schema=rf is not None and rf.type == "json_schema",
            reasoning=thinking,
            prompt_tokens=prompt_tokens,
            output_tokens=req.max_tokens if req.max_tokens is not None else default_output_tokens,
            max_tokens=req.max_tokens,
        )

    def missing(self, offer: Offer) -> list[str]:
        """Why ``offer`` cannot serve this request (empty when it can).  A capability or limit the
        catalog does not know (``None``, as in the rows generated from genai-prices) is not held
        against it."""
        out: list[str] = []
        if self.tools and offer.tools is False:
            out.append("no tools")
        if self.vision and offer.vision is False:
            out.append("no vision")
        if self.json_schema and offer.json_schema is False:
            out.append("no json_schema")
        if self.reasoning and offer.reasoning is False:
            out.append("no reasoning")
        max_out = offer.max_output
        if self.max_tokens is not None and max_out is not None and self.max_tokens > max_out:
            out.append(f"max_tokens {self.max_tokens} > max_output {max_out}")
        out_need = self.output_tokens if max_out is None else min(self.output_tokens, max_out)
        if offer.context_window is not None and self.prompt_tokens + out_need > offer.context_window:
            out.append(f"context {self.prompt_tokens}+{out_need} > {offer.context_window}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "tools": self.tools,
            "vision": self.vision,
            "json_schema": self.json_schema,
            "reasoning": self.reasoning,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
        }


def expected_cost(prices: UnitPricesLike | None, prompt_tokens: int, output_tokens: int) -> Decimal | None:
    """USD for this request at list prices (uncached input); None when the price is unknown."""
    if prices is None:
        return None
    return (prices.input * prompt_tokens + prices.output * output_tokens) / PER_MILLION
