"""The canonical model that every inbound dialect and outbound adapter translates to and from.

Nothing here knows about OpenAI, Anthropic or Gemini wire shapes.  Fields a dialect has and the
canonical model does not are kept in ``extensions``: a dict keyed by dialect name ("openai",
"anthropic", "gemini") whose values are the raw wire fields, so same-dialect traffic round-trips
losslessly.  Translation to another dialect ignores the other dialects' bags.

Conventions:

* Roles are ``system``, ``user``, ``assistant`` and ``tool``.  OpenAI ``developer`` messages are
  ``system`` with ``extensions["openai"]["role"] = "developer"``.  A ``tool`` message holds one or
  more :class:`ToolResultPart` (Anthropic puts them in a user turn; its wire parser splits them out).
* Tool-call arguments are kept as the JSON *text* the model produced (``arguments``), because
  OpenAI-dialect upstreams can emit invalid JSON and a pass-through must not rewrite it.  ``""``
  means "no arguments" and is read as ``{}`` by :func:`ToolCallPart.parsed_arguments`.
* Token counts follow one rule: ``input_tokens`` is the whole prompt (cached and cache-written
  tokens included), ``output_tokens`` the whole completion (reasoning included).  The other
  counters are breakdowns of those two, never addends.  See :class:`Usage`.
"""

from __future__ import annotations

import array
import base64
import binascii
import operator
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol, runtime_checkable

import orjson

Role = Literal["system", "user", "assistant", "tool"]
Dialect = Literal["openai", "anthropic", "gemini", "openai_responses"]
"""``openai_responses``: the OpenAI Responses API (an inbound dialect, and the native upstream
adapter for providers that speak it)."""

Extensions = dict[str, dict[str, Any]]
"""Per-dialect bag of wire fields the canonical model does not model: ``{"openai": {...}}``."""


# --------------------------------------------------------------------------------------- parts


@dataclass(slots=True)
class TextPart:
    text: str
    extensions: Extensions = field(default_factory=dict)
    kind: Literal["text"] = "text"


@dataclass(slots=True)
class ImagePart:
    """An image given either by URL (``url``) or inline (``data`` base64 + ``media_type``)."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    extensions: Extensions = field(default_factory=dict)
    kind: Literal["image"] = "image"

    def as_data_url(self) -> str | None:
        if self.data is not None:
            return f"data:{self.media_type or 'application/octet-stream'};base64,{self.data}"
        return self.url


@dataclass(slots=True)
class ToolCallPart:
    id: str
    name: str
    arguments: str = ""
    """The JSON text of the arguments as the model produced it; ``""`` means no arguments."""
    extensions: Extensions = field(default_factory=dict)
    kind: Literal["tool_call"] = "tool_call"

    def parsed_arguments(self) -> Any:
        """The arguments as a JSON value; ``""`` becomes ``{}``.  Raises ValueError if invalid."""
        if not self.arguments.strip():
            return {}
        try:
            return orjson.loads(self.arguments)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"tool call {self.id!r} has arguments that are not valid JSON") from exc


@dataclass(slots=True)
class ToolResultPart:
    tool_call_id: str
    content: list[Part] = field(default_factory=list)
    is_error: bool = False
    name: str | None = None
    extensions: Extensions = field(default_factory=dict)
    kind: Literal["tool_result"] = "tool_result"

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(slots=True)
class ThinkingPart:
    """Model reasoning.  ``signature`` is the provider's opaque proof (Anthropic, Gemini
    ``thoughtSignature``); ``redacted`` carries Anthropic ``redacted_thinking.data``."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    extensions: Extensions = field(default_factory=dict)
    kind: Literal["thinking"] = "thinking"


@dataclass(slots=True)
class OpaquePart:
    """A block of a type the canonical model does not know (Anthropic server-tool blocks,
    ``compaction``, a block type added after this code was written).  It survives a same-dialect
    round trip verbatim (``data`` is the wire object; ``deltas`` the raw JSON of streamed deltas)
    and is dropped with a note, or refused, when translating to another dialect."""

    dialect: str
    data: dict[str, Any] = field(default_factory=dict)
    deltas: list[str] = field(default_factory=list)
    extensions: Extensions = field(default_factory=dict)
    kind: Literal["opaque"] = "opaque"


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ThinkingPart | OpaquePart


# ------------------------------------------------------------------------------------ messages


@dataclass(slots=True)
class Message:
    role: Role
    content: list[Part] = field(default_factory=list)
    name: str | None = None
    extensions: Extensions = field(default_factory=dict)

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None
    extensions: Extensions = field(default_factory=dict)


@dataclass(slots=True)
class ToolChoice:
    """``mode``: auto | none | required (any tool) | tool (the one named).  ``parallel``: None
    means the dialect default; False disables parallel tool calls."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None
    parallel: bool | None = None


@dataclass(slots=True)
class ResponseFormat:
    """``type``: text | json_object | json_schema."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


@dataclass(slots=True)
class ThinkingConfig:
    """``type``: enabled (with ``budget_tokens``) | adaptive | disabled.  ``effort`` is the
    OpenAI-style reasoning_effort (low|medium|high|...) when that is what the caller gave."""

    type: Literal["enabled", "adaptive", "disabled"] = "enabled"
    budget_tokens: int | None = None
    effort: str | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    stream: bool = False
    include_usage: bool = False
    """Whether the *client* asked to see usage in a stream (OpenAI stream_options.include_usage).
    Adapters always ask the upstream for usage; the wire encoder decides what to show."""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int | None = None
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    thinking: ThinkingConfig | None = None
    user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extensions: Extensions = field(default_factory=dict)
    """Unmodelled top-level request fields per dialect, passed through to same-dialect upstreams."""
    headers: dict[str, str] = field(default_factory=dict)
    """Dialect headers to forward (anthropic-version, anthropic-beta), lower-case names."""
    source_dialect: Dialect = "openai"

    def system_text(self) -> str:
        return "\n".join(m.text() for m in self.messages if m.role == "system")

    def needs_tools(self) -> bool:
        return bool(self.tools)

    def needs_vision(self) -> bool:
        return any(isinstance(p, ImagePart) for m in self.messages for p in m.content)

    def copy(self) -> ChatRequest:
        """A shallow copy, every field read in one call and passed in order (a fifth of what
        ``dataclasses.replace`` costs: this runs for every call read from its upstream as a
        stream)."""
        return ChatRequest(*_CHAT_REQUEST_FIELDS(self))


_CHAT_REQUEST_FIELDS = operator.attrgetter(*(f.name for f in fields(ChatRequest)))


# ------------------------------------------------------------------------------------ response

FinishReason = Literal[
    "stop",  # natural end of turn
    "stop_sequence",  # a caller stop sequence matched (see ChatResponse.stop_sequence)
    "length",  # max tokens reached
    "context_window",  # the model's context window is exhausted
    "tool_calls",  # the model called tools
    "content_filter",  # refusal or safety block
    "pause",  # Anthropic pause_turn: the client must resend to continue
    "error",  # the upstream ended the turn with an error finish (Mistral "error")
]


@dataclass(slots=True)
class Usage:
    """Token counts of one call.  ``input_tokens`` and ``output_tokens`` are totals; the rest are
    breakdowns contained in them:

    * ``cached_input_tokens`` ⊆ input (read from the provider's prompt cache),
    * ``cache_write_tokens`` ⊆ input (written to the cache, Anthropic cache_creation),
    * ``reasoning_tokens`` ⊆ output.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    """True when counted offline because the provider reported nothing."""
    extensions: Extensions = field(default_factory=dict)
    """Provider extras (OpenRouter ``cost``, Groq timings, Cerebras ``time_info``...)."""

    @property
    def uncached_input_tokens(self) -> int:
        return max(0, self.input_tokens - self.cached_input_tokens - self.cache_write_tokens)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    """The upstream model id as the provider reported it."""
    content: list[Part] = field(default_factory=list)
    """Text, tool-call and thinking parts, in order."""
    finish_reason: FinishReason | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None
    created: int | None = None
    extensions: Extensions = field(default_factory=dict)
    """Unmodelled response fields per dialect (system_fingerprint, service_tier, time_info...)."""
    more_choices: list[ChatResponse] = field(default_factory=list)
    """Choices 1..n-1 of an ``n`` > 1 answer from an upstream whose dialect has no raw OpenAI
    choices to pass on (Gemini ``candidates``), each with its content and finish reason (usage is on
    this one, for all choices).  The OpenAI encoder renders them as choices ``1..``."""

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def tool_calls(self) -> list[ToolCallPart]:
        return [p for p in self.content if isinstance(p, ToolCallPart)]


# ------------------------------------------------------------------------------- upstream HTTP


@dataclass(slots=True)
class HttpRequest:
    """What an adapter asks the transport to send.  Sans-IO: adapters build these, never send."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool = False
    dropped: list[str] = field(default_factory=list)
    """Request fields the adapter stripped for this provider (reported in x-fareway-dropped-params)."""


@dataclass(slots=True)
class Upstream:
    """Where an adapter sends a request: a resolved (provider, upstream model) with its key."""

    provider: str
    dialect: Dialect
    base_url: str
    model: str
    api_key: str | None = None
    auth_header: str = "authorization"
    auth_scheme: str | None = "Bearer"
    extra_headers: dict[str, str] = field(default_factory=dict)
    quirks: Any = None
    """A providers.Quirks instance (typed loosely here so types imports nothing above it)."""


# ---------------------------------------------------------------------------------- embeddings

EmbeddingInput = str | list[int]
"""One input to embed: text, or a token array (OpenAI's form; only some upstreams take it)."""

EncodingFormat = Literal["float", "base64"]


class Vector:
    """One embedding, held as the provider sent it and converted only when asked: Python floats
    (a float JSON array, kept exactly as parsed), or the raw little-endian float32 bytes of
    OpenAI's ``base64`` encoding.  ``base64()`` of floats is their float32 encoding, as OpenAI's."""

    __slots__ = ("_floats", "_raw")

    def __init__(self, floats: list[float] | None = None, raw: bytes | None = None) -> None:
        if (floats is None) == (raw is None):
            raise ValueError("a Vector holds floats or raw float32 bytes, exactly one")
        if raw is not None and len(raw) % 4:
            raise ValueError(f"float32 data must be a multiple of 4 bytes, not {len(raw)}")
        self._floats = floats
        self._raw = raw

    @classmethod
    def from_base64(cls, text: str) -> Vector:
        """``text`` as OpenAI sends it (standard base64 of little-endian float32).  Raises
        ValueError when it is not valid base64 of whole float32 values."""
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"not base64: {exc}") from exc
        return cls(raw=raw)

    def __len__(self) -> int:
        return len(self._floats) if self._floats is not None else len(self._raw or b"") // 4

    def floats(self) -> list[float]:
        if self._floats is not None:
            return self._floats
        values = array.array("f")
        values.frombytes(self._raw or b"")
        if sys.byteorder == "big":
            values.byteswap()
        return values.tolist()

    def float32(self) -> bytes:
        """The values as little-endian float32 bytes (a float beyond float32's range becomes inf)."""
        if self._raw is not None:
            return self._raw
        values = array.array("f", self._floats or [])
        if sys.byteorder == "big":
            values.byteswap()
        return values.tobytes()

    def base64(self) -> str:
        return base64.b64encode(self.float32()).decode("ascii")

    def __repr__(self) -> str:
        return f"Vector(dims={len(self)})"


@dataclass(slots=True)
class EmbeddingRequest:
    """A call to embed ``inputs`` (one vector per input, in order) with ``model``."""

    model: str
    inputs: list[EmbeddingInput]
    dimensions: int | None = None
    """The output size asked for (OpenAI ``dimensions``); None: the model's native size."""
    encoding_format: EncodingFormat = "float"
    """What the *client* wants back; adapters pick what to ask the upstream for."""
    user: str | None = None
    extensions: dict[str, Any] = field(default_factory=dict)
    """Unmodelled top-level request fields (passed through to OpenAI-compatible upstreams)."""

    @property
    def has_token_inputs(self) -> bool:
        return any(not isinstance(i, str) for i in self.inputs)


@dataclass(slots=True)
class EmbeddingResult:
    """An upstream's answer: one vector per input, in input order."""

    vectors: list[Vector]
    model: str = ""
    """The model the provider says it used (empty when it says nothing)."""
    usage: Usage | None = None
    """None when the provider reported no usage (the executor then estimates it)."""


@runtime_checkable
class Embedder(Protocol):
    """Texts in, one vector each out, through the gateway's routing, fallback and ledger (the
    semantic cache's seam).  ``pipeline.embeddings.EmbeddingService.embedder`` builds one."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...
