"""Outbound adapter for Google Gemini's native API (``generateContent`` and
``streamGenerateContent?alt=sse``), not the OpenAI-compatibility endpoint.

Request translation (canonical -> Gemini):

* ``system`` messages -> ``systemInstruction{parts}``; ``user`` -> role ``user``; ``assistant`` ->
  role ``model``; consecutive ``tool`` messages -> one ``user`` content of ``functionResponse``
  parts (Gemini wants every response to a parallel batch in one content).
* Tool calls -> ``functionCall{name, args[, id]}``.  The ``id`` is sent only when Gemini issued it
  (``extensions["gemini"]["id"]``); gemini-2.x issues none and the gateway mints its own.
* Tool results -> ``functionResponse{name, response[, id]}``; Gemini needs the function *name*,
  taken from the result or looked up from the matching earlier call.  ``response`` is the parsed
  JSON object when the text is one, else ``{"result": text}`` (``{"error": text}`` for an error
  result, the key Gemini documents for failures).
* Thought signatures: thought-summary text is not sent back; a ThinkingPart's ``signature`` goes back as ``thoughtSignature`` on the next
  text/functionCall part of the same turn (the part Gemini put it on; see gemini_stream), or on an
  empty text part of its own when another signed part (a second signed ThinkingPart, a call with
  a different signature) comes first or the turn ends: every signature is sent back, in order.  A
  ToolCallPart's own ``extensions["gemini"]["thoughtSignature"]`` is used too.  Gemini 3 rejects a turn whose first function call lacks its signature; when a history
  from another provider has none, the documented bypass value is sent (``_SKIP_SIGNATURE``).
* Tool parameter schemas are reduced to the OpenAPI subset ``parameters`` accepts: ``$ref`` to
  ``$defs``/``definitions`` is inlined, ``const`` becomes ``enum``, ``oneOf`` becomes ``anyOf``,
  ``type: [T, "null"]`` becomes ``type: T, nullable: true``, ``format`` values other than
  ``_FORMATS`` are stripped, and keys outside
  ``_SCHEMA_KEYS`` (``additionalProperties``, ``$schema``, ``$id``, ``examples``, ``strict``,
  ``patternProperties``, ``exclusiveMinimum``...) are stripped and reported in ``dropped``.  A
  schema that cannot be reduced (recursive ``$ref``, ``allOf``, ``not``, non-string enums) is sent unchanged as
  ``parametersJsonSchema`` instead.
* Dropped (reported in HttpRequest.dropped): ``user``, ``metadata``, ``messages[].name``,
  ``tools[].strict`` (when true), ``logit_bias``, ``parallel_tool_calls=false``
  (Gemini cannot forbid parallel calls), image ``detail``, and other dialects' unmodelled fields.
  ``frequency_penalty``/``presence_penalty`` map to ``frequencyPenalty``/``presencePenalty``.
* ``n`` -> ``candidateCount``; a non-streamed answer's candidates 1.. become
  ``ChatResponse.more_choices`` (the OpenAI encoder's choices 1..); a stream follows candidate 0
  only (the gateway refuses a streamed ``n`` > 1: a canonical stream has one choice).
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlparse

import orjson

from fareway.adapters.base import ScrubbingAdapter, json_body
from fareway.adapters.gemini_errors import classify, error_object
from fareway.adapters.gemini_stream import ChunkProcessor, GeminiStreamParser
from fareway.errors import BadRequest, UpstreamError
from fareway.events import Accumulator
from fareway.types import (
    ChatRequest,
    ChatResponse,
    Dialect,
    HttpRequest,
    ImagePart,
    Message,
    OpaquePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Upstream,
)

_SKIP_SIGNATURE = "skip_thought_signature_validator"
"""Google's documented placeholder for a function call whose signature is unknown (a history
carried over from another model); accepted by Gemini 3, which otherwise 400s."""

_NEEDS_SIGNATURE = re.compile(r"(^|/)gemini-3")

_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
"""The Schema fields Gemini's ``parameters`` accepts (OpenAPI 3.0 subset, v1beta Schema)."""

_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})
"""The only ``format`` values ``parameters`` accepts; others (uri, email...) are stripped."""

_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]+)?(?:;[^,]*)?;base64,(?P<data>.*)$", re.DOTALL)

# OpenAI/Anthropic request fields that are meaningless for Gemini and safe to drop (reported).
_PENALTIES = {"frequency_penalty": "frequencyPenalty", "presence_penalty": "presencePenalty"}
_IGNORED_EXTENSION_KEYS = frozenset({"stream_options", "parallel_tool_calls", "role"})


MAX_SCHEMA_DEPTH = 64
"""Deepest tool schema (objects within objects, ``$ref`` hops counted) translated for Gemini."""
MAX_SCHEMA_NODES = 5_000
"""Most schema objects visited while translating one tool's parameters."""


class _Unreducible(Exception):
    """The schema uses a feature ``parameters`` cannot express."""


def _resolve_ref(ref: str, root: Mapping[str, Any]) -> dict[str, Any]:
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            target = (root.get(prefix[2:-1]) or {}).get(ref[len(prefix) :])
            if isinstance(target, dict):
                return target
    raise _Unreducible(f"unresolvable $ref {ref}")


class _Budget:
    """Bounds on one schema's translation: nesting (refused beyond it, before Python's recursion
    limit) and nodes visited (a ``$ref`` used twice per level doubles the work per level: past the
    budget the schema goes to Gemini untranslated, as ``parametersJsonSchema``)."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = 0


def _reduce_schema(
    schema: Any,
    root: Mapping[str, Any],
    stripped: set[str],
    seen: tuple[str, ...] = (),
    depth: int = 0,
    budget: _Budget | None = None,
) -> Any:
    if not isinstance(schema, dict):
        return schema
    if depth > MAX_SCHEMA_DEPTH:
        raise BadRequest(
            f"a tool's parameters schema nests deeper than {MAX_SCHEMA_DEPTH} levels; flatten it",
            param="tools",
        )
    budget = budget or _Budget()
    budget.nodes += 1
    if budget.nodes > MAX_SCHEMA_NODES:
        raise _Unreducible("schema too large to translate")
    sub = depth + 1
    if "$ref" in schema:
        ref = str(schema["$ref"])
        if ref in seen:
            raise _Unreducible("recursive $ref")
        merged = {**_resolve_ref(ref, root), **{k: v for k, v in schema.items() if k != "$ref"}}
        return _reduce_schema(merged, root, stripped, (*seen, ref), sub, budget)
    if "allOf" in schema or "not" in schema:
        raise _Unreducible("allOf/not")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _reduce_schema(v, root, stripped, seen, sub, budget) for k, v in value.items()}
        elif key == "items":
            out[key] = _reduce_schema(value, root, stripped, seen, sub, budget)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            out["anyOf"] = [_reduce_schema(v, root, stripped, seen, sub, budget) for v in value]
        elif key in ("const", "enum"):
            values = [value] if key == "const" else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise _Unreducible("non-string enum")  # parameters enums are strings only
            out["enum"] = values
        elif key == "format" and value not in _FORMATS:
            stripped.add("format")
        elif key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            if len(kinds) != 1:
                raise _Unreducible("type list")
            out["type"] = kinds[0]
            if "null" in value:
                out["nullable"] = True
        elif key in _SCHEMA_KEYS:
            out[key] = value
        elif key not in ("$defs", "definitions"):
            stripped.add(key)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")
"""A Gemini model (or tuned model) id: what every published id looks like, and nothing that could
change the URL it is put in (no ``/``, ``?``, ``#``, ``%``, ``:``, dot segments or spaces)."""


def model_resource(model: str) -> str:
    """The URL path segment(s) naming ``model``: ``gemini-2.5-flash`` and ``models/gemini-2.5-flash``
    are ``models/gemini-2.5-flash``; ``tunedModels/x`` stays.  Raises BadRequest for anything else,
    so a model name can never reach another path of the provider's host (with the stored key)."""
    collection, name = "models", model
    for prefix in ("models/", "tunedModels/"):
        if model.startswith(prefix):
            collection, name = prefix[:-1], model[len(prefix) :]
            break
    if not _MODEL_NAME.fullmatch(name):
        shown = model if len(model) <= 80 else model[:80] + "..."
        raise BadRequest(
            f"{shown!r} is not a valid Gemini model id (letters, digits, '.', '_' and '-' only, "
            "optionally after 'models/' or 'tunedModels/')",
            param="model",
        )
    return f"{collection}/{quote(name, safe='')}"


def gemini_tool(spec: ToolSpec, dropped: list[str]) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": spec.name}
    if spec.strict and "tools[].strict" not in dropped:
        dropped.append("tools[].strict")  # Gemini has no strict mode for function declarations
    if spec.description is not None:
        decl["description"] = spec.description
    stripped: set[str] = set()
    try:
        decl["parameters"] = _reduce_schema(spec.parameters, spec.parameters, stripped)
    except _Unreducible:
        decl["parametersJsonSchema"] = spec.parameters
    else:
        for key in sorted(stripped):
            note = f"tools.parameters.{key}"
            if note not in dropped:
                dropped.append(note)
    return decl


# ------------------------------------------------------------------------------ contents


def _image(part: ImagePart, dropped: list[str]) -> dict[str, Any]:
    if part.detail not in (None, "auto") and "image_detail" not in dropped:
        dropped.append("image_detail")
    if part.data is not None:
        return {"inlineData": {"mimeType": part.media_type or "application/octet-stream", "data": part.data}}
    url = part.url or ""
    m = _DATA_URL.match(url)
    if m:
        return {
            "inlineData": {"mimeType": m.group("mime") or "application/octet-stream", "data": m.group("data")}
        }
    file_data: dict[str, Any] = {"fileUri": url}
    mime = part.media_type or mimetypes.guess_type(urlparse(url).path)[0]
    if mime:
        file_data["mimeType"] = mime
    return {"fileData": file_data}


def _tool_result_parts(
    result: ToolResultPart, names: Mapping[str, tuple[str, bool]], dropped: list[str]
) -> list[dict[str, Any]]:
    known = names.get(result.tool_call_id)
    name = result.name or (known[0] if known else None)
    if not name:
        raise BadRequest(
            f"tool result for tool call id {result.tool_call_id!r} names no function and no earlier "
            "tool call has that id; Gemini needs the function name",
            param="messages",
        )
    text = result.text()
    response: dict[str, Any]
    parsed: Any = None
    if text.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
    if result.is_error:
        response = {"error": parsed if isinstance(parsed, dict) else text}
    elif isinstance(parsed, dict):
        response = parsed
    else:
        response = {"result": text}
    fr: dict[str, Any] = {"name": name, "response": response}
    gem = result.extensions.get("gemini", {})
    if gem.get("id"):
        fr["id"] = gem["id"]
    elif known and known[1]:
        fr["id"] = result.tool_call_id
    out: list[dict[str, Any]] = [{"functionResponse": fr}]
    # Images returned by a tool travel as plain parts after the response.
    out += [_image(p, dropped) for p in result.content if isinstance(p, ImagePart)]
    return out


def _model_parts(msg: Message, model: str, dropped: list[str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    pending: str | None = None  # signature waiting for the next text/functionCall part
    first_call = True

    def flush() -> None:
        # A pending signature that no part can take (another signed part comes first) goes back
        # on its own empty text part, where Gemini put it.
        nonlocal pending
        if pending:
            parts.append({"text": "", "thoughtSignature": pending})
        pending = None

    def take(own: str | None) -> str | None:
        """The signature for the part about to be sent: its own, else the pending one."""
        nonlocal pending
        if own and pending and own != pending:
            flush()
        sig = own or pending
        pending = None
        return sig

    for p in msg.content:
        gem = p.extensions.get("gemini", {})
        if isinstance(p, ThinkingPart):
            # Thought summaries are not sent back (neither google's own clients in the recordings
            # nor Gemini need them); only the signature carries the reasoning state.
            if p.signature:
                flush()
                pending = p.signature
        elif isinstance(p, TextPart):
            part: dict[str, Any] = {"text": p.text}
            if not p.text and not gem.get("thoughtSignature") and not pending:
                continue
            sig = take(gem.get("thoughtSignature"))
            if sig:
                part["thoughtSignature"] = sig
            parts.append(part)
        elif isinstance(p, ToolCallPart):
            try:
                args = p.parsed_arguments()
            except ValueError as exc:
                raise BadRequest(str(exc), param="messages") from exc
            call: dict[str, Any] = {"name": p.name, "args": args if args is not None else {}}
            if gem.get("id") and gem["id"] == p.id:
                call["id"] = p.id
            part = {"functionCall": call}
            sig = take(gem.get("thoughtSignature"))
            if not sig and first_call and _NEEDS_SIGNATURE.search(model):
                sig = _SKIP_SIGNATURE
            if sig:
                part["thoughtSignature"] = sig
            first_call = False
            parts.append(part)
        elif isinstance(p, ImagePart):
            parts.append(_image(p, dropped))
        elif isinstance(p, OpaquePart):
            if p.dialect != "gemini":
                raise BadRequest(
                    f"a {p.dialect} {p.data.get('type', 'block')!r} block cannot be sent to Gemini"
                )
            parts.append(dict(p.data))
        else:
            raise BadRequest(f"a {p.kind} part cannot appear in an assistant message", param="messages")
    flush()
    return parts


def _user_parts(msg: Message, dropped: list[str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for p in msg.content:
        if isinstance(p, TextPart):
            parts.append({"text": p.text})
        elif isinstance(p, ImagePart):
            parts.append(_image(p, dropped))
        elif isinstance(p, OpaquePart) and p.dialect == "gemini":
            parts.append(dict(p.data))
        else:
            raise BadRequest(f"a {p.kind} part cannot be sent to Gemini in a user message", param="messages")
    return parts


def build_contents(
    req: ChatRequest, model: str, dropped: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents) for the conversation."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, tuple[str, bool]] = {}  # call id -> (function name, id issued by Gemini)
    prev_tool = False
    for msg in req.messages:
        if msg.name and "messages[].name" not in dropped:
            dropped.append("messages[].name")  # Gemini contents carry no participant name
        if msg.role == "system":
            system += [{"text": p.text} for p in msg.content if isinstance(p, TextPart)]
            if any(not isinstance(p, TextPart) for p in msg.content):
                raise BadRequest("system messages sent to Gemini may contain only text", param="messages")
            prev_tool = False
            continue
        if msg.role == "tool":
            parts: list[dict[str, Any]] = []
            for p in msg.content:
                if isinstance(p, ToolResultPart):
                    parts += _tool_result_parts(p, names, dropped)
                elif isinstance(p, TextPart):
                    parts.append({"text": p.text})
                elif isinstance(p, ImagePart):
                    parts.append(_image(p, dropped))
            if prev_tool and contents:
                contents[-1]["parts"] += parts
            else:
                contents.append({"role": "user", "parts": parts})
            prev_tool = True
            continue
        prev_tool = False
        if msg.role == "assistant":
            for p in msg.content:
                if isinstance(p, ToolCallPart):
                    gem_id = p.extensions.get("gemini", {}).get("id")
                    names[p.id] = (p.name, bool(gem_id) and gem_id == p.id)
            parts = _model_parts(msg, model, dropped)
            contents.append({"role": "model", "parts": parts or [{"text": ""}]})
        else:
            # Anthropic-style user turns may carry tool results: split them out as functionResponses.
            results = [p for p in msg.content if isinstance(p, ToolResultPart)]
            rest = Message(msg.role, [p for p in msg.content if not isinstance(p, ToolResultPart)])
            parts = []
            for r in results:
                parts += _tool_result_parts(r, names, dropped)
            parts += _user_parts(rest, dropped)
            contents.append({"role": "user", "parts": parts or [{"text": ""}]})
    return system, contents


# ------------------------------------------------------------------------------ config


def _thinking_config(req: ChatRequest) -> dict[str, Any] | None:
    t = req.thinking
    if t is None:
        return None
    if t.type == "disabled" or t.effort == "none":
        return {"thinkingBudget": 0}
    cfg: dict[str, Any] = {"includeThoughts": True}
    if t.budget_tokens is not None:
        cfg["thinkingBudget"] = t.budget_tokens
    elif t.effort:
        cfg["thinkingLevel"] = "low" if t.effort == "minimal" else t.effort
    elif t.type == "adaptive":
        cfg["thinkingBudget"] = -1
    return cfg


def _generation_config(req: ChatRequest, dropped: list[str]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for key, value in (
        ("temperature", req.temperature),
        ("topP", req.top_p),
        ("topK", req.top_k),
        ("maxOutputTokens", req.max_tokens),
        ("candidateCount", req.n),
        ("seed", req.seed),
    ):
        if value is not None:
            cfg[key] = value
    if req.stop:
        cfg["stopSequences"] = list(req.stop)
    rf = req.response_format
    if rf is not None and rf.type != "text":
        cfg["responseMimeType"] = "application/json"
        if rf.type == "json_schema":
            if rf.schema is None:
                raise BadRequest("response_format json_schema needs a schema", param="response_format")
            cfg["responseJsonSchema"] = rf.schema
    thinking = _thinking_config(req)
    if thinking is not None:
        cfg["thinkingConfig"] = thinking
    return cfg


def _tool_config(req: ChatRequest, dropped: list[str]) -> dict[str, Any] | None:
    tc = req.tool_choice
    if tc is None:
        return None
    if tc.parallel is False and "parallel_tool_calls" not in dropped:
        dropped.append("parallel_tool_calls")
    if not req.tools:
        if tc.mode in ("required", "tool"):
            raise BadRequest("tool_choice requires a tool but no tools were given", param="tool_choice")
        return None
    if tc.mode == "tool":
        if not tc.name:
            raise BadRequest("tool_choice of a named tool needs the name", param="tool_choice")
        fcc: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [tc.name]}
    else:
        fcc = {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[tc.mode]}
    return {"functionCallingConfig": fcc}


def _foreign_extensions(req: ChatRequest, cfg: dict[str, Any], dropped: list[str]) -> None:
    """Fields other dialects carried that the canonical model does not know.  The gateway's own
    ``fareway`` namespace (``max_tokens_field``: how the client spelt ``max_tokens``) is not a
    client parameter: it is never reported as dropped."""
    for dialect, fields in req.extensions.items():
        if dialect in ("gemini", "fareway"):
            continue
        for key, value in fields.items():
            if key in _PENALTIES:
                if value is not None:
                    cfg[_PENALTIES[key]] = value
            elif value is not None and key not in _IGNORED_EXTENSION_KEYS and key not in dropped:
                dropped.append(key)


class GeminiAdapter(ScrubbingAdapter):
    dialect: Dialect = "gemini"

    def _build_request(self, req: ChatRequest, up: Upstream) -> HttpRequest:
        dropped: list[str] = []
        if req.user is not None:
            dropped.append("user")
        if req.metadata:
            dropped.append("metadata")
        system, contents = build_contents(req, up.model, dropped)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        if req.tools:
            body["tools"] = [{"functionDeclarations": [gemini_tool(t, dropped) for t in req.tools]}]
        tool_config = _tool_config(req, dropped)
        if tool_config is not None:
            body["toolConfig"] = tool_config
        cfg = _generation_config(req, dropped)
        _foreign_extensions(req, cfg, dropped)
        if cfg:
            body["generationConfig"] = cfg
        for key, value in req.extensions.get("gemini", {}).items():
            # Same-dialect pass-through (safetySettings, cachedContent, ...); nested configs merge.
            if isinstance(value, dict) and isinstance(body.get(key), dict):
                body[key] = {**value, **body[key]}
            else:
                body.setdefault(key, value)
        base = up.base_url.rstrip("/")
        resource = model_resource(up.model)
        if req.stream:
            url = f"{base}/{resource}:streamGenerateContent?alt=sse"
        else:
            url = f"{base}/{resource}:generateContent"
        headers = {"content-type": "application/json", **up.extra_headers}
        if up.api_key:
            headers[up.auth_header] = f"{up.auth_scheme} {up.api_key}" if up.auth_scheme else up.api_key
        return HttpRequest("POST", url, headers, json_body(body), stream=req.stream, dropped=dropped)

    def _parse_response(self, body: bytes, up: Upstream) -> ChatResponse:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                f"gemini sent a body that is not JSON: {body[:200]!r}", provider=up.provider
            ) from exc
        if error_object(payload) is not None:
            raise classify(0, {}, body, provider=up.provider, payload=payload)
        chunks = payload if isinstance(payload, list) else [payload]
        resp = _candidate_response(chunks, up, 0)
        # candidateCount > 1: every further candidate is one more choice (its own pass over the
        # chunks; usage, for all candidates, stays on choice 0)
        others = ChunkProcessor(up)
        for chunk in chunks:
            others.process(chunk)
        for index in sorted(i for i in others.other_candidates if i > 0):
            more = _candidate_response(chunks, up, index)
            more.usage = None
            resp.more_choices.append(more)
        return resp

    def _parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        return classify(status, headers, body, provider=up.provider)

    def _stream_parser(self, up: Upstream) -> GeminiStreamParser:
        return GeminiStreamParser(up)


def _candidate_response(chunks: list[Any], up: Upstream, candidate: int) -> ChatResponse:
    proc = ChunkProcessor(up, candidate)
    acc = Accumulator()
    for chunk in chunks:
        for event in proc.process(chunk):
            acc.add(event)
    return acc.result()


ADAPTER = GeminiAdapter()

__all__ = ["ADAPTER", "GeminiAdapter", "build_contents", "gemini_tool"]
