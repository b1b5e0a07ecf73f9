"""OpenAI Responses API items <-> canonical parts, shared by the inbound wire
(``wire/openai_responses``) and the native outbound adapter (``adapters/openai_responses``).

Items (``input`` on the way in, ``output`` on the way out) map to canonical messages so::

    message (system | developer | user)      -> Message(system | user), parts input_text / input_image
                                                / input_file (the last an OpaquePart)
    message (assistant), output_text/refusal -> TextPart of an assistant Message
    function_call{call_id, name, arguments}  -> ToolCallPart(id=call_id) of an assistant Message
    function_call_output{call_id, output}    -> ToolResultPart of a tool Message
    reasoning{summary, encrypted_content}    -> ThinkingPart of an assistant Message
    any other item (web_search_call, ...)    -> OpaquePart(DIALECT, item)

Consecutive assistant-side items (assistant messages, function calls, reasoning, built-in tool
calls) form one canonical assistant message; consecutive outputs one tool message.  Each part
keeps its item's id and unmodelled fields in ``extensions[DIALECT]`` (``item_id``, ``item``), so
:func:`messages_to_items` gives a native upstream the items back as they came.

Reasoning state.  ``encrypted_content`` is opaque to clients; Fareway puts an envelope there
(:func:`seal` / :func:`unseal`: ``"fw1." + base64url(JSON)``) naming the provider that made the
reasoning and carrying that provider's own proof: OpenAI's ``encrypted_content``, an Anthropic
thinking ``signature`` or ``redacted_thinking`` data, a Gemini ``thoughtSignature``.  A ThinkingPart
read from one carries ``extensions["fareway"]["origin"] = provider``; the executor
(``router/target_request``) sends it only to that provider and leaves it out of the history sent
to any other (which gets the visible history: messages, tool calls and results).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from fareway.errors import BadRequest
from fareway.types import (
    ImagePart,
    Message,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)

DIALECT = "openai_responses"
FW = "fareway"
PRIVATE = "_fareway"
"""A stored item's provider state that clients never see (a Gemini call's ``thoughtSignature``):
restored into the part's extensions when the item is read back from the store."""
SEAL_PREFIX = "fw1."

ASSISTANT_ITEMS = frozenset({"function_call", "reasoning"})
"""Item types that belong to the assistant's side of the conversation (besides assistant messages
and any ``*_call`` item of a built-in tool)."""


def _bad(message: str, param: str | None) -> BadRequest:
    return BadRequest(message, param=param)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def want_str(value: Any, param: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise _bad(f"'{param}' must be a string, got {_type_name(value)}", param)
    if nonempty and not value:
        raise _bad(f"'{param}' must not be empty", param)
    return value


def want_dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"'{param}' must be an object, got {_type_name(value)}", param)
    return value


def want_list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(f"'{param}' must be an array, got {_type_name(value)}", param)
    return value


# --------------------------------------------------------------------------- reasoning envelope


def seal(
    provider: str, *, encrypted: str | None = None, signature: str | None = None, redacted: str | None = None
) -> str:
    """The ``encrypted_content`` Fareway shows for reasoning made by ``provider``."""
    body: dict[str, str] = {"p": provider}
    if encrypted is not None:
        body["e"] = encrypted
    if signature is not None:
        body["s"] = signature
    if redacted is not None:
        body["r"] = redacted
    return SEAL_PREFIX + base64.urlsafe_b64encode(orjson.dumps(body)).decode().rstrip("=")


def unseal(value: str) -> dict[str, str] | None:
    """The envelope's fields (``p``, and ``e``/``s``/``r``), or None for content Fareway did not seal."""
    if not value.startswith(SEAL_PREFIX):
        return None
    raw = value[len(SEAL_PREFIX) :]
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("p"), str):
        return None
    return {k: v for k, v in data.items() if isinstance(v, str)}


def strip_private(value: Any) -> Any:
    """``value`` (an item, a list of items, a response) without the store's private state."""
    if isinstance(value, list):
        return [strip_private(v) for v in value]
    if isinstance(value, dict):
        return {k: strip_private(v) for k, v in value.items() if k != PRIVATE}
    return value


# ------------------------------------------------------------------------------ input content


def _input_part(raw: Any, param: str, role: str) -> Part:
    part = want_dict(raw, param)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        text = want_str(part.get("text"), f"{param}.text")
        extra = {k: v for k, v in part.items() if k not in ("type", "text")}
        ext: dict[str, Any] = {"part_type": kind}
        if extra:
            ext["part"] = extra
        return TextPart(text, {DIALECT: ext})
    if kind == "refusal":
        return TextPart(want_str(part.get("refusal"), f"{param}.refusal"), {"openai": {"refusal": True}})
    if kind == "input_image" and role != "assistant":
        detail = part.get("detail")
        url = part.get("image_url")
        if url is None:  # a file_id image: only OpenAI can resolve it
            return OpaquePart(DIALECT, dict(part))
        url = want_str(url, f"{param}.image_url", nonempty=True)
        if detail is not None:
            detail = want_str(detail, f"{param}.detail")
        if url.startswith("data:"):
            header, sep, data = url[5:].partition(",")
            if sep and header.endswith(";base64"):
                return ImagePart(data=data, media_type=header[:-7] or None, detail=detail)
            return ImagePart(url=url, detail=detail)
        if not url.startswith(("http://", "https://")):
            raise _bad(
                f"'{param}.image_url' must be an http(s) URL or a base64 data: URL", f"{param}.image_url"
            )
        return ImagePart(url=url, detail=detail)
    if kind in ("input_file", "input_audio") and role != "assistant":
        return OpaquePart(DIALECT, dict(part))
    shown = repr(kind) if isinstance(kind, str) else _type_name(kind)
    allowed = "output_text, refusal" if role == "assistant" else "input_text, input_image, input_file"
    raise _bad(
        f"'{param}.type' is {shown}; a {role} message accepts content parts of type {allowed}",
        f"{param}.type",
    )


def _content(content: Any, param: str, role: str) -> list[Part]:
    if isinstance(content, str):
        kind = "output_text" if role == "assistant" else "input_text"
        return [TextPart(content, {DIALECT: {"part_type": kind}})]
    items = want_list(content, param)
    return [_input_part(p, f"{param}[{i}]", role) for i, p in enumerate(items)]


# ------------------------------------------------------------------------------------- items


def item_type(item: dict[str, Any]) -> str:
    t = item.get("type")
    if t is None and "role" in item:
        return "message"
    return t if isinstance(t, str) else ""


def is_assistant_item(item: dict[str, Any]) -> bool:
    t = item_type(item)
    if t == "message":
        return item.get("role") == "assistant"
    return t in ASSISTANT_ITEMS or (t.endswith("_call") and t != "function_call_output")


def _reasoning_parts(item: dict[str, Any], param: str) -> list[ThinkingPart]:
    """One ThinkingPart per summary part (all with the item's id; the last carries the state),
    or none when the item has neither text nor state."""
    texts: list[str] = []
    summary = item.get("summary")
    if summary is not None:
        for i, s in enumerate(want_list(summary, f"{param}.summary")):
            s = want_dict(s, f"{param}.summary[{i}]")
            texts.append(want_str(s.get("text", ""), f"{param}.summary[{i}].text"))
    if not texts and isinstance(item.get("content"), list):  # raw chain of thought (gpt-oss, OpenRouter)
        texts = [str(c.get("text") or "") for c in item["content"] if isinstance(c, dict)]
    enc = item.get("encrypted_content")
    if enc is not None:
        enc = want_str(enc, f"{param}.encrypted_content")
    if not enc and not any(texts):
        return []  # nothing to carry: no text and no state
    origin = ""  # visible text only: no provider can verify it; sent to none
    signature = redacted = None
    if enc:
        env = unseal(enc)
        if env is None:  # OpenAI's own encrypted content (a client that talked to OpenAI directly)
            origin, signature = "openai", enc
        else:
            origin, signature, redacted = env["p"], env.get("s") or env.get("e"), env.get("r")
    parts = []
    for t in texts or [""]:
        ext: dict[str, Any] = {DIALECT: {}, FW: {"origin": origin}}
        if isinstance(item.get("id"), str):
            ext[DIALECT]["item_id"] = item["id"]
        parts.append(ThinkingPart(t, extensions=ext))
    parts[-1].signature, parts[-1].redacted = signature, redacted
    return parts


def _function_call(item: dict[str, Any], param: str) -> ToolCallPart:
    call_id = want_str(item.get("call_id"), f"{param}.call_id", nonempty=True)
    name = want_str(item.get("name"), f"{param}.name", nonempty=True)
    args = item.get("arguments", "")
    if args is None:
        args = ""
    if not isinstance(args, str):  # some clients send an object
        args = orjson.dumps(args).decode()
    extra = {k: v for k, v in item.items() if k not in ("type", "call_id", "name", "arguments", PRIVATE)}
    ext: dict[str, Any] = {DIALECT: extra} if extra else {}
    private = item.get(PRIVATE)
    if isinstance(private, dict) and isinstance(private.get("gemini"), dict):
        ext["gemini"] = dict(private["gemini"])  # a Gemini call's signature, kept by the store
    return ToolCallPart(call_id, name, args, ext)


def _output_content(value: Any, param: str) -> list[Part]:
    if isinstance(value, str):
        return [TextPart(value)]
    if isinstance(value, list):
        return [_input_part(p, f"{param}[{i}]", "user") for i, p in enumerate(value)]
    if isinstance(value, dict):  # an object output (some clients): its JSON text
        return [TextPart(orjson.dumps(value).decode())]
    raise _bad(f"'{param}' must be a string or an array of content parts, got {_type_name(value)}", param)


def _message(item: dict[str, Any], param: str) -> Message:
    role = item.get("role")
    if role not in ("user", "system", "developer", "assistant"):
        shown = repr(role) if isinstance(role, str) else _type_name(role)
        raise _bad(
            f"'{param}.role' is {shown}; expected user, system, developer or assistant", f"{param}.role"
        )
    if "content" not in item:
        raise _bad(f"'{param}.content' is required", f"{param}.content")
    parts = _content(item["content"], f"{param}.content", role)
    extra = {k: v for k, v in item.items() if k not in ("type", "role", "content")}
    for p in parts:
        p.extensions.setdefault(DIALECT, {})
        if isinstance(item.get("id"), str):
            p.extensions[DIALECT]["item_id"] = item["id"]
        else:  # keeps the item's boundary (two assistant messages stay two) for a native upstream
            p.extensions[DIALECT]["item_key"] = param
        if extra:
            p.extensions[DIALECT]["item"] = extra
    canon = "system" if role in ("system", "developer") else role
    ext = {"openai": {"role": "developer"}} if role == "developer" else {}
    return Message(canon, parts, extensions=ext)  # type: ignore[arg-type]


def items_to_messages(items: list[Any], param: str = "input") -> list[Message]:
    """Canonical messages for Responses ``items`` (already resolved: no ``item_reference``)."""
    out: list[Message] = []

    def side(role: str) -> Message:
        if out and out[-1].role == role and role in ("assistant", "tool"):
            return out[-1]
        m = Message(role)  # type: ignore[arg-type]
        out.append(m)
        return m

    for i, raw in enumerate(items):
        p = f"{param}[{i}]"
        item = want_dict(raw, p)
        t = item_type(item)
        if t == "message":
            msg = _message(item, p)
            if msg.role == "assistant":
                side("assistant").content += msg.content
            else:
                out.append(msg)
        elif t == "function_call":
            side("assistant").content.append(_function_call(item, p))
        elif t == "function_call_output":
            call_id = want_str(item.get("call_id"), f"{p}.call_id", nonempty=True)
            if "output" not in item:
                raise _bad(f"'{p}.output' is required", f"{p}.output")
            extra = {k: v for k, v in item.items() if k not in ("type", "call_id", "output")}
            result = ToolResultPart(
                call_id,
                _output_content(item["output"], f"{p}.output"),
                extensions={DIALECT: extra} if extra else {},
            )
            side("tool").content.append(result)
        elif t == "reasoning":
            side("assistant").content += _reasoning_parts(item, p)
        elif t == "item_reference":
            raise _bad(
                f"'{p}' references item {item.get('id')!r}, which is not stored (send the item itself, or "
                "store the response it came from)",
                p,
            )
        elif t:
            opaque = OpaquePart(DIALECT, dict(item))
            (side("assistant") if is_assistant_item(item) else side("user")).content.append(opaque)
        else:
            raise _bad(
                f"'{p}.type' is required (message, function_call, function_call_output, reasoning, ...)",
                f"{p}.type",
            )
    return [m for m in out if m.content]


# ------------------------------------------------------------------ canonical -> input items


def _text_item_part(p: TextPart, role: str) -> dict[str, Any]:
    ext = p.extensions.get(DIALECT) or {}
    if (p.extensions.get("openai") or {}).get("refusal"):
        return {"type": "refusal", "refusal": p.text}
    kind = "output_text" if role == "assistant" else "input_text"
    out: dict[str, Any] = {"type": kind, "text": p.text}
    extra = ext.get("part")
    if isinstance(extra, dict) and role == "assistant":
        for k, v in extra.items():
            out.setdefault(k, v)
    return out


def _image_item_part(p: ImagePart) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "input_image", "image_url": p.as_data_url() or ""}
    if p.detail:
        out["detail"] = p.detail
    return out


def reasoning_item(parts: list[ThinkingPart]) -> dict[str, Any] | None:
    """The native reasoning item of ThinkingParts of one upstream reasoning item (one per summary
    part), or None when they carry no OpenAI state (no item id, no encrypted content)."""
    rid: str | None = None
    enc: str | None = None
    for p in parts:
        ext = p.extensions.get(DIALECT) or {}
        rid = rid or (ext.get("item_id") if isinstance(ext.get("item_id"), str) else None)
        enc = enc or ext.get("encrypted_content") or p.signature
    if not enc and not rid:
        return None
    item: dict[str, Any] = {"type": "reasoning"}
    if rid:
        item["id"] = rid
    item["summary"] = [{"type": "summary_text", "text": p.text} for p in parts if p.text]
    if enc:
        item["encrypted_content"] = enc
    return item


def messages_to_items(messages: list[Message], dropped: list[str]) -> list[dict[str, Any]]:
    """Responses input items for canonical ``messages`` (system messages included, as
    ``system``/``developer`` message items)."""
    items: list[dict[str, Any]] = []

    def note(what: str) -> None:
        if what not in dropped:
            dropped.append(what)

    for m in messages:
        if m.role in ("system", "user"):
            role = "developer" if (m.extensions.get("openai") or {}).get("role") == "developer" else m.role
            content: list[dict[str, Any]] = []
            for p in m.content:
                if isinstance(p, TextPart):
                    content.append(_text_item_part(p, role))
                elif isinstance(p, ImagePart):
                    content.append(_image_item_part(p))
                elif isinstance(p, OpaquePart) and p.dialect == DIALECT:
                    if p.data.get("type", "").startswith("input_"):
                        content.append(dict(p.data))
                    else:
                        items.append(dict(p.data))
                elif isinstance(p, OpaquePart) and p.dialect == "openai" and p.data.get("type") == "file":
                    f = p.data.get("file") or {}
                    content.append({"type": "input_file", **{k: v for k, v in f.items() if v is not None}})
                elif isinstance(p, ToolResultPart):
                    items.append(_output_item(p))
                elif isinstance(p, OpaquePart):
                    note(f"{p.dialect} {p.data.get('type', 'block')} content")
            if content:
                items.append({"type": "message", "role": role, "content": content})
        elif m.role == "tool":
            for p in m.content:
                if isinstance(p, ToolResultPart):
                    items.append(_output_item(p))
        else:
            items += _assistant_items(m, note)
    return items


def _output_item(r: ToolResultPart) -> dict[str, Any]:
    text = r.text()
    if r.is_error and not (r.extensions.get(DIALECT)):
        text = f"Error: {text}"
    images = [p for p in r.content if isinstance(p, ImagePart)]
    output: Any = text
    if images:
        output = [{"type": "input_text", "text": text}] if text else []
        output += [_image_item_part(i) for i in images]
    item: dict[str, Any] = {"type": "function_call_output", "call_id": r.tool_call_id, "output": output}
    for k, v in (r.extensions.get(DIALECT) or {}).items():
        item.setdefault(k, v)
    return item


def _assistant_items(m: Message, note: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    open_msg: dict[str, Any] | None = None
    open_key: Any = None
    group: list[ThinkingPart] = []
    for p in m.content:
        if isinstance(p, TextPart):
            group = []
            ext = p.extensions.get(DIALECT) or {}
            iid = ext.get("item_id")
            key = iid or ext.get("item_key")
            if open_msg is None or open_key != key:
                open_key = key
                open_msg = {"type": "message", "role": "assistant", "content": []}
                if iid:
                    open_msg["id"] = iid
                extra = ext.get("item")
                if isinstance(extra, dict):
                    for k, v in extra.items():
                        if k != "id":
                            open_msg.setdefault(k, v)
                items.append(open_msg)
            open_msg["content"].append(_text_item_part(p, "assistant"))
            continue
        open_msg = None
        if not isinstance(p, ThinkingPart):
            group = []
        if isinstance(p, ToolCallPart):
            item: dict[str, Any] = {
                "type": "function_call",
                "call_id": p.id,
                "name": p.name,
                "arguments": p.arguments if p.arguments.strip() else "{}",
            }
            for k, v in (p.extensions.get(DIALECT) or {}).items():
                if k not in ("status",):
                    item.setdefault(k, v)
            items.append(item)
        elif isinstance(p, ThinkingPart):
            rid = (p.extensions.get(DIALECT) or {}).get("item_id")
            if group and rid is not None and (group[-1].extensions.get(DIALECT) or {}).get("item_id") == rid:
                group.append(p)  # another summary part of the same reasoning item
                r = reasoning_item(group)
                if r is not None:
                    items[-1] = r
                continue
            group = [p]
            r = reasoning_item(group)
            if r is not None:
                items.append(r)
            else:
                group = []
                note("reasoning")
            continue
        elif isinstance(p, OpaquePart) and p.dialect == DIALECT:
            items.append(dict(p.data))
        elif isinstance(p, OpaquePart):
            note(f"{p.dialect} {p.data.get('type', 'block')} content")
    return items


__all__ = [
    "DIALECT",
    "FW",
    "PRIVATE",
    "SEAL_PREFIX",
    "is_assistant_item",
    "item_type",
    "items_to_messages",
    "messages_to_items",
    "reasoning_item",
    "seal",
    "strip_private",
    "unseal",
    "want_dict",
    "want_list",
    "want_str",
]
