"""Deterministic reply content: lorem text, JSON from schemas, tool calls, token counts.

Each dialect module reduces its request to a :class:`Ask` (what was asked, dialect-free) and calls
:func:`plan_replies`, which returns one :class:`Reply` per choice; the dialect renders them in its
wire shape.

What a reply honours, in this order:

* ``echo: TEXT`` as the last user message: the reply is exactly ``TEXT`` (unless a tool is forced);
* tools (not ``none``, and the last message is not a tool result unless a tool is forced): tool calls
  whose arguments are generated from each tool's schema (:mod:`fareway.sim.schema`).  The tools named
  in the system or last user text are called, in the order named; otherwise each of the first
  :data:`MAX_PARALLEL_TOOLS` tools once.  A prompt asking for a number of calls ("3 parallel calls",
  "two tool calls") repeats them up to that many (at most :data:`MAX_CALLS`).  When parallel calls
  are not allowed (OpenAI ``parallel_tool_calls: false``, Anthropic ``disable_parallel_tool_use``),
  only the first call is made;
* structured output: JSON of the requested schema, or, with no schema (OpenAI ``json_object``), of
  the first JSON schema embedded in the system or last user text (instructor's JSON mode), else a
  small object; a prompt that says "json" and embeds a schema gets JSON even without a
  ``response_format`` (instructor's MD_JSON and Anthropic JSON modes), and so does one that says
  "respond with a (single) (valid) JSON object" (the instruction the gateway sends an Anthropic
  upstream for OpenAI's ``json_object``); Gemini ``text/x.enum`` gives one enum value;
* otherwise lorem text of the profile's length.

Then stop sequences cut the text before the first one found (finish ``stop``, the sequence noted),
and the output limit truncates it (finish ``length``).  The limit covers thinking tokens first, so a
thinking model with a small limit answers empty, cut for length, as Gemini 2.5 does.

Determinism: the content seed is ``blake2b(config seed, dialect-neutral bytes of the conversation)``,
so the same seed and the same messages (and tools) always give the same words and arguments,
whatever the provider, the model, or streaming vs not.  Choice ``i > 0`` of ``n`` adds ``i`` to the
key; choice 0 is what a single-choice request gets.

Token counts (a documented approximation, not a tokenizer):

* prompt tokens = whitespace-separated words of every text in the prompt + 3 per message + 3,
  plus ``len(json(tools)) // 4`` for tool definitions;
* output tokens = the generated pieces (one lorem word = one token; JSON is cut into word,
  number and punctuation pieces), plus the stop sequence's token, a tool call costs
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

from fareway.sim.schema import embedded_schema, object_for
from fareway.sim.schema import value_for as value_for

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


# --- the reply plan ------------------------------------------------------------------------------

MAX_PARALLEL_TOOLS = 4
"""With several tools and nothing named in the prompt, one call to each of the first four."""
MAX_CALLS = 8
_NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
_CALL_COUNT = re.compile(
    r"\b(\d{1,2}|two|three|four|five|six|seven|eight)\s+(?:parallel\s+|separate\s+|tool\s+|function\s+)*calls?\b",
    re.IGNORECASE,
)
_ASKS_JSON_OBJECT = re.compile(
    r"\b(?:respond|reply|answer)\s+(?:only\s+)?with\s+(?:a|one|a\s+single)\s+(?:valid\s+)?json\s+object\b",
    re.IGNORECASE,
)
_JSON_PIECE = re.compile(r"\s*[A-Za-z]+|\s*\d{1,3}|\s*[^\sA-Za-z\d]{1,3}|\s+")


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
    parallel: bool = True
    """Whether one answer may carry several tool calls."""
    allowed: tuple[str, ...] | None = None
    """Tool names the answer may call (OpenAI ``allowed_tools``, Gemini ``allowedFunctionNames``)."""
    n: int = 1
    """Number of choices (OpenAI ``n``)."""
    stop: tuple[str, ...] = ()
    output: str = "text"
    """``text``, ``json`` (a JSON value, of ``schema`` when given) or ``enum`` (one of ``schema.enum``)."""
    schema: Any = None
    json_indent: bool = False
    """Pretty-print JSON output with two-space indents (as Gemini does)."""
    hint: str = ""
    """System text and the last user text: tool names, call counts and embedded schemas are read here."""


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
    stop_sequence: str | None = None
    """The stop sequence that ended the text (finish ``stop``); its token is counted, not shown."""
    hidden_tokens: int = 0
    """Generated but not shown: the stop sequence's token when it began on a piece boundary."""

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def thinking_tokens(self) -> int:
        return len(self.thinking)

    @property
    def output_tokens(self) -> int:
        n = len(self.pieces) + len(self.thinking) + self.hidden_tokens
        for c in self.tool_calls:
            n += len(c.arguments) // 3 + 4
        return n


def json_pieces(text: str) -> list[str]:
    """Token-sized pieces of JSON text (``{"``, ``city``, ``":"`` ...) that join back to ``text``."""
    return _JSON_PIECE.findall(text)


def asked_calls(hint: str) -> int | None:
    """A call count the prompt asks for ("make 3 parallel calls", "two tool calls")."""
    m = _CALL_COUNT.search(hint)
    if m is None:
        return None
    w = m.group(1).lower()
    return int(w) if w.isdigit() else _NUMBERS[w]


def _named_in(hint: str, tools: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    found = []
    for t in tools:
        m = re.search(r"(?<![\w-])" + re.escape(t[0]) + r"(?![\w-])", hint)
        if m is not None:
            found.append((m.start(), t))
    return [t for _, t in sorted(found, key=lambda x: x[0])]


def plan_calls(ask: Ask, seed: int) -> list[ToolCall]:
    tools = ask.tools
    if ask.allowed is not None:
        tools = [t for t in tools if t[0] in ask.allowed] or tools
    if ask.tool_mode.startswith("tool:"):
        want = ask.tool_mode[5:]
        chosen = [t for t in tools if t[0] == want][:1] or tools[:1]
    else:
        chosen = _named_in(ask.hint, tools) or tools[:MAX_PARALLEL_TOOLS]
    count = len(chosen)
    if ask.parallel:
        asked = asked_calls(ask.hint)
        if asked is not None:
            count = max(count, min(asked, MAX_CALLS))
    else:
        count = 1
    calls = []
    for i in range(count):
        name, schema = chosen[i % len(chosen)]
        rng = random.Random(seed ^ 0x7001 if i == 0 else (seed ^ 0x7001) + 7919 * i)
        args = object_for(schema, rng)
        calls.append(ToolCall(name, orjson.dumps(args).decode(), args))
    return calls


def _json_text(ask: Ask, seed: int) -> str:
    rng = random.Random(seed ^ 0x150)
    schema = ask.schema
    if schema is None:
        schema = embedded_schema(ask.hint)
    if schema is None:
        value: Any = {"response": "".join(lorem(seed, 8 + seed % 9))}
    else:
        value = value_for(schema, rng)
    opt = orjson.OPT_INDENT_2 if ask.json_indent else 0
    return orjson.dumps(value, option=opt).decode()


def _wants_embedded_json(ask: Ask) -> bool:
    low = ask.hint.lower()
    if _ASKS_JSON_OBJECT.search(ask.hint) is not None:
        return True
    return "json" in low and "schema" in low and embedded_schema(ask.hint) is not None


def _end(reply: Reply, pieces: list[str], stop: tuple[str, ...], limit: int | None) -> Reply:
    """Cut ``pieces`` at the first stop sequence, then at ``limit`` tokens, setting the finish."""
    if stop:
        text = "".join(pieces)
        best: tuple[int, str] | None = None
        for s in stop:
            if s:
                i = text.find(s)
                if i != -1 and (best is None or i < best[0]):
                    best = (i, s)
        if best is not None:
            kept: list[str] = []
            used = 0
            hidden = 1  # the token the stop sequence starts in; a cut piece stands for it
            for p in pieces:
                if used + len(p) >= best[0]:
                    if best[0] > used:
                        kept.append(p[: best[0] - used])
                        hidden = 0
                    break
                kept.append(p)
                used += len(p)
            if limit is None or len(kept) + hidden <= limit:
                reply.pieces = kept
                reply.stop_sequence = best[1]
                reply.hidden_tokens = hidden
                return reply
    if limit is not None and len(pieces) > limit:
        reply.pieces = pieces[:limit]
        reply.finish = "length"
    else:
        reply.pieces = pieces
    return reply


def plan_reply(ask: Ask, config_seed: int, default_len: int, choice: int = 0) -> Reply:
    key = ask.key if choice == 0 else ask.key + b"\x00choice:" + str(choice).encode()
    seed = content_seed(config_seed, key)
    limit = ask.max_tokens if ask.max_tokens is not None and ask.max_tokens > 0 else None
    reply = Reply(seed=seed)
    if ask.thinking:
        n_think = 8 + seed % 17
        reply.thinking = list(lorem(seed ^ 0x5EED, n_think))
    forced = ask.tool_mode == "required" or ask.tool_mode.startswith("tool:")
    if limit is not None and reply.thinking and not (ask.tools and ask.tool_mode != "none"):
        # the output limit covers thinking too (OpenAI reasoning, Anthropic budgets, Gemini 2.5):
        # thinking that reaches it leaves an empty answer cut for length
        if len(reply.thinking) >= limit:
            reply.thinking = reply.thinking[:limit]
            reply.finish = "length"
            return reply
        limit -= len(reply.thinking)
    if ask.echo is not None and not forced:
        return _end(reply, split_pieces(ask.echo), ask.stop, limit)
    if ask.tools and ask.tool_mode != "none" and not (ask.last_is_tool_result and not forced):
        reply.tool_calls = plan_calls(ask, seed)
        reply.finish = "tool"
        return reply
    if ask.output == "enum":
        enum = ask.schema.get("enum") if isinstance(ask.schema, dict) else None
        opts = [str(e) for e in enum] if isinstance(enum, list) and enum else ["none"]
        return _end(reply, [opts[seed % len(opts)]], ask.stop, limit)
    if ask.output == "json" or _wants_embedded_json(ask):
        return _end(reply, json_pieces(_json_text(ask, seed)), ask.stop, limit)
    if ask.stop:
        return _end(reply, list(lorem(seed, default_len)), ask.stop, limit)
    n = default_len
    if limit is not None and limit < n:
        n = limit
        reply.finish = "length"
    reply.pieces = list(lorem(seed, n))
    return reply


def sign(reply: Reply, ask: Ask, signature: str) -> Reply:
    """Put ``signature`` before a text answer (one more token); an echo, tool calls and JSON are
    left as they are."""
    if signature and ask.echo is None and ask.output == "text" and not reply.tool_calls and reply.pieces:
        reply.pieces = [signature + " ", *reply.pieces]
    return reply


def plan_replies(ask: Ask, config_seed: int, default_len: int) -> list[Reply]:
    """One reply per choice; choice 0 is what a single-choice request gets."""
    return [plan_reply(ask, config_seed, default_len, i) for i in range(max(1, ask.n))]


def logprob_entries(pieces: list[str], seed: int, top: int) -> list[dict[str, Any]]:
    """OpenAI ``logprobs.content`` entries for ``pieces``: the chosen token first among its alternatives."""
    out = []
    for i, p in enumerate(pieces):
        h = content_seed(seed & 0x7FFF_FFFF_FFFF_FFFF, p.encode() + i.to_bytes(4, "little"))
        lp = -round((h % 100_000) / 100_000 * 0.6, 6)
        alts = [{"token": p, "logprob": lp, "bytes": list(p.encode())}] if top > 0 else []
        lead = " " if p.startswith(" ") else ""
        j = 0
        while len(alts) < top:
            w = lead + _VOCAB[(h + 7 * j) % len(_VOCAB)]
            j += 1
            if w != p and all(a["token"] != w for a in alts):
                alts.append(
                    {
                        "token": w,
                        "logprob": round(lp - 1.25 * len(alts) - j / 100, 6),
                        "bytes": list(w.encode()),
                    }
                )
        out.append({"token": p, "logprob": lp, "bytes": list(p.encode()), "top_logprobs": alts})
    return out
