"""The judge: its prompt, its strict verdict schema, how a verdict is read, and who should not judge.

Blind and in both orders.  The judge sees the conversation and two answers labelled ``A`` and
``B``, never the model names.  Each pair is judged twice, once with the control's answer as A
and once with the challenger's as A (see :func:`fareway.experiments.stats.combine`).

Strict structured output.  The verdict is asked for with a ``json_schema`` response format
(``strict``) of :data:`VERDICT_SCHEMA`: ``{"reason": "...", "winner": "A" | "B" | "tie"}``
(reason first, so the model writes its comparison before committing to a letter).  The adapters
send it in each provider's form (OpenAI ``response_format``, Anthropic ``output_config.format``,
Gemini ``responseJsonSchema``).  :func:`read_verdict` accepts exactly that object and nothing
else: prose around it, another key, another value is *unparseable*, recorded as such and never
guessed from the text.

Self-preference.  Judges favour answers of their own model and family; :func:`family_warnings`
names the variants a judge shares a model family or a maker with (a warning, not an error).
"""

from __future__ import annotations

from typing import Any

import orjson

from fareway.experiments.stats import Verdict
from fareway.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    ResponseFormat,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "description": "A short comparison of the two answers."},
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
    },
    "required": ["reason", "winner"],
    "additionalProperties": False,
}

SYSTEM = (
    "You are an impartial judge of AI assistant answers. You are given a conversation and two "
    "candidate answers to its last turn, labelled A and B. Decide which answer serves the user "
    "better: correctness first, then helpfulness, completeness and clarity. The order of the "
    "answers and their length must not influence you. If neither is better, say tie. Reply with "
    'the JSON object the response format asks for: a short "reason", then "winner": "A", "B" or "tie".'
)

MAX_CONVERSATION_CHARS = 24_000
"""The conversation shown to the judge is cut to its last this many characters (judge cost)."""
MAX_ANSWER_CHARS = 12_000
JUDGE_MAX_TOKENS = 512


def _part_text(p: Part) -> str:
    if isinstance(p, TextPart):
        return p.text
    if isinstance(p, ToolCallPart):
        return f"[calls tool {p.name}({p.arguments})]"
    if isinstance(p, ToolResultPart):
        return f"[tool result: {''.join(_part_text(q) for q in p.content)}]"
    if isinstance(p, ImagePart):
        return "[image]"
    if isinstance(p, OpaquePart):
        return "[content of another kind]"
    return ""  # thinking is not part of the answer


def message_text(m: Message) -> str:
    return "".join(_part_text(p) for p in m.content)


def conversation_text(req: ChatRequest) -> str:
    lines = [f"[{m.role}]\n{message_text(m)}" for m in req.messages]
    text = "\n\n".join(lines)
    if len(text) > MAX_CONVERSATION_CHARS:
        text = "[... earlier turns cut ...]\n" + text[-MAX_CONVERSATION_CHARS:]
    return text


def answer_text(resp: ChatResponse) -> str:
    text = "".join(_part_text(p) for p in resp.content)
    if len(text) > MAX_ANSWER_CHARS:
        text = text[:MAX_ANSWER_CHARS] + " [... cut ...]"
    return text


def judge_request(judge_model: str, conversation: str, answer_a: str, answer_b: str) -> ChatRequest:
    """One verdict call: the conversation, answer A, answer B, the strict verdict schema."""
    user = (
        f"<conversation>\n{conversation}\n</conversation>\n\n"
        f"<answer_A>\n{answer_a}\n</answer_A>\n\n"
        f"<answer_B>\n{answer_b}\n</answer_B>\n\n"
        "Which answer is better: A, B, or tie?"
    )
    return ChatRequest(
        model=judge_model,
        messages=[Message("system", [TextPart(SYSTEM)]), Message("user", [TextPart(user)])],
        max_tokens=JUDGE_MAX_TOKENS,
        temperature=0.0,
        response_format=ResponseFormat(
            "json_schema", name="verdict", schema=VERDICT_SCHEMA, strict=True, description="The verdict."
        ),
    )


def read_verdict(text: str) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` from the judge's answer, or None when it is not exactly the
    verdict object (unparseable: recorded, never guessed)."""
    try:
        obj = orjson.loads(text.strip())
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or set(obj) != {"reason", "winner"}:
        return None
    if not isinstance(obj["reason"], str):
        return None
    winner = obj["winner"]
    return winner if winner in ("A", "B", "tie") else None


def as_variant(letter: str | None, control_first: bool) -> Verdict:
    """A letter verdict in terms of the variants (``control_first``: the control was answer A)."""
    if letter is None:
        return "unparseable"
    if letter == "tie":
        return "tie"
    first_is_a = letter == "A"
    if first_is_a == control_first:
        return "control"
    return "challenger"


# ------------------------------------------------------------------------------- families

_MAKERS: tuple[tuple[str, str], ...] = (
    ("gpt-oss", "OpenAI"),
    ("gpt", "OpenAI"),
    ("o1", "OpenAI"),
    ("o3", "OpenAI"),
    ("o4", "OpenAI"),
    ("claude", "Anthropic"),
    ("gemini", "Google"),
    ("gemma", "Google"),
    ("llama", "Meta"),
    ("mistral", "Mistral"),
    ("mixtral", "Mistral"),
    ("codestral", "Mistral"),
    ("grok", "xAI"),
    ("deepseek", "DeepSeek"),
    ("qwen", "Alibaba"),
    ("glm", "Zhipu"),
    ("zai-glm", "Zhipu"),
)


def maker_of(family: str) -> str | None:
    """The lab behind a model family, from its name (``llama-3.3-70b`` -> Meta), or None."""
    f = family.lower().rsplit("/", 1)[-1]
    for prefix, maker in _MAKERS:
        if f.startswith(prefix):
            return maker
    return None


def family_warnings(judge: tuple[str, str], variants: dict[str, tuple[str, str]]) -> list[str]:
    """Warnings for a judge that shares a model family or a maker with a variant.  Each model is
    ``(name as configured, family)``; ``variants`` maps ``control``/``challenger`` to theirs."""
    out: list[str] = []
    jname, jfam = judge
    jmaker = maker_of(jfam)
    for arm, (vname, vfam) in variants.items():
        if jfam and jfam == vfam:
            out.append(
                f"the judge {jname} is the same model family ({jfam}) as the {arm} {vname}: judges favour "
                "their own answers (self-preference); prefer a judge from another family"
            )
        elif jmaker is not None and jmaker == maker_of(vfam):
            out.append(
                f"the judge {jname} and the {arm} {vname} are both {jmaker} models: judges favour answers "
                "of their own family (self-preference); prefer a judge from another maker"
            )
    return out
