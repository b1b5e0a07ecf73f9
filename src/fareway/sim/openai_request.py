"""OpenAI Chat Completions requests → :class:`~fareway.sim.runtime.Parsed` (what the reply must honour).

Read here: messages (text, tool calls, tool results, the ``echo:`` directive), tools and
``tool_choice`` (``none``/``auto``/``required``/named/``allowed_tools``), ``parallel_tool_calls``,
``n``, ``stop``, ``max_completion_tokens``/``max_tokens``, ``response_format`` (``json_object``,
``json_schema``), ``logprobs``/``top_logprobs``, reasoning switches and ``stream_options``.
Rejected as the providers do: ``n`` above a flavor's maximum (Groq: 1), ``logprobs`` on Groq,
``top_logprobs`` without ``logprobs`` or above 20, more than four stop sequences, a ``json_object``
request whose messages never say "json" (OpenAI).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from fareway.sim.content import Ask, words
from fareway.sim.openai_flavor import Flavor
from fareway.sim.runtime import BadRequest, Parsed

_MISTRAL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for p in content:
            if isinstance(p, dict):
                t = p.get("text")
                if isinstance(t, str):
                    out.append(t)
            elif isinstance(p, str):
                out.append(p)
        return "\n".join(out)
    return ""


def _param(message: str, param: str, code: str = "invalid_value") -> BadRequest:
    return BadRequest(400, message, code=code, param=param)


def _tool_mode(tc: Any) -> tuple[str, tuple[str, ...] | None]:
    if tc in ("none", "required", "auto"):
        return str(tc), None
    if tc == "any":
        return "required", None
    if isinstance(tc, dict):
        if tc.get("type") == "allowed_tools":
            spec = tc.get("allowed_tools") or {}
            names = tuple(
                str((t.get("function") or {}).get("name") or t.get("name") or "")
                for t in spec.get("tools") or ()
                if isinstance(t, dict)
            )
            return ("required" if spec.get("mode") == "required" else "auto"), names
        name = (tc.get("function") or {}).get("name")
        if isinstance(name, str):
            return "tool:" + name, None
    return "auto", None


def _output(data: dict[str, Any], fl: Flavor, key_parts: list[str]) -> tuple[str, Any]:
    rf = data.get("response_format")
    if not isinstance(rf, dict):
        return "text", None
    kind = rf.get("type")
    if kind == "json_object":
        all_text = "\n".join(p.partition(":")[2] for p in key_parts)
        if fl.json_word_required and "json" not in all_text.lower():
            raise _param(
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
                "'json_object'.",
                "messages",
            )
        return "json", None
    if kind == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("name"), str):
            raise _param(
                "Missing required parameter: 'response_format.json_schema.name'.",
                "response_format.json_schema.name",
                "missing_required_parameter",
            )
        schema = js.get("schema")
        return "json", schema if isinstance(schema, dict) else {"type": "object"}
    return "text", None


def _stops(data: dict[str, Any]) -> tuple[str, ...]:
    stop = data.get("stop")
    if isinstance(stop, str):
        return (stop,) if stop else ()
    if isinstance(stop, list):
        if len(stop) > 4:
            raise _param(f"Invalid 'stop': array too long. Expected at most 4, got {len(stop)}.", "stop")
        return tuple(s for s in stop if isinstance(s, str) and s)
    return ()


def _logprobs(data: dict[str, Any], fl: Flavor) -> int | None:
    lp = data.get("logprobs")
    top = data.get("top_logprobs")
    if lp is True and fl.rejects_logprobs:
        raise _param("`logprobs` is not supported with this model", "logprobs")
    if top is not None:
        if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
            raise _param(
                f"Invalid 'top_logprobs': integer between 0 and 20 expected, got {top!r}.", "top_logprobs"
            )
        if lp is not True:
            raise _param("'logprobs' must be set to true when 'top_logprobs' is used.", "logprobs")
    return (top or 0) if lp is True else None


def parse_chat(data: dict[str, Any], fl: Flavor) -> Parsed:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(400, "you must provide a model parameter")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "'messages' must be a non-empty array", code="invalid_value")
    key_parts: list[str] = []
    system_texts: list[str] = []
    n_words = 0
    for m in messages:
        if not isinstance(m, dict):
            raise BadRequest(400, "each message must be an object", code="invalid_value")
        role = str(m.get("role", ""))
        text = _text_of(m.get("content"))
        if role in ("system", "developer"):
            system_texts.append(text)
        for tc in m.get("tool_calls") or ():
            fn = tc.get("function") or {} if isinstance(tc, dict) else {}
            text += f"\n{fn.get('name', '')} {fn.get('arguments', '')}"
            if fl.check_tool_ids:
                _check_mistral_id(tc.get("id") if isinstance(tc, dict) else None)
        if fl.check_tool_ids and role == "tool":
            _check_mistral_id(m.get("tool_call_id"))
        n_words += words(text)
        key_parts.append(f"{'system' if role == 'developer' else role}:{text}")
    tools: list[tuple[str, Any]] = []
    raw_tools = data.get("tools") or []
    for t in raw_tools:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            tools.append((fn["name"], fn.get("parameters") or {}))
    prompt = n_words + 3 * len(messages) + 3
    if tools:
        prompt += len(orjson.dumps(raw_tools)) // 4
        key_parts.append("tools:" + ",".join(n for n, _ in tools))
    mode, allowed = _tool_mode(data.get("tool_choice"))
    last = messages[-1]
    echo = None
    last_text = ""
    if last.get("role") == "user":
        last_text = _text_of(last.get("content"))
        if last_text.startswith("echo:"):
            echo = last_text[5:].removeprefix(" ")
    max_tokens = data.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = data.get("max_tokens")
    effort = data.get("reasoning_effort")
    rfmt = data.get("reasoning_format")
    orr = data.get("reasoning")
    thinking = (
        "gpt-oss" in model
        or effort not in (None, "none")
        or (isinstance(orr, dict) and orr.get("enabled", True))
    )
    if effort == "none" or rfmt == "hidden" or data.get("disable_reasoning") is True:
        thinking = False
    so = data.get("stream_options")
    include_usage = bool(isinstance(so, dict) and so.get("include_usage"))
    n = data.get("n")
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > fl.max_n:
        at_most = "at most 1" if fl.max_n == 1 else f"between 1 and {fl.max_n}"
        raise _param(f"'n' : number must be {at_most}", "n")
    output, schema = _output(data, fl, key_parts)
    ask = Ask(
        key="\x00".join(key_parts).encode(),
        prompt_tokens=prompt,
        max_tokens=int(max_tokens) if isinstance(max_tokens, int | float) and max_tokens > 0 else None,
        tools=tools,
        tool_mode=mode,
        last_is_tool_result=last.get("role") == "tool",
        echo=echo,
        thinking=thinking,
        parallel=data.get("parallel_tool_calls") is not False,
        allowed=allowed,
        n=n,
        stop=_stops(data),
        output=output,
        schema=schema,
        hint="\n".join([*system_texts, last_text]),
    )
    opts = {"include_usage": include_usage, "logprobs": _logprobs(data, fl)}
    return Parsed(model=model, stream=bool(data.get("stream")), ask=ask, opts=opts)


def _check_mistral_id(tid: Any) -> None:
    if not isinstance(tid, str) or not _MISTRAL_ID.match(tid):
        raise BadRequest(
            400, f"Tool call id was {tid} but must be a-z, A-Z, 0-9, with a length of 9.", code="3280"
        )
