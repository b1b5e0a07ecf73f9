"""Quirk flags: the per-provider differences an adapter reads.  Never branch on a provider's name
in adapter code; add a flag here and set it in the provider's row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Quirks:
    unsupported_params: frozenset[str] = frozenset()
    """Request fields the provider rejects with a 400 (Cerebras: frequency_penalty, ...)."""
    unsupported_policy: Literal["strip", "reject"] = "strip"
    """strip: drop them and report what was dropped; reject: a 400 to the caller naming them."""
    renamed_params: dict[str, str] = field(default_factory=dict)
    """Canonical/OpenAI field -> provider field (Mistral: seed -> random_seed)."""
    tool_call_id_format: Literal["any", "alnum9"] = "any"
    """alnum9: ids must match [a-zA-Z0-9]{9} (Mistral); the adapter rewrites them deterministically."""
    tool_choice_required_as: str = "required"
    """What to send for tool_choice "required" (Mistral: "any")."""
    error_shape: Literal["nested", "flat"] = "nested"
    """flat: {"object":"error","message":...} at top level (Mistral)."""
    stream_usage_option: bool = True
    """Whether to send stream_options.include_usage (some compat servers reject it)."""
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_completion_tokens"
    n_must_be_one: bool = False
    """Groq: n must be 1; a request with n>1 is rejected before it leaves."""
    supports_message_name: bool = True
    """False: the provider rejects ``messages[].name`` (Groq); the adapter strips it and reports it."""
    embedding_base64: bool = False
    """The embeddings endpoint answers ``encoding_format: base64`` (OpenAI, DeepInfra): a client
    that asks for base64 gets the upstream's bytes untouched.  False: floats are asked for and the
    gateway encodes them."""
    embedding_dimensions_field: str = "dimensions"
    """The request field for the output size (Mistral: ``output_dimension``)."""
    embedding_token_input: bool = True
    """The embeddings endpoint takes token arrays as input (False: a 400 naming it, Mistral)."""
    embedding_max_batch: int = 2048
    """Inputs per upstream embeddings request; a longer list is sent as several requests."""
    native_dialects: frozenset[str] = frozenset()
    """Inbound dialects this provider also speaks natively (OpenAI: ``openai_responses``): a call
    whose client speaks one of them goes to the provider in that dialect, nothing translated."""
