"""Gemini native ``generateContent`` / ``streamGenerateContent``, shaped after the pydantic-ai and
llm-gemini recordings.

* ``?alt=sse`` streams ``data: {...}\\r\\n\\r\\n`` frames (CRLF, no ``event:``, no ``[DONE]``), each with
  cumulative ``usageMetadata``; without ``alt=sse`` the stream is one JSON array, as the API does.
* Function calls arrive whole, finish with ``finishReason: "STOP"``; gemini-2.x calls carry no id,
  gemini-3 calls carry an ``id`` and a ``thoughtSignature`` (2.5 a signature only, as recorded).
  (The recordings show gemini-3 calls without ids too; ids are simulated for 3.x so the gateway's
  id-present path is exercised.)
* Thinking models (2.5, 3) report ``thoughtsTokenCount``; ``thinkingConfig.includeThoughts`` adds
  ``thought: true`` text parts.  ``candidatesTokenCount`` excludes thoughts.
* ``generationConfig`` (camelCase or snake_case): ``maxOutputTokens`` (``MAX_TOKENS``; thinking
  counts against it), ``stopSequences`` (at most 5; ``STOP``), ``candidateCount`` (1-8 candidates
  with their ``index``, streamed one candidate per chunk), ``responseMimeType`` ``application/json``
  with ``responseJsonSchema`` or the OpenAPI-style ``responseSchema`` (two-space indented JSON, as
  recorded), ``text/x.enum`` (one enum value).  Several function declarations give parallel calls;
  ``allowedFunctionNames`` narrows them.
* Errors are ``{"error": {"code", "message", "status"}}``; 429 is ``RESOURCE_EXHAUSTED`` with a
  ``RetryInfo`` detail.  Auth is ``x-goog-api-key`` (or ``?key=``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from aiohttp import web

from fareway.sim.content import Ask, Reply, rand_id, words
from fareway.sim.faults import Fault
from fareway.sim.runtime import BadRequest, Ctx, Dialect, Frame, Parsed

_JSON = {"Content-Type": "application/json; charset=UTF-8"}
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
_CHUNK_PIECES = 8


def _is_thinking_model(model: str) -> bool:
    return "2.5" in model or "gemini-3" in model


def _thought_signature(seed: int, i: int) -> str:
    raw = hashlib.sha256(seed.to_bytes(8, "little") + bytes([i])).digest() * 4
    return base64.b64encode(b"\n" + raw).decode()


def _parts_text(parts: Any) -> tuple[str, bool]:
    """(text of the parts, whether any is a functionResponse)."""
    out = []
    has_response = False
    for p in parts if isinstance(parts, list) else ():
        if not isinstance(p, dict):
            continue
        if isinstance(p.get("text"), str):
            out.append(p["text"])
        elif isinstance(p.get("functionCall"), dict):
            fc = p["functionCall"]
            out.append(f"{fc.get('name', '')} {orjson.dumps(fc.get('args', {})).decode()}")
        elif isinstance(p.get("functionResponse"), dict):
            has_response = True
            fr = p["functionResponse"]
            out.append(f"{fr.get('name', '')} {orjson.dumps(fr.get('response', {})).decode()}")
    return "\n".join(out), has_response


def _g(d: Any, camel: str, snake: str) -> Any:
    """A field under its JSON (camelCase) or proto (snake_case) name: the API accepts both."""
    if not isinstance(d, dict):
        return None
    v = d.get(camel)
    return d.get(snake) if v is None else v


def _output(gc: dict[str, Any]) -> tuple[str, Any]:
    """(output kind, schema) from ``responseMimeType`` and ``responseJsonSchema``/``responseSchema``."""
    mime = str(_g(gc, "responseMimeType", "response_mime_type") or "text/plain").lower()
    schema = _g(gc, "responseJsonSchema", "response_json_schema")
    if schema is None:
        schema = _g(gc, "responseSchema", "response_schema")
    if schema is not None and not isinstance(schema, dict):
        raise BadRequest(400, "* GenerationConfig.response_schema: invalid schema")
    if mime == "application/json":
        return "json", schema
    if mime == "text/x.enum":
        if schema is None or not isinstance(schema.get("enum"), list):
            raise BadRequest(400, "* GenerationConfig.response_schema: text/x.enum needs an enum schema")
        return "enum", schema
    if schema is not None:
        raise BadRequest(
            400,
            "* GenerationConfig.response_mime_type: a response schema needs response_mime_type "
            "application/json or text/x.enum",
        )
    return "text", None


def _replies(ctx: Ctx) -> list[Reply]:
    return ctx.replies or [ctx.reply]


def _visible(reply: Reply) -> int:
    return reply.output_tokens - reply.thinking_tokens


class GeminiDialect(Dialect):
    def auth_ok(self, request: web.Request, provider: str) -> bool:
        return bool(request.headers.get("x-goog-api-key") or request.query.get("key"))

    def parse(self, data: Any, provider: str, request: web.Request) -> Parsed:
        target = request.match_info.get("target", "")
        model, _, method = target.partition(":")
        if method not in ("generateContent", "streamGenerateContent") or not model:
            raise BadRequest(
                404, f"models/{target} is not found for API version v1beta, or is not supported."
            )
        contents = data.get("contents")
        if not isinstance(contents, list) or not contents:
            raise BadRequest(400, "* GenerateContentRequest.contents: contents is not specified")
        key_parts: list[str] = []
        n_words = 0
        si = data.get("systemInstruction") or data.get("system_instruction")
        system_text = ""
        if isinstance(si, dict):
            text, _ = _parts_text(si.get("parts"))
            n_words += words(text)
            key_parts.append("system:" + text)
            system_text = text
        has_response = False
        for c in contents:
            if not isinstance(c, dict):
                raise BadRequest(400, "* GenerateContentRequest.contents: invalid content")
            text, has_response = _parts_text(c.get("parts"))
            role = "assistant" if c.get("role") == "model" else str(c.get("role", "user"))
            n_words += words(text)
            key_parts.append(f"{role}:{text}")
        tools: list[tuple[str, Any]] = []
        for t in data.get("tools") or ():
            for fd in (
                (t.get("functionDeclarations") or t.get("function_declarations") or ())
                if isinstance(t, dict)
                else ()
            ):
                if isinstance(fd, dict) and isinstance(fd.get("name"), str):
                    schema = (
                        fd.get("parameters")
                        or fd.get("parametersJsonSchema")
                        or fd.get("parameters_json_schema")
                        or {}
                    )
                    tools.append((fd["name"], schema))
        prompt = n_words + 3 * len(contents) + 3
        if tools:
            prompt += len(orjson.dumps(data.get("tools"))) // 4
            key_parts.append("tools:" + ",".join(n for n, _ in tools))
        fcc = (
            ((data.get("toolConfig") or {}).get("functionCallingConfig") or {})
            if isinstance(data.get("toolConfig"), dict)
            else {}
        )
        mode = "auto"
        allowed: tuple[str, ...] | None = None
        fmode = str(fcc.get("mode", "AUTO")).upper()
        if fmode == "NONE":
            mode = "none"
        elif fmode == "ANY":
            names = _g(fcc, "allowedFunctionNames", "allowed_function_names") or []
            mode = "tool:" + names[0] if len(names) == 1 else "required"
            allowed = tuple(str(n) for n in names) or None
        gc = data.get("generationConfig") or data.get("generation_config") or {}
        if not isinstance(gc, dict):
            raise BadRequest(400, "* GenerateContentRequest.generation_config: invalid value")
        tc = _g(gc, "thinkingConfig", "thinking_config") or {}
        thinking = _is_thinking_model(model) and _g(tc, "thinkingBudget", "thinking_budget") != 0
        last = contents[-1]
        echo = None
        last_text = ""
        parts = last.get("parts") if isinstance(last, dict) else None
        if (
            last.get("role", "user") == "user"
            and isinstance(parts, list)
            and parts
            and isinstance(parts[0], dict)
        ):
            last_text, _ = _parts_text(parts)
            t0 = parts[0].get("text")
            if isinstance(t0, str) and t0.startswith("echo:"):
                echo = t0[5:].removeprefix(" ")
        max_out = _g(gc, "maxOutputTokens", "max_output_tokens")
        stops = _g(gc, "stopSequences", "stop_sequences") or []
        if not isinstance(stops, list) or len(stops) > 5:
            raise BadRequest(400, "* GenerationConfig.stop_sequences: at most 5 stop sequences are allowed")
        output, schema = _output(gc)
        n = _g(gc, "candidateCount", "candidate_count")
        if n is None:
            n = 1
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 8:
            raise BadRequest(400, "* GenerationConfig.candidate_count: must be between 1 and 8")
        ask = Ask(
            key="\x00".join(key_parts).encode(),
            prompt_tokens=prompt,
            max_tokens=int(max_out) if isinstance(max_out, int) and max_out > 0 else None,
            tools=tools,
            tool_mode=mode,
            last_is_tool_result=has_response,
            echo=echo,
            thinking=thinking,
            allowed=allowed,
            n=n,
            stop=tuple(x for x in stops if isinstance(x, str) and x),
            output=output,
            schema=schema,
            json_indent=True,
            hint=f"{system_text}\n{last_text}",
        )
        stream = method == "streamGenerateContent"
        include = bool(_g(tc, "includeThoughts", "include_thoughts"))
        opts = {"include_thoughts": include, "sse": request.query.get("alt") == "sse"}
        return Parsed(model=model, stream=stream, ask=ask, opts=opts)

    def stream_type(self, parsed: Parsed) -> tuple[str, str | None]:
        return ("text/event-stream", None) if parsed.opts.get("sse") else ("application/json", "UTF-8")

    # --- rendering -------------------------------------------------------------------------------

    def _usage(self, ctx: Ctx, candidates: int) -> dict[str, Any]:
        thoughts = sum(r.thinking_tokens for r in _replies(ctx))
        u: dict[str, Any] = {"promptTokenCount": ctx.prompt_tokens}
        if candidates:
            u["candidatesTokenCount"] = candidates
        u["totalTokenCount"] = ctx.prompt_tokens + candidates + thoughts
        u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": ctx.prompt_tokens}]
        if thoughts:
            u["thoughtsTokenCount"] = thoughts
        return u

    def _call_parts(self, ctx: Ctx, reply: Reply) -> list[dict[str, Any]]:
        model = ctx.model
        with_id = "gemini-3" in model
        signed = _is_thinking_model(model)
        parts = []
        for i, c in enumerate(reply.tool_calls):
            fc: dict[str, Any] = {"name": c.name, "args": c.args}
            if with_id:
                fc["id"] = rand_id(8).lower()
            part: dict[str, Any] = {"functionCall": fc}
            if signed and i == 0:
                part["thoughtSignature"] = _thought_signature(reply.seed, i)
            parts.append(part)
        return parts

    def _candidate(
        self, reply: Reply, index: int, parts: list[dict[str, Any]] | None, finish: bool
    ) -> dict[str, Any]:
        content: dict[str, Any] = (
            {"parts": parts, "role": "model"} if parts is not None else {"role": "model"}
        )
        cand: dict[str, Any] = {"content": content}
        if finish:
            cand["finishReason"] = "MAX_TOKENS" if reply.finish == "length" else "STOP"
            if reply.tool_calls:
                cand["finishMessage"] = "Model generated function call(s)."
        cand["index"] = index
        return cand

    def _doc(self, ctx: Ctx, cands: list[dict[str, Any]], candidates: int, rid: str) -> dict[str, Any]:
        return {
            "candidates": cands,
            "usageMetadata": self._usage(ctx, candidates),
            "modelVersion": ctx.model,
            "responseId": rid,
        }

    def render_json(self, ctx: Ctx) -> bytes:
        cands = []
        for i, r in enumerate(_replies(ctx)):
            parts: list[dict[str, Any]] = []
            if r.thinking and ctx.opts.get("include_thoughts"):
                parts.append({"text": "".join(r.thinking), "thought": True})
            if r.tool_calls:
                parts.extend(self._call_parts(ctx, r))
            elif r.pieces:
                parts.append({"text": r.text})
            cands.append(self._candidate(r, i, parts or None, True))
        visible = sum(_visible(r) for r in _replies(ctx))
        return orjson.dumps(self._doc(ctx, cands, visible, rand_id(23)))

    def _stream_entries(self, ctx: Ctx, r: Reply, i: int) -> list[tuple[dict[str, Any], int, int]]:
        """(candidate, tokens the chunk carries, visible tokens it adds) for one candidate's chunks."""
        out: list[tuple[dict[str, Any], int, int]] = []
        if r.thinking and ctx.opts.get("include_thoughts"):
            part = {"text": "".join(r.thinking), "thought": True}
            out.append((self._candidate(r, i, [part], False), r.thinking_tokens, 0))
        if r.tool_calls:
            n = _visible(r)
            out.append((self._candidate(r, i, self._call_parts(ctx, r), False), n, n))
            out.append((self._candidate(r, i, [{"text": ""}], True), 0, 0))
        elif r.pieces:
            total = len(r.pieces)
            for k in range(0, total, _CHUNK_PIECES):
                chunk = r.pieces[k : k + _CHUNK_PIECES]
                last = k + _CHUNK_PIECES >= total
                cand = self._candidate(r, i, [{"text": "".join(chunk)}], last)
                out.append((cand, len(chunk), len(chunk) + (r.hidden_tokens if last else 0)))
        else:
            out.append((self._candidate(r, i, [{"text": ""}], True), 0, r.hidden_tokens))
        return out

    def render_frames(self, ctx: Ctx) -> list[Frame]:
        rid = rand_id(23)
        sse = bool(ctx.opts.get("sse"))
        groups = [self._stream_entries(ctx, r, i) for i, r in enumerate(_replies(ctx))]
        entries = [e for k in range(max(map(len, groups))) for g in groups if k < len(g) for e in (g[k],)]
        bodies: list[tuple[dict[str, Any], int]] = []
        sent = 0
        for cand, tokens, visible in entries:
            sent += visible
            bodies.append((self._doc(ctx, [cand], sent, rid), tokens))
        if sse:
            return [(b"data: " + orjson.dumps(b) + b"\r\n\r\n", t) for b, t in bodies]
        frames: list[Frame] = []
        for i, (b, t) in enumerate(bodies):
            frames.append(((b"[" if i == 0 else b"\n,\r\n") + orjson.dumps(b), t))
        frames.append((b"]", 0))
        return frames

    # --- errors ----------------------------------------------------------------------------------

    def error_response(
        self,
        provider: str,
        status: int,
        message: str,
        etype: str | None = None,
        code: Any = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
        details: list[Any] | None = None,
    ) -> web.Response:
        err: dict[str, Any] = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
        if details:
            err["details"] = details
        return web.Response(
            body=orjson.dumps({"error": err}), status=status, headers={**_JSON, **(headers or {})}
        )

    def fault_response(self, provider: str, fault: Fault) -> web.Response:
        kind = fault.kind
        ra = fault.retry_after if fault.retry_after is not None else 1.0
        if kind in ("429", "quota"):
            msg = fault.message or (
                "You exceeded your current quota, please check your plan and billing details."
                if kind == "quota"
                else "Resource has been exhausted (e.g. check quota)."
            )
            details: list[Any] = [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{ra:g}s"}
            ]
            if kind == "quota":
                details.insert(0, {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []})
            return self.error_response(
                provider, 429, msg, headers={"retry-after": str(max(1, round(ra)))}, details=details
            )
        status = fault.status or (500 if kind == "stream_error" else int(kind))
        msg = fault.message or (
            "The model is overloaded. Please try again later."
            if status in (503, 529)
            else "An internal error has occurred."
        )
        headers = {"retry-after": str(max(1, round(ra)))} if fault.retry_after is not None else None
        return self.error_response(provider, status, msg, headers=headers)

    def stream_error_frames(self, ctx: Ctx, fault: Fault) -> bytes:
        status = fault.status or 500
        msg = fault.message or "An internal error has occurred."
        body = orjson.dumps(
            {"error": {"code": status, "message": msg, "status": _STATUS.get(status, "INTERNAL")}}
        )
        if ctx.opts.get("sse"):
            return b"data: " + body + b"\r\n\r\n"
        return b"\n,\r\n" + body + b"]"

    def success_headers(self, provider: str) -> dict[str, str]:
        return _JSON
