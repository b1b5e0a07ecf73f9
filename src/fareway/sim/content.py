"""Deterministic reply content: lorem text, tool-call arguments from JSON schemas, token counts.

Each dialect module reduces its request to a :class:`Ask` (what was asked, dialect-free) and calls
:func:`plan_reply`, which returns a :class:`Reply` the dialect then renders in its wire shape.

Determinism: the content seed is ``blake2b(config seed, dialect-neutral bytes of the conversation)``,
so the same seed and the same messages (and tools) always give the same words and arguments,
whatever the provider, the model, or streaming vs not.

Token counts (a documented approximation, not a tokenizer):

* prompt tokens = whitespace-separated words of every text in the prompt + 3 per message + 3,
  plus ``len(json(tools)) // 4`` for tool definitions;
* output tokens = the generated pieces (one lorem word = one token), a tool call costs
  ``len(arguments) // 3 + 4``, thinking costs its words.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

_VOCAB = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip "
    "ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla "
    "pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim "
    "id est laborum gateway token stream route cache river mountain signal harbor lantern"
).split()

_ALNUM = string.ascii_letters + string.digits
_ids = random.Random()  # ids are unique, not deterministic


_B64_TO_ALNUM = bytes.maketrans(b"+/=", b"xyz")


def rand_id(n: int, alphabet: str = _ALNUM) -> str:
    """A random id of ``n`` characters from ``alphabet`` (fast path for the default alphanumerics)."""
    if alphabet is _ALNUM:
        return base64.b64encode(_ids.randbytes(n)).translate(_B64_TO_ALNUM)[:n].decode()
    return "".join(_ids.choices(alphabet, k=n))


def rand_hex(n: int) -> str:
    return f"{_ids.getrandbits(4 * n):0{n}x}"


def rand_uuid() -> str:
    h = rand_hex(32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def content_seed(config_seed: int, key: bytes) -> int:
    h = hashlib.blake2b(key, digest_size=8, key=config_seed.to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little")


def words(text: str) -> int:
    return len(text.split())


@lru_cache(maxsize=4096)
def lorem(seed: int, n: int) -> tuple[str, ...]:
    """``n`` token-sized pieces of lorem text: ``("Lorem", " ipsum", " dolor.", ...)``."""
    if n <= 0:
        return ()
    rng = random.Random(seed)
    picks = rng.choices(_VOCAB, k=n)
    out: list[str] = []
    cap = True
    until_stop = rng.randint(6, 14)
    for i, w in enumerate(picks):
        if cap:
            w = w.capitalize()
            cap = False
        until_stop -= 1
        if i == n - 1 or until_stop == 0:
            w += "."
            cap = True
            until_stop = rng.randint(6, 14)
        elif rng.random() < 0.06:
            w += ","
        out.append(w if i == 0 else " " + w)
    return tuple(out)


_PIECE = re.compile(r"\s*\S+|\s+")


def split_pieces(text: str) -> list[str]:
    """Split echo text into token-sized pieces that join back to exactly ``text``."""
    return _PIECE.findall(text)


def fragments(s: str, rng: random.Random, lo: int = 3, hi: int = 9) -> list[str]:
    """Cut ``s`` into several fragments (how tool arguments are streamed)."""
    out: list[str] = []
    i = 0
    while i < len(s):
        j = min(len(s), i + rng.randint(lo, hi))
        out.append(s[i:j])
        i = j
    return out


# --- JSON schema → a value -------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}
    return schema


def _type_of(schema: dict[str, Any]) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        non_null = [x for x in t if str(x).lower() != "null"]
        t = non_null[0] if non_null else "null"
    if isinstance(t, str):
        return t.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return None


def value_for(schema: Any, rng: random.Random, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A JSON value valid against the common subset of JSON Schema (OpenAPI upper-case types too)."""
    if not isinstance(schema, dict):
        return "value"
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[rng.randrange(len(enum))]
    for key in ("anyOf", "oneOf"):
        opts = schema.get(key)
        if isinstance(opts, list) and opts:
            usable = [o for o in opts if not (isinstance(o, dict) and _type_of(o) == "null")] or opts
            return value_for(usable[0], rng, root, depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        merged: dict[str, Any] = {}
        for part in all_of:
            if isinstance(part, dict):
                part = _resolve(part, root)
                for k, v in part.items():
                    if k in ("properties",) and isinstance(v, dict):
                        merged.setdefault("properties", {}).update(v)
                    elif k == "required" and isinstance(v, list):
                        merged.setdefault("required", []).extend(v)
                    else:
                        merged[k] = v
        return value_for(merged, rng, root, depth + 1)
    t = _type_of(schema)
    if t == "object":
        props = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if name in required or (depth < 3 and rng.random() < 0.5):
                out[name] = value_for(sub, rng, root, depth + 1)
        return out
    if t == "array":
        lo = int(schema.get("minItems", 1))
        hi = max(lo, min(int(schema.get("maxItems", 3)), lo + 2))
        return [value_for(schema.get("items", {}), rng, root, depth + 1) for _ in range(rng.randint(lo, hi))]
    if t == "integer":
        ilo = int(schema.get("minimum", 0))
        ihi = int(schema.get("maximum", max(ilo, 0) + 100))
        return rng.randint(ilo, max(ilo, ihi))
    if t == "number":
        flo = float(schema.get("minimum", 0.0))
        fhi = float(schema.get("maximum", flo + 100.0))
        return round(rng.uniform(flo, fhi), 2)
    if t == "boolean":
        return rng.random() < 0.5
    if t == "null":
        return None
    fmt = schema.get("format")
    if fmt == "date-time":
        return f"2026-01-{rng.randint(1, 28):02d}T12:00:00Z"
    if fmt == "date":
        return f"2026-01-{rng.randint(1, 28):02d}"
    if fmt == "email":
        return f"{rng.choice(_VOCAB)}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{rng.choice(_VOCAB)}"
    s = " ".join(rng.choices(_VOCAB, k=rng.randint(1, 3)))
    min_len = int(schema.get("minLength", 0))
    max_len = schema.get("maxLength")
    if len(s) < min_len:
        s = (s + " ") * (min_len // max(1, len(s)) + 1)
        s = s[: max(min_len, 1)]
    if max_len is not None:
        s = s[: int(max_len)]
    return s


# --- the reply plan ------------------------------------------------------------------------------


@dataclass(slots=True)
class Ask:
    """What a request asks for, with the dialect stripped away."""

    key: bytes
    """Dialect-neutral bytes of the conversation (and tools): the content seed source."""
    prompt_tokens: int
    max_tokens: int | None = None
    tools: list[tuple[str, Any]] = field(default_factory=list)
    """(name, JSON schema) in request order."""
    tool_mode: str = "auto"
    """``auto``, ``none``, ``required`` or ``tool:<name>``."""
    last_is_tool_result: bool = False
    echo: str | None = None
    thinking: bool = False


@dataclass(slots=True)
class ToolCall:
    name: str
    arguments: str
    """A compact JSON object text."""
    args: Any


@dataclass(slots=True)
class Reply:
    pieces: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    finish: str = "stop"
    """``stop``, ``length`` or ``tool``."""
    seed: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def thinking_tokens(self) -> int:
        return len(self.thinking)

    @property
    def output_tokens(self) -> int:
        n = len(self.pieces) + len(self.thinking)
        for c in self.tool_calls:
            n += len(c.arguments) // 3 + 4
        return n


def plan_reply(ask: Ask, config_seed: int, default_len: int) -> Reply:
    seed = content_seed(config_seed, ask.key)
    limit = ask.max_tokens if ask.max_tokens is not None and ask.max_tokens > 0 else None
    reply = Reply(seed=seed)
    if ask.thinking:
        n_think = 8 + seed % 17
        reply.thinking = list(lorem(seed ^ 0x5EED, n_think))
    forced = ask.tool_mode == "required" or ask.tool_mode.startswith("tool:")
    if ask.echo is not None and not forced:
        pieces = split_pieces(ask.echo)
        if limit is not None and len(pieces) > limit:
            reply.pieces = pieces[:limit]
            reply.finish = "length"
        else:
            reply.pieces = pieces
        return reply
    if ask.tools and ask.tool_mode != "none" and not (ask.last_is_tool_result and not forced):
        name, schema = ask.tools[0]
        if ask.tool_mode.startswith("tool:"):
            want = ask.tool_mode[5:]
            for tname, tschema in ask.tools:
                if tname == want:
                    name, schema = tname, tschema
                    break
        rng = random.Random(seed ^ 0x7001)
        args = value_for(schema, rng)
        if not isinstance(args, dict):
            args = {}
        reply.tool_calls = [ToolCall(name, orjson.dumps(args).decode(), args)]
        reply.finish = "tool"
        return reply
    n = default_len
    if limit is not None and limit < n:
        n = limit
        reply.finish = "length"
    reply.pieces = list(lorem(seed, n))
    return reply
