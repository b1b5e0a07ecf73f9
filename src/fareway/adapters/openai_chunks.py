"""OpenAI-dialect SSE payloads read without the SSE parser (the stream parser's fast paths,
adapters.openai_stream):

* :func:`whole_events` / :func:`payloads_of`: the data of a run of whole events that are each one
  ``data:`` line (comments dropped), or None for any other shape;
* the text-chunk template: a chunk whose delta holds only a text (:func:`template`, checked by
  :func:`text_only`) stands for the chunks after it that repeat it but for that text; such a
  chunk is read from its content string alone (:func:`fill`), not parsed.  Most chunks of an
  OpenAI-dialect answer are like that (same id, model and fields; OpenAI's ``obfuscation`` value
  varies and is ignored);
* :func:`parse_payloads`: a run of payloads parsed in one orjson call, those chunks as their text;
  :func:`text_run`: such a run's texts one by one (for the streamed path);
* :func:`plain_answer`: a whole text answer of the plainest shape (a role chunk, text chunks, a
  finish chunk, a usage chunk, every one the same chunk but for its delta), read from its text
  chunks, its finish reason and its usage object, with one chunk parsed.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

CONTENT_KEY = '"delta":{"content":"'
_OBFUSCATION = ',"obfuscation":"'


def _obfuscated_at(s: str) -> int:
    """Where OpenAI's obfuscation field (``,"obfuscation":"<letters and digits>"}``) ends ``s``;
    -1 when it does not end so."""
    o = s.rfind(_OBFUSCATION)
    if o < 0 or not s.endswith('"}') or not s[o + len(_OBFUSCATION) : -2].isalnum():
        return -1
    return o


_JSON_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\.)*"')


def payloads_of(text: str, *, lines_checked: bool = True) -> list[str] | None:
    """The data of a run of whole SSE events that are each one ``data: `` line (``[DONE]``
    included), or None when another shape is present (comments are dropped).  A JSON payload
    holds no raw newline, so the events split on "\n\ndata: "; a newline left inside a payload
    means a multi-line field, an event name or an unspaced field.

    ``lines_checked=False`` leaves that check to the caller, who must then refuse every payload
    holding a newline (:func:`parse_payloads` does: it reads a template chunk from fields that
    match a checked chunk's and a JSON string, which holds no raw newline, and checks the other
    payloads).  It saves a count over the whole text."""
    if text.startswith("data: "):
        payloads = text[6:-2].split("\n\ndata: ")
        if not lines_checked or text.count("\n") == 2 * len(payloads):
            return payloads
    payloads = []  # comments (OpenRouter's keep-alives) between events, or another shape
    for block in text.split("\n\n"):
        if block.startswith("data: ") and "\n" not in block:
            payloads.append(block[6:])
        elif not block or (block[0] == ":" and "\n" not in block):
            continue
        else:
            return None
    return payloads


def whole_events(chunk: bytes, *, lines_checked: bool = True) -> list[str] | None:
    """:func:`payloads_of` of bytes that end at an event boundary; None for bytes that are not
    UTF-8 or hold a CR (the SSE parser's line ends)."""
    try:
        text = chunk.decode()
    except UnicodeDecodeError:
        return None
    if "\r" in text:
        return None
    return payloads_of(text, lines_checked=lines_checked)


def template(p: str) -> tuple[str, str, bool] | None:
    """A chunk whose delta holds only a text (``{"delta":{"content":"..."}``) as a template:
    the text before its content string, the text after it (up to OpenAI's ``obfuscation``
    field, whose value varies from chunk to chunk and is ignored), and whether that field ends
    it."""
    k = p.find(CONTENT_KEY)
    if k < 0 or p.count(CONTENT_KEY) > 1:
        return None
    start = k + len(CONTENT_KEY) - 1
    m = _JSON_STRING.match(p, start)
    if m is None:
        return None
    prefix, suffix = p[:start], p[m.end() :]
    if not suffix.startswith("}"):
        return None  # the delta holds more than its content
    o = _obfuscated_at(suffix)
    if o >= 0:
        return prefix, suffix[:o], True
    return prefix, suffix, False


def fill(tpl: tuple[str, str, bool], p: str) -> str | None:
    """The content string (still JSON) of payload ``p`` when ``p`` is the template's chunk with
    only that string changed (and OpenAI's obfuscation value); else None.  The caller parses
    the string, which validates its escapes."""
    prefix, suffix, obf = tpl
    if not p.startswith(prefix):
        return None
    if obf:
        o = _obfuscated_at(p)
        if o <= 0:
            return None
        body = p[len(prefix) : o]
    else:
        body = p[len(prefix) :]
    if not body.endswith(suffix):
        return None
    raw = body[: len(body) - len(suffix)]
    # one JSON string: quotes at both ends and none between (the common text), or the full check
    if raw.count('"') == 2 and raw[-1] == '"' and raw[-2] != "\\" and raw[0] == '"':
        return raw
    return raw if _JSON_STRING.fullmatch(raw) is not None else None


def text_only(chunk: dict[str, Any]) -> bool:
    """A chunk whose one effect on the stream is its choice 0's text (and extras, which a
    chunk repeating it repeats): the only kind :func:`template` may stand for in ``feed``."""
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return False
    (ch,) = choices
    if type(ch) is not dict or (ch.get("index") or 0) != 0 or ch.get("finish_reason") is not None:
        return False
    delta = ch.get("delta")
    return (
        type(delta) is dict
        and len(delta) == 1
        and type(delta.get("content")) is str
        and chunk.get("usage") is None
        and "x_groq" not in chunk
    )


def _run_texts(tpl: tuple[str, str, bool], run: list[str]) -> str | None:
    """The content strings (JSON, one per payload, joined by "\\n,") of a run of payloads that
    are each the template's chunk with only its text changed (and OpenAI's obfuscation value,
    when the template ends with one), checked in bulk: the run rebuilt from the template and the
    strings must be the run, and each obfuscation value letters and digits.  None when one
    differs (the caller then reads them one by one).  That each string is one JSON string is
    checked when they are parsed: joined by a raw newline, which no JSON string holds, a string
    cannot reach into the next; and the count of strings must be the count of payloads.  A
    payload holding a newline (an event of more than one line) is refused, as in
    :func:`parse_payloads`."""
    prefix, suffix, obf = tpl
    if obf:
        # each payload: prefix, string, suffix, then ',"obfuscation":"<letters and digits>"}'
        cuts = [p.rfind(_OBFUSCATION) for p in run]
        if -1 in cuts:
            return None
        lo = len(_OBFUSCATION)
        tails = "\n".join([p[o + lo :] for p, o in zip(run, cuts, strict=True)])
        # every tail a value and '"}': the values alone (their ends removed) letters and digits
        if (
            not tails.endswith('"}')
            or tails.count("\n") != len(run) - 1
            or not tails[:-2].replace('"}\n', "").isalnum()
        ):
            return None
        run = [p[:o] for p, o in zip(run, cuts, strict=True)]
    lp, ls = len(prefix), len(suffix)
    strs = list(map(itemgetter(slice(lp, -ls)), run))  # (each p[lp:-ls], with no Python loop)
    glue = suffix + "\n" + prefix
    if prefix + glue.join(strs) + suffix != "\n".join(run):
        return None
    texts = "\n,".join(strs)
    # (a newline in a payload is in its string: the event had more than one line)
    return texts if texts.count("\n") == len(strs) - 1 else None


def run_end(prefix: str, payloads: list[str], i: int) -> int:
    """Past the last payload from ``payloads[i]`` on that starts with the template's ``prefix``
    (``i`` when none does): where a run read in bulk may end."""
    j = len(payloads)
    while j > i and not payloads[j - 1].startswith(prefix):
        j -= 1
    return j


def text_run(tpl: tuple[str, str, bool], payloads: list[str], i: int) -> list[str] | None:
    """The texts of ``payloads[i:j]``, each the template's chunk with only its text changed
    (:func:`_run_texts`), where ``j`` is :func:`run_end` or the one before it (a last chunk that
    starts like the template but ends otherwise: a text with the finish reason), at least two;
    or None (the caller then reads them one by one).  Each payload's string is checked as
    :func:`parse_payloads` checks a run: one JSON value each, a string, in one orjson call; so
    each is what :func:`fill` and ``orjson.loads`` give it (the stream parser's ``feed``, which
    needs the texts one by one)."""
    j = run_end(tpl[0], payloads, i)
    if j - i < 2:
        return None
    texts = _run_texts(tpl, payloads[i:j])
    if texts is None and j - i > 2:
        j -= 1
        texts = _run_texts(tpl, payloads[i:j])
    if texts is None:
        return None
    try:
        pieces = orjson.loads("[" + texts + "]")
    except orjson.JSONDecodeError:
        return None
    if len(pieces) != j - i:
        return None
    for piece in pieces:
        if type(piece) is not str:
            return None
    return pieces


def parse_payloads(payloads: list[str]) -> list[Any] | None:
    """The chunks of these payloads, in order: a dict for each chunk parsed, and for a chunk that
    is the latest template chunk (:func:`template`) with only its text changed, that text as a
    str (one str for a run of such chunks: their texts joined).  Such a chunk would parse to the
    template's dict with another content: most chunks of a text answer are, and reading them
    this way skips parsing their repeated fields.  All are parsed in one orjson call: the
    objects and the texts (JSON strings) in their order, joined by a raw newline (which no JSON
    string holds, so that no value reaches into the next).  None when a payload is not a JSON
    object, or not one value; raises orjson.JSONDecodeError."""
    items: list[str] = []
    append = items.append
    runs: list[tuple[int, int]] = []  # (index in items, payloads) of the runs read in bulk
    tpl: tuple[str, str, bool] | None = None
    n = len(payloads)
    i = 0
    bulk = True
    while i < n:
        p = payloads[i]
        i += 1
        if tpl is not None:
            raw = fill(tpl, p)
            if raw is not None:
                append(raw)
                continue
        if not p.startswith("{") or "\n" in p:
            # (a text stands for a template chunk: every other payload is an object, and one
            # holding a newline was more than one line of its event: payloads_of's check)
            return None
        append(p)
        tpl = template(p) if CONTENT_KEY in p else None  # a text chunk follows its template
        if tpl is not None and i < n and bulk:
            # the chunks after it up to the last that starts like it: the run, read in bulk.  One
            # try per call, success or not, so that the scans stay linear in the payloads (a
            # stream whose every chunk differs would otherwise be scanned again from each one)
            bulk = False
            j = run_end(tpl[0], payloads, i)
            if j - i > 1:
                texts = _run_texts(tpl, payloads[i:j])
                if texts is not None:
                    runs.append((len(items), j - i))
                    append("[" + texts + "]")
                    i = j
    if not items:
        return []
    chunks = orjson.loads("[" + "\n,".join(items) + "]")
    if len(chunks) != len(items):
        return None
    for k, count in runs:
        texts = chunks[k]
        if type(texts) is not list or len(texts) != count:
            return None
        try:
            chunks[k] = "".join(texts)
        except TypeError:  # a value that is not a string
            return None
    return chunks


# ------------------------------------------------------------------ the plainest whole answer

_CHOICES = ',"choices":['
_CHOICE_OPEN = '{"index":0,"delta":'
_ROLE_DELTAS = frozenset(
    {
        '{"role":"assistant","content":"","refusal":null}',  # OpenAI
        '{"role":"assistant","content":""}',
        '{"role":"assistant"}',
    }
)
_FINISH_NULL = '"finish_reason":null'
_CHOICE_RESTS = (",", ',"logprobs":null,')
"""What comes between a choice's delta and its finish reason in the chunks read here."""


class PlainAnswer(NamedTuple):
    chunk: dict[str, Any]
    """The first text chunk, parsed: every chunk's fields but the delta (id, model, extras)."""
    texts: list[str]
    """The text of each text chunk, in order."""
    text: str
    """Those texts joined."""
    finish: str
    usage: dict[str, Any] | None
    role_chunk: bool
    """Whether a role chunk (no text) came first."""


def _core(p: str, obf: bool) -> str | None:
    """Payload ``p`` without its closing brace and, when the stream has them (``obf``), without
    OpenAI's obfuscation field (letters and digits); None when it ends otherwise."""
    if not obf:
        return p[:-1] if p.endswith("}") else None
    o = _obfuscated_at(p)
    return p[:o] if o >= 0 else None


def plain_answer(payloads: list[str]) -> PlainAnswer | None:
    """The payloads (``[DONE]`` left out) of a whole answer of the plainest shape: an optional
    role chunk, text chunks, a finish chunk, an optional usage chunk, each one the first text
    chunk's fields (:func:`template`) with only its delta, finish reason or usage in their place.
    The role, finish and usage chunks are compared with what the template makes of them, the text
    chunks read as :func:`_run_texts` reads a run; one orjson call parses the first text chunk,
    the texts and the usage object.  None for any other shape (the caller then reads the chunks
    one by one); raises orjson.JSONDecodeError."""
    n = len(payloads)
    if n < 2:
        return None
    last = payloads[-1]
    if '"finish_reason":"' not in last and '"usage":{' not in last:
        # (a read in the middle of a stream: refused before the run is checked, which the
        # stream parser's bulk read would then check again)
        return None
    i = 0 if CONTENT_KEY in payloads[0] else 1
    if CONTENT_KEY not in payloads[i]:
        return None
    tpl = template(payloads[i])
    if tpl is None:
        return None
    prefix, suffix, obf = tpl
    h = prefix.find(_CHOICES)
    if h < 0:
        return None
    head = prefix[: h + len(_CHOICES)]
    if prefix[len(head) :] != _CHOICE_OPEN + '{"content":':
        return None
    # the template's choice after its delta: a rest, the null finish reason, then the choice and
    # the choices closed (and the null usage, when the chunks carry one)
    tail = suffix if obf else suffix[:-1]
    if not tail.startswith("}"):
        return None
    f = tail.find(_FINISH_NULL)
    rest, after = tail[1:f], tail[f + len(_FINISH_NULL) :]
    if f < 0 or rest not in _CHOICE_RESTS or after not in ("}]", '}],"usage":null'):
        return None
    if i == 1:
        role = _core(payloads[0], obf)
        opening = head + _CHOICE_OPEN
        if (
            role is None
            or not role.startswith(opening)
            or not role.endswith(rest + _FINISH_NULL + after)
            or role[len(opening) : len(role) - len(rest) - len(_FINISH_NULL) - len(after)] not in _ROLE_DELTAS
        ):
            return None
    j = run_end(prefix, payloads, i + 1)
    texts = _run_texts(tpl, payloads[i:j])
    if texts is None:
        return None
    finish: str | None = None
    usage_raw = "null"
    finish_open = head + _CHOICE_OPEN + "{}" + rest + '"finish_reason":"'
    finish_close = '"' + after
    usage_open = head + '],"usage":'
    for p in payloads[j:]:
        core = _core(p, obf)
        if core is None:
            return None
        if finish is None and core.startswith(finish_open) and core.endswith(finish_close):
            finish = core[len(finish_open) : len(core) - len(finish_close)]
            if not finish.replace("_", "").isalnum():
                return None
        elif finish is not None and usage_raw == "null" and core.startswith(usage_open):
            usage_raw = core[len(usage_open) :]
            if not usage_raw.startswith("{") or "\n" in usage_raw:  # (a line of another field)
                return None
        else:
            return None
    if finish is None:
        return None
    parsed = orjson.loads("[" + payloads[i] + ",[" + texts + "]," + usage_raw + "]")
    if type(parsed) is not list or len(parsed) != 3:
        return None
    chunk, strs, usage = parsed
    if type(chunk) is not dict or type(strs) is not list or len(strs) != j - i:
        return None
    if usage is not None and type(usage) is not dict:
        return None
    try:
        text = "".join(strs)  # (and so each value is a str)
    except TypeError:
        return None
    return PlainAnswer(chunk, strs, text, finish, usage, i == 1)
