"""The OpenAI Responses API (``POST /{provider}/v1/responses``), as OpenAI shapes it.

Shapes follow the recordings in ``../shared/fixtures/openai-responses`` (``test_responses_*``):
``resp_``/``msg_``/``fc_``/``rs_`` ids of 50 hex digits, ``call_`` ids, the effective config echoed
(omitted ``strict`` on a function tool becomes ``true`` with ``additionalProperties: false``), usage
with ``input_tokens_details`` / ``output_tokens_details``, and the stream OpenAI sends:
``response.created``, ``response.in_progress``, per output item ``response.output_item.added`` ..
``response.output_item.done`` (with ``content_part`` / ``output_text`` / ``function_call_arguments``
/ ``reasoning_summary_*`` events between, each delta with an ``obfuscation`` pad), then
``response.completed`` (``response.incomplete`` when cut by ``max_output_tokens``); every event
has an ``event:`` line and a ``sequence_number``; no ``[DONE]``.

The simulator keeps no state, as OpenAI with ``store: false``: ``previous_response_id`` and
``item_reference`` are a 400 (so a gateway that keeps state itself is checked to send the full
input), and a ``reasoning`` item is accepted only with ``encrypted_content`` this simulator issued
(OpenAI rejects reasoning it cannot decrypt: a gateway must not send another provider's reasoning).
Reasoning models (``o*``, ``gpt-5*``, or ``reasoning.effort`` other than ``none``) think first; the
reasoning item carries a summary when ``reasoning.summary`` is set and its encrypted content when
``include`` has ``reasoning.encrypted_content``.  Built-in tools are not simulated (a 400).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from aiohttp import web

from fareway.sim.content import Ask, Reply, fragments, rand_hex, rand_id, words
from fareway.sim.faults import Fault
from fareway.sim.openai_dialect import OpenAIDialect
from fareway.sim.runtime import BadRequest, Ctx, Frame, Parsed, _cut_index
from fareway.sse import frame

__all__ = ["ResponsesDialect", "parse_responses"]

_ENC_MAGIC = b"simreasoning:"
_FUNCTION_ONLY = "this simulator runs function tools only; built-in tool {t!r} is not simulated"


def _bad(message: str, param: str | None = None, code: str | None = None) -> BadRequest:
    return BadRequest(400, message, code=code, param=param)


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _enc(seed: int) -> str:
    raw = _ENC_MAGIC + seed.to_bytes(8, "little") + hashlib.sha256(seed.to_bytes(8, "little")).digest() * 4
    return "gAAAAA" + base64.b64encode(raw).decode()


def _enc_ok(value: Any) -> bool:
    if not isinstance(value, str) or not value.startswith("gAAAAA"):
        return False
    try:
        return base64.b64decode(value[6:], validate=True).startswith(_ENC_MAGIC)
    except ValueError:
        return False


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    out = []
    for p in content if isinstance(content, list) else ():
        if isinstance(p, dict) and isinstance(p.get("text"), str):
            out.append(p["text"])
    return "\n".join(out)


def _is_reasoning_model(model: str) -> bool:
    m = model.rsplit("/", 1)[-1]
    return m.startswith(("o1", "o3", "o4", "gpt-5")) and "chat" not in m


def parse_responses(data: dict[str, Any]) -> Parsed:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if data.get("previous_response_id") is not None:
        prev = data["previous_response_id"]
        raise BadRequest(
            400,
            f"Previous response with id '{prev}' not found. Items are not persisted when `store` is set to false.",
            code="previous_response_not_found",
            param="previous_response_id",
        )
    raw = data.get("input")
    items: list[Any] = (
        [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else raw or []
    )
    if not isinstance(items, list) or not items:
        raise _bad("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    key_parts: list[str] = []
    system: list[str] = []
    n_words = 0
    last_kind = ""
    last_text = ""
    instructions = data.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append(instructions)
        key_parts.append(f"system:{instructions}")
        n_words += words(instructions)
    for i, it in enumerate(items):
        if not isinstance(it, dict):
            raise _bad(f"Invalid type for 'input[{i}]': expected an object.", f"input[{i}]")
        kind = it.get("type") or ("message" if "role" in it else "")
        if kind == "item_reference":
            raise BadRequest(
                404,
                f"Item with id '{it.get('id')}' not found. Items are not persisted when `store` is set to false.",
                param="input",
            )
        if kind == "message":
            role = str(it.get("role") or "")
            text = _text_of(it.get("content"))
            if role in ("system", "developer"):
                system.append(text)
            key_parts.append(f"{'system' if role == 'developer' else role}:{text}")
            last_kind, last_text = role, text
        elif kind == "function_call":
            text = f"{it.get('name', '')} {it.get('arguments', '')}"
            key_parts.append(f"assistant:\n{text}")
            last_kind = "assistant"
        elif kind == "function_call_output":
            text = _text_of(it.get("output"))
            key_parts.append(f"tool:{text}")
            last_kind = "tool"
        elif kind == "reasoning":
            if not _enc_ok(it.get("encrypted_content")):
                raise _bad(
                    f"The encrypted content for item {it.get('id')} could not be verified. Reason: Encrypted content "
                    "organization_id did not match the target organization.",
                    "input",
                    "invalid_encrypted_content",
                )
            continue
        else:
            raise _bad(
                f"Invalid value: '{kind}'. Supported item types here: message, function_call, "
                "function_call_output, reasoning.",
                f"input[{i}].type",
                "invalid_value",
            )
        n_words += words(text)
    tools: list[tuple[str, Any]] = []
    for i, t in enumerate(data.get("tools") or []):
        if not isinstance(t, dict) or t.get("type") != "function":
            raise _bad(
                _FUNCTION_ONLY.format(t=t.get("type") if isinstance(t, dict) else t), f"tools[{i}].type"
            )
        if not isinstance(t.get("name"), str):
            raise _bad(
                f"Missing required parameter: 'tools[{i}].name'.",
                f"tools[{i}].name",
                "missing_required_parameter",
            )
        tools.append((t["name"], t.get("parameters") or {}))
    prompt = n_words + 3 * (len(items) + bool(instructions)) + 3
    if tools:
        prompt += len(orjson.dumps(data.get("tools"))) // 4
        key_parts.append("tools:" + ",".join(n for n, _ in tools))
    tc = data.get("tool_choice")
    mode = "auto"
    if tc in ("none", "auto", "required"):
        mode = str(tc)
    elif isinstance(tc, dict) and tc.get("type") == "function" and isinstance(tc.get("name"), str):
        mode = "tool:" + tc["name"]
    reasoning = _as_dict(data.get("reasoning"))
    effort = reasoning.get("effort")
    thinking = (_is_reasoning_model(model) and effort != "none") or (effort not in (None, "none"))
    text_cfg = _as_dict(data.get("text"))
    fmt = _as_dict(text_cfg.get("format"))
    output, schema = "text", None
    if fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("name"), str):
            raise _bad(
                "Missing required parameter: 'text.format.name'.",
                "text.format.name",
                "missing_required_parameter",
            )
        output, schema = (
            "json",
            fmt.get("schema") if isinstance(fmt.get("schema"), dict) else {"type": "object"},
        )
    elif fmt.get("type") == "json_object":
        output = "json"
    mot = data.get("max_output_tokens")
    echo = last_text[5:].removeprefix(" ") if last_kind == "user" and last_text.startswith("echo:") else None
    ask = Ask(
        key="\x00".join(key_parts).encode(),
        prompt_tokens=prompt,
        max_tokens=int(mot) if isinstance(mot, int) and not isinstance(mot, bool) and mot > 0 else None,
        tools=tools,
        tool_mode=mode,
        last_is_tool_result=last_kind == "tool",
        echo=echo,
        thinking=thinking,
        parallel=data.get("parallel_tool_calls") is not False,
        output=output,
        schema=schema,
        hint="\n".join([*system, last_text]),
    )
    include = _as_list(data.get("include"))
    opts = {
        "request": data,
        "encrypted": "reasoning.encrypted_content" in include,
        "summary": reasoning.get("summary") is not None,
    }
    return Parsed(model=model, stream=bool(data.get("stream")), ask=ask, opts=opts)


# --------------------------------------------------------------------------------- rendering


def _id(prefix: str) -> str:
    return f"{prefix}_{rand_hex(50)}"


def _echo(ctx: Ctx, status: str) -> dict[str, Any]:
    req: dict[str, Any] = ctx.opts.get("request") or {}
    tools = []
    for t in req.get("tools") or []:
        t = dict(t)
        if t.get("strict") is None:
            t["strict"] = True
            params = dict(t.get("parameters") or {})
            params.setdefault("additionalProperties", False)
            t["parameters"] = params
        tools.append(t)
    reasoning = _as_dict(req.get("reasoning"))
    return {
        "id": ctx.opts["response_id"],
        "object": "response",
        "created_at": ctx.created,
        "status": status,
        "background": False,
        "completed_at": ctx.created if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": ctx.model,
        "output": [],
        "parallel_tool_calls": req.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": "default" if status != "in_progress" else "auto",
        "store": req.get("store", True),
        "temperature": req.get("temperature", 1.0),
        "text": {"format": (req.get("text") or {}).get("format") or {"type": "text"}, "verbosity": "medium"},
        "tool_choice": req.get("tool_choice", "auto"),
        "tools": tools,
        "top_p": req.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": req.get("metadata") or {},
    }


def _usage(ctx: Ctx) -> dict[str, Any]:
    r = ctx.reply
    return {
        "input_tokens": ctx.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": r.output_tokens,
        "output_tokens_details": {"reasoning_tokens": r.thinking_tokens},
        "total_tokens": ctx.prompt_tokens + r.output_tokens,
    }


def _items(ctx: Ctx) -> list[dict[str, Any]]:
    """The output items of the reply, with their final content (ids minted once per response)."""
    cached = ctx.opts.get("items")
    if cached is not None:
        return list(cached)
    r: Reply = ctx.reply
    items: list[dict[str, Any]] = []
    if r.thinking:
        item: dict[str, Any] = {"id": _id("rs"), "type": "reasoning", "summary": []}
        if ctx.opts.get("summary"):
            item["summary"] = [{"type": "summary_text", "text": "".join(r.thinking)}]
        if ctx.opts.get("encrypted"):
            item["encrypted_content"] = _enc(r.seed)
        items.append(item)
    for c in r.tool_calls:
        items.append(
            {
                "id": _id("fc"),
                "type": "function_call",
                "status": "completed",
                "arguments": c.arguments,
                "call_id": "call_" + rand_id(24),
                "name": c.name,
            }
        )
    if r.pieces or not r.tool_calls:
        items.append(
            {
                "id": _id("msg"),
                "type": "message",
                "status": "completed",
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": r.text}],
                "role": "assistant",
            }
        )
    ctx.opts["items"] = items
    return list(items)


def _status(ctx: Ctx) -> str:
    return "incomplete" if ctx.reply.finish == "length" else "completed"


def render_response(ctx: Ctx) -> bytes:
    body = _echo(ctx, _status(ctx))
    body["output"] = _items(ctx)
    body["usage"] = _usage(ctx)
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)


class _Events:
    def __init__(self) -> None:
        self.seq = 0
        self.frames: list[Frame] = []

    def add(self, kind: str, body: dict[str, Any], tokens: int = 0) -> None:
        data = {"type": kind, **body, "sequence_number": self.seq}
        self.seq += 1
        self.frames.append((frame(orjson.dumps(data), kind), tokens))


def _pad(rng: Any) -> str:
    return rand_id(rng.randint(2, 15))


def render_events(ctx: Ctx) -> list[Frame]:
    ev = _Events()
    ev.add("response.created", {"response": _echo(ctx, "in_progress")})
    ev.add("response.in_progress", {"response": _echo(ctx, "in_progress")})
    r = ctx.reply
    for oi, item in enumerate(_items(ctx)):
        iid = item["id"]
        if item["type"] == "reasoning":
            added = {**item, "summary": []}
            if "encrypted_content" in item:
                added["encrypted_content"] = item["encrypted_content"][:40]  # a placeholder, as OpenAI sends
            ev.add("response.output_item.added", {"item": added, "output_index": oi})
            if item["summary"]:
                part = {"type": "summary_text", "text": ""}
                base = {"item_id": iid, "output_index": oi, "summary_index": 0}
                ev.add("response.reasoning_summary_part.added", {**base, "part": part})
                for piece in r.thinking:
                    ev.add(
                        "response.reasoning_summary_text.delta",
                        {**base, "delta": piece, "obfuscation": _pad(ctx.rng)},
                        1,
                    )
                text = item["summary"][0]["text"]
                ev.add("response.reasoning_summary_text.done", {**base, "text": text})
                ev.add(
                    "response.reasoning_summary_part.done",
                    {**base, "part": {"type": "summary_text", "text": text}},
                )
            else:
                ev.frames[-1] = (ev.frames[-1][0], len(r.thinking))
            ev.add("response.output_item.done", {"item": item, "output_index": oi})
        elif item["type"] == "function_call":
            ev.add(
                "response.output_item.added",
                {"item": {**item, "status": "in_progress", "arguments": ""}, "output_index": oi},
            )
            for piece in fragments(item["arguments"], ctx.rng):
                ev.add(
                    "response.function_call_arguments.delta",
                    {"delta": piece, "item_id": iid, "obfuscation": _pad(ctx.rng), "output_index": oi},
                    1,
                )
            ev.add(
                "response.function_call_arguments.done",
                {"arguments": item["arguments"], "item_id": iid, "output_index": oi},
            )
            ev.add("response.output_item.done", {"item": item, "output_index": oi})
        else:
            ev.add(
                "response.output_item.added",
                {"item": {**item, "status": "in_progress", "content": []}, "output_index": oi},
            )
            base = {"item_id": iid, "output_index": oi, "content_index": 0}
            empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            ev.add("response.content_part.added", {**base, "part": empty})
            for piece in r.pieces:
                ev.add(
                    "response.output_text.delta",
                    {**base, "delta": piece, "logprobs": [], "obfuscation": _pad(ctx.rng)},
                    1,
                )
            ev.add("response.output_text.done", {**base, "text": r.text, "logprobs": []})
            ev.add("response.content_part.done", {**base, "part": item["content"][0]})
            ev.add("response.output_item.done", {"item": item, "output_index": oi})
    final = _echo(ctx, _status(ctx))
    final["output"] = _items(ctx)
    final["usage"] = _usage(ctx)
    ev.add(
        "response.completed" if final["status"] == "completed" else "response.incomplete", {"response": final}
    )
    ctx.opts["frames"] = ev.frames
    return ev.frames


class ResponsesDialect(OpenAIDialect):
    """The Responses API of the OpenAI provider: OpenAI's auth, errors and faults; its own shapes."""

    def parse(self, data: Any, provider: str, request: web.Request) -> Parsed:
        parsed = parse_responses(data)
        parsed.opts["response_id"] = _id("resp")
        return parsed

    def render_json(self, ctx: Ctx) -> bytes:
        return render_response(ctx)

    def render_frames(self, ctx: Ctx) -> list[Frame]:
        return render_events(ctx)

    def stream_error_frames(self, ctx: Ctx, fault: Fault) -> bytes:
        msg = fault.message or "The server had an error while processing your request. Sorry about that!"
        err = {"type": "server_error", "code": "server_error", "message": msg, "param": None}
        # the events go on from where the stream was cut (the runtime cut it the same way)
        seq = _cut_index(ctx.opts.get("frames") or [], max(0, fault.after_chunks))
        failed = _echo(ctx, "failed")
        failed["error"] = {"code": "server_error", "message": msg}
        return frame(orjson.dumps({"type": "error", "sequence_number": seq, "error": err}), "error") + frame(
            orjson.dumps({"type": "response.failed", "sequence_number": seq + 1, "response": failed}),
            "response.failed",
        )
