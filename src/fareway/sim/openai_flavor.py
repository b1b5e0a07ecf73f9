"""The OpenAI-compatible providers as :class:`Flavor` rows (see :mod:`fareway.sim.openai_dialect`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from fareway.sim.content import rand_hex, rand_id, rand_uuid


@dataclass(frozen=True, slots=True)
class Flavor:
    name: str
    ids: str = "openai"  # openai | uuid | hex | gen
    tool_ids: str = "call"  # call | nine | fc
    fingerprint: bool = True
    service_tier: str | None = "default"
    logprobs: bool = True
    message: str = "openai"  # openai | plain | mistral | openrouter
    usage: str = "openai"  # openai | cerebras | groq | mistral | openrouter
    usage_mode: str = "chunk"  # chunk | last | finish | groq | openrouter
    tools_whole: bool = False
    stream_error: str = "openai"  # openai | groq | cerebras | openrouter
    errors: str = "openai"  # openai | groq | flat | mistral | openrouter
    ratelimit: str = "openai"  # openai | cerebras | none
    retry_after_ms: bool = False
    check_tool_ids: bool = False
    keepalive: bytes | None = None
    reasoning: str | None = "reasoning_content"
    """Field carrying reasoning text in messages and deltas; None keeps it hidden (tokens only)."""
    max_n: int = 128
    """The largest ``n`` accepted (Groq: 1)."""
    rejects_logprobs: bool = False
    """``logprobs`` is a 400 (Groq)."""
    json_word_required: bool = False
    """``json_object`` needs the word "json" in the messages (OpenAI)."""


OPENAI = Flavor("openai", retry_after_ms=True, reasoning=None, json_word_required=True)
FLAVORS: dict[str, Flavor] = {
    "openai": OPENAI,
    "cerebras": Flavor(
        "cerebras",
        ids="uuid",
        tool_ids="nine",
        service_tier=None,
        logprobs=False,
        message="plain",
        usage="cerebras",
        usage_mode="last",
        stream_error="cerebras",
        errors="flat",
        ratelimit="cerebras",
        reasoning="reasoning",
    ),
    "groq": Flavor(
        "groq",
        ids="uuid",
        tool_ids="fc",
        service_tier="on_demand",
        message="plain",
        usage="groq",
        usage_mode="groq",
        tools_whole=True,
        stream_error="groq",
        errors="groq",
        reasoning="reasoning",
        max_n=1,
        rejects_logprobs=True,
    ),
    "mistral": Flavor(
        "mistral",
        ids="hex",
        tool_ids="nine",
        fingerprint=False,
        service_tier=None,
        logprobs=False,
        message="mistral",
        usage="mistral",
        usage_mode="finish",
        tools_whole=True,
        errors="mistral",
        check_tool_ids=True,
        reasoning=None,
    ),
    "openrouter": Flavor(
        "openrouter",
        ids="gen",
        tool_ids="call",
        fingerprint=False,
        service_tier=None,
        message="openrouter",
        usage="openrouter",
        usage_mode="openrouter",
        stream_error="openrouter",
        errors="openrouter",
        ratelimit="none",
        keepalive=b": OPENROUTER PROCESSING\n\n",
        reasoning="reasoning",
    ),
}


def flavor_of(provider: str) -> Flavor:
    f = FLAVORS.get(provider)
    if f is not None:
        return f
    return replace(OPENAI, name=provider, retry_after_ms=False, service_tier=None, json_word_required=False)


def completion_id(fl: Flavor, created: int) -> str:
    if fl.ids == "uuid":
        return "chatcmpl-" + rand_uuid()
    if fl.ids == "hex":
        return rand_hex(32)
    if fl.ids == "gen":
        return f"gen-{created}-{rand_id(20)}"
    return "chatcmpl-" + rand_id(29)


def tool_id(fl: Flavor) -> str:
    if fl.tool_ids == "nine":
        return rand_id(9)
    if fl.tool_ids == "fc":
        return "fc_" + rand_uuid()
    return "call_" + rand_id(24)
