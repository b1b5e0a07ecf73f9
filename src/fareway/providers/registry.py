"""Built-in providers as data rows.  A provider that speaks a dialect with no special behaviour is a
row here, not a module; its differences are :class:`Quirks` flags read by the dialect's adapter.

A user-defined provider (vLLM, Ollama, a private endpoint) is a ``[providers.NAME]`` table in the
config with ``dialect`` and ``base_url``; it becomes a :class:`ProviderSpec` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fareway.providers.quirks import Quirks
from fareway.types import Dialect


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    dialect: Dialect
    base_url: str
    key_env: str | None = None
    auth_header: str = "authorization"
    auth_scheme: str | None = "Bearer"
    quirks: Quirks = field(default_factory=Quirks)
    extra_headers: tuple[tuple[str, str], ...] = ()
    builtin: bool = True

    def with_base_url(self, base_url: str) -> ProviderSpec:
        return replace(self, base_url=base_url.rstrip("/"))


_CEREBRAS_REJECTS = frozenset(
    {"frequency_penalty", "presence_penalty", "logit_bias", "parallel_tool_calls", "service_tier"}
)

BUILTIN_PROVIDERS: dict[str, ProviderSpec] = {
    p.name: p
    for p in (
        ProviderSpec(
            "openai",
            "openai",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            quirks=Quirks(embedding_base64=True, native_dialects=frozenset({"openai_responses"})),
        ),
        ProviderSpec(
            "anthropic",
            "anthropic",
            "https://api.anthropic.com",
            "ANTHROPIC_API_KEY",
            auth_header="x-api-key",
            auth_scheme=None,
        ),
        ProviderSpec(
            "gemini",
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta",
            "GEMINI_API_KEY",
            auth_header="x-goog-api-key",
            auth_scheme=None,
        ),
        ProviderSpec(
            "cerebras",
            "openai",
            "https://api.cerebras.ai/v1",
            "CEREBRAS_API_KEY",
            quirks=Quirks(unsupported_params=_CEREBRAS_REJECTS, unsupported_policy="strip"),
        ),
        ProviderSpec(
            "groq",
            "openai",
            "https://api.groq.com/openai/v1",
            "GROQ_API_KEY",
            quirks=Quirks(
                unsupported_params=frozenset({"logprobs", "logit_bias", "top_logprobs"}),
                n_must_be_one=True,
                supports_message_name=False,
            ),
        ),
        ProviderSpec(
            "deepinfra",
            "openai",
            "https://api.deepinfra.com/v1/openai",
            "DEEPINFRA_API_KEY",
            quirks=Quirks(max_tokens_field="max_tokens", embedding_base64=True),
        ),
        ProviderSpec(
            "mistral",
            "openai",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            quirks=Quirks(
                renamed_params={"seed": "random_seed"},
                tool_call_id_format="alnum9",
                tool_choice_required_as="any",
                error_shape="flat",
                max_tokens_field="max_tokens",
                embedding_dimensions_field="output_dimension",
                embedding_token_input=False,
                embedding_max_batch=256,
            ),
        ),
        ProviderSpec("xai", "openai", "https://api.x.ai/v1", "XAI_API_KEY"),
        ProviderSpec("openrouter", "openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    )
}
