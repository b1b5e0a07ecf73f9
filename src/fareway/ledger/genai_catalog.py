"""Catalog rows derived from genai-prices' data (``providers/catalog_genai.toml``), and the refresh
that writes them (``fareway catalog refresh``).  Here, beside ``pricing``, because genai-prices is
the ledger's price data; ``providers/catalog.py`` only reads the generated file.

genai-prices (the price data the ledger uses, ``ledger/pricing.py``) lists, per provider, the
models it prices: an id, a context window for most, and the prices.  Every such model of the
providers Fareway ships (``GENAI_PROVIDER_IDS``; DeepInfra is not in genai-prices) that passes
the rules below becomes a catalog row: provider, model id (genai-prices' id, or the first exact id
its match rule names when the rule does not take its own id: :func:`api_id`), family (the same
id), context window (when genai-prices gives one), and, as a record, its base input/output price
per million tokens.  What genai-prices does not know is left unknown, never guessed:

* capabilities (``tools``, ``vision``, ``json_schema``, ``reasoning``) and ``max_output`` are
  ``None``: a bare id or a pin to such a row is not refused for them (the provider decides);
* ``quality`` is 0, *untiered*: ``auto`` never picks the row (its tiers are the hand-set ones
  of ``catalog.toml``, from public benchmark numbers, docs/catalog.md).

A row of ``catalog.toml`` for the same (provider, model) replaces the generated one.

Rules (which genai-prices models are chat models a provider serves today):

* not flagged ``deprecated`` in genai-prices;
* has an input and an output price (embedding models have no output price; they are hand-set);
* the id names no non-chat model (:data:`NOT_CHAT`: speech, transcription, images, realtime and
  live audio, embeddings, moderation and guard classifiers, computer use, robotics) and is not a
  match prefix (``ft:``..., ending in ``-`` or ``.ft-``);
* ``gemini``: only ``gemini-*``/``gemma-*`` ids (genai-prices' ``google`` also prices Vertex AI's
  Claude models, which the Gemini API does not serve);
* ``openai``: not the legacy completion models (``ada``, ``babbage``, ``curie``, ``davinci``,
  ``text-davinci-*``, ``*-instruct``: no chat endpoint) nor the open-weight ``gpt-oss-*``
  (genai-prices prices them under ``openai``; OpenAI's API does not serve them: other providers
  host them, as ``catalog.toml`` lists);
* ``:free`` ids only on OpenRouter (the only provider whose ids carry that suffix).

The price recorded is the row's base price (tiers above it: see genai-prices); a model whose price
changes on a date records the newest entry and its ``price_from``.  The ledger still prices every
call from genai-prices itself (``ledger/pricing.py``); a test checks the two agree.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from fareway.ledger.pricing import GENAI_PROVIDER_IDS

FILE_NAME = "catalog_genai.toml"

NOT_CHAT = re.compile(
    r"tts|whisper|transcri|embed|image|realtime|audio|(?:^|[-/])live(?:[-/]|$)|moderation|guard"
    r"|orpheus|computer-use|robotics|ocr|nano-banana|voxtral|dall-e|sora|veo|imagen|lyria",
    re.IGNORECASE,
)
_OPENAI_LEGACY = re.compile(r"^(?:ada|babbage|curie|davinci)(?:-\d+)?$|^text-davinci-|-instruct$|^gpt-oss-")


@dataclass(frozen=True, slots=True)
class GenaiRow:
    provider: str
    """The Fareway provider name."""
    model: str
    context_window: int | None
    input: Decimal | None
    output: Decimal | None
    price_from: date | None = None


def _keep(provider: str, model_id: str) -> bool:
    if NOT_CHAT.search(model_id):
        return False
    if model_id.startswith("ft:") or model_id.endswith(("-", ".ft-")):
        return False
    if model_id.endswith(":free") and provider != "openrouter":
        return False
    if provider == "gemini" and not model_id.startswith(("gemini-", "gemma-")):
        return False
    return not (provider == "openai" and _OPENAI_LEGACY.search(model_id))


def _base(value: Any) -> Decimal | None:
    if value is None:
        return None
    base = getattr(value, "base", value)  # TieredPrices: the base tier
    return Decimal(base)


def _newest_price(prices: Any) -> tuple[Any, date | None]:
    """The ModelPrice to record: a fixed one, or a schedule's newest start-dated entry."""
    if not isinstance(prices, list):
        return prices, None
    best: tuple[date, Any] | None = None
    for cp in prices:
        start = getattr(cp.constraint, "start_date", None)
        if cp.constraint is not None and start is None:
            continue  # a time-of-day price (off-peak) is not the list price
        key = start or date.min
        if best is None or key >= best[0]:
            best = (key, cp.prices)
    if best is None:
        return prices[0].prices, None
    return best[1], (best[0] if best[0] != date.min else None)


def _first(price: Any, *names: str) -> Decimal | None:
    for name in names:
        value = _base(getattr(price, name, None))
        if value is not None:
            return value
    return None


def _equals(clause: Any) -> list[str]:
    """The exact ids a match clause names (``equals``, also inside ``or``)."""
    if hasattr(clause, "equals"):
        return [str(clause.equals)]
    return [e for c in getattr(clause, "or_", None) or [] for e in _equals(c)]


def api_id(model: Any) -> str | None:
    """The id to send upstream: genai-prices' own id when its match rule takes it (nearly always),
    else the first exact id the rule names (Mistral's ``codestral`` is matched as
    ``codestral-latest``), else None (no id can be named)."""
    if model.match.is_match(model.id):
        return str(model.id)
    named = _equals(model.match)
    return named[0] if named else None


def build_rows(snapshot: Any | None = None) -> list[GenaiRow]:
    """The catalog rows genai-prices' data gives, in provider then genai-prices order."""
    if snapshot is None:
        from genai_prices.data_snapshot import get_snapshot

        snapshot = get_snapshot()
    by_id = {p.id: p for p in snapshot.providers}
    rows: list[GenaiRow] = []
    for provider, genai_id in GENAI_PROVIDER_IDS.items():
        p = by_id.get(genai_id)
        if p is None:
            continue
        for m in p.models:
            model_id = api_id(m)
            if m.deprecated or model_id is None or not _keep(provider, model_id):
                continue
            price, since = _newest_price(m.prices)
            inp = _first(price, "input_mtok", "input_text_mtok")
            out = _first(price, "output_mtok", "output_text_mtok")
            if inp is None or out is None:
                continue
            rows.append(GenaiRow(provider, model_id, m.context_window, inp, out, since))
    return rows


def genai_version() -> str:
    import genai_prices

    return str(genai_prices.__version__)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _body(rows: list[GenaiRow]) -> str:
    lines: list[str] = []
    for r in rows:
        lines.append("[[offer]]")
        lines.append(f"provider = {_toml_str(r.provider)}")
        lines.append(f"model = {_toml_str(r.model)}")
        if r.context_window is not None:
            lines.append(f"context_window = {r.context_window}")
        lines.append(f"input = {_toml_str(str(r.input))}")
        lines.append(f"output = {_toml_str(str(r.output))}")
        if r.price_from is not None:
            lines.append(f"price_from = {_toml_str(r.price_from.isoformat())}")
        lines.append("")
    return "\n".join(lines)


def digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def render(rows: list[GenaiRow], version: str) -> str:
    """The whole ``catalog_genai.toml`` text: a header naming its source and a digest of the rows
    (an edit by hand breaks it), then one ``[[offer]]`` per row."""
    body = _body(rows)
    header = (
        "# GENERATED by `fareway catalog refresh` from genai-prices' data: do not edit by hand.\n"
        "# Rules and meaning: src/fareway/ledger/genai_catalog.py; docs/catalog.md.\n"
        "# input/output: USD per million tokens (base tier), a record of what genai-prices says;\n"
        "# the ledger prices calls from genai-prices itself.\n"
        f"genai_prices = {_toml_str(version)}\n"
        f"rows = {len(rows)}\n"
        f"sha256 = {_toml_str(digest(body))}\n\n"
    )
    return header + body


def split_body(text: str) -> str:
    """The rows part of a generated file (what ``sha256`` covers)."""
    i = text.find("[[offer]]")
    return text[i:] if i != -1 else ""


def builtin_path() -> Path:
    """The checked-in generated file (``src/fareway/providers/catalog_genai.toml``)."""
    return Path(str(resources.files("fareway.ledger"))).parent / "providers" / FILE_NAME
