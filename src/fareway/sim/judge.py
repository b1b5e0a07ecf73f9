"""A simulated LLM judge whose taste is set in the config: a preference between two answers and a
position bias, so A/B experiments can be tested and shown offline.

Answers are told apart by *signatures*: a model profile's ``signature`` (profiles.py) is put
before each of its text answers (one token), and the judge table names the signature it tends to
prefer and the other one::

    [providers.openai.models."gpt-4o"]
    signature = "[control]"
    [providers.groq.models."llama-3.3-70b-versatile"]
    signature = "[challenger]"

    [judges."claude-sonnet-4-5"]     # this model id, on any provider, judges
    prefer = "[challenger]"          # the signature of the answer it favours ...
    over = "[control]"               # ... against this one
    preference = 0.7                 # on a pair: P(the `prefer` answer is the better one)
    position_bias = 0.1              # on each verdict: P(it names the first answer, whatever they say)
    tie = 0.0                        # on a pair: P(it finds them equal)
    unparseable = 0.0                # on each verdict: P(it answers prose instead of the verdict)

A request to a judge model that asks for JSON (a schema) gets its verdict: the schema's value
(schema.py), with the property whose ``enum`` holds ``"A"`` and ``"B"`` set to the verdict.
Which answer is first is where the two signatures first appear in the system and last user text.

What it decides, deterministically from the config seed and the prompt:

* per *pair* (the same for both orders: drawn from the prompt's words sorted, which swapping the
  answers does not change): ``u < tie`` is a tie; else the ``prefer`` answer is the better one
  with probability ``preference``;
* per *verdict* (each order on its own): with probability ``unparseable`` prose; else with
  probability ``position_bias`` "A"; else the pair's verdict, as a letter for this order.

So a judge with ``position_bias = 1`` always names the first answer, and the expected win rate
of the ``prefer`` side, with ties counted half and a win only when both orders agree, is
``tie/2 + (1 - tie) * (position_bias/2 + preference * (1 - position_bias))``; the share of pairs
whose two verdicts differ is ``tie * (1 - (1 - b)^2) + (1 - tie) * b`` with ``b = position_bias``.
Without both signatures in the prompt it cannot tell the answers apart: the better one is then
drawn per verdict, first or second alike.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, fields
from typing import Any

import orjson

from fareway.sim.schema import value_for

_SCALE = float(1 << 64)


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    prefer: str = ""
    over: str = ""
    preference: float = 0.5
    position_bias: float = 0.0
    tie: float = 0.0
    unparseable: float = 0.0

    @classmethod
    def from_obj(cls, name: str, obj: Any) -> JudgeSpec:
        if not isinstance(obj, dict):
            raise ValueError(f"judges.{name} must be a table")
        known = {f.name for f in fields(cls)}
        extra = sorted(set(obj) - known)
        if extra:
            raise ValueError(f"judges.{name}: unknown field(s) {extra} (known: {sorted(known)})")
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if k in ("prefer", "over"):
                if not isinstance(v, str):
                    raise ValueError(f"judges.{name}.{k} must be a string (a signature)")
                out[k] = v
            else:
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                    raise ValueError(f"judges.{name}.{k} must be a probability from 0 to 1")
                out[k] = float(v)
        return cls(**out)


def _u(seed: int, domain: bytes, text: str) -> float:
    h = hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"),
        digest_size=8,
        key=seed.to_bytes(8, "little", signed=True),
        person=domain,
    )
    return int.from_bytes(h.digest(), "little") / _SCALE


def letter(spec: JudgeSpec, prompt: str, seed: int) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` for this prompt, or None for an unparseable answer."""
    if _u(seed, b"unparseable", prompt) < spec.unparseable:
        return None
    if _u(seed, b"bias", prompt) < spec.position_bias:
        return "A"
    pair = " ".join(sorted(prompt.split()))
    u = _u(seed, b"pair", pair)
    if u < spec.tie:
        return "tie"
    ip = prompt.find(spec.prefer) if spec.prefer else -1
    io = prompt.find(spec.over) if spec.over else -1
    if ip >= 0 and io >= 0:
        prefer_first = ip < io
    else:  # the answers cannot be told apart: the better one is first or second alike
        prefer_first = _u(seed, b"order", prompt) < 0.5
    wins = (u - spec.tie) / (1.0 - spec.tie) < spec.preference if spec.tie < 1.0 else False
    first = prefer_first if wins else not prefer_first
    return "A" if first else "B"


def _verdict_key(schema: Any) -> str | None:
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return None
    for key, sub in props.items():
        enum = sub.get("enum") if isinstance(sub, dict) else None
        if isinstance(enum, list) and "A" in enum and "B" in enum:
            return str(key)
    return None


def verdict_text(spec: JudgeSpec, prompt: str, schema: Any, seed: int) -> str:
    """The judge's answer: the schema's JSON with the verdict in it, or prose when unparseable."""
    v = letter(spec, prompt, seed)
    if v is None:
        return "Both answers have merits; on balance I lean towards the first one."
    rng = random.Random(int(_u(seed, b"value", prompt) * _SCALE))
    value = value_for(schema if schema is not None else {"type": "object"}, rng)
    key = _verdict_key(schema)
    if isinstance(value, dict) and key is not None:
        enum = schema["properties"][key]["enum"]
        value[key] = v if v != "tie" or "tie" in enum else "A"
    return orjson.dumps(value).decode()
