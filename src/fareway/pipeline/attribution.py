"""Attribution: who a call was for and which features it served, for the ledger row.

* The end user: OpenAI's ``user`` (chat completions, responses, embeddings) or Anthropic's
  ``metadata.user_id``, as the wire parsers put it in ``ChatRequest.user``.  It stays in the
  request: the adapters pass it on where the provider takes it (OpenAI ``user``, Anthropic
  ``metadata.user_id``) and drop it elsewhere (Gemini).
* Request tags: the ``x-fareway-tags: a,b`` header and/or ``metadata.tags`` in the body (a
  list of strings, or one comma-separated string as OpenAI's string-valued metadata allows);
  both together give their union.  ``metadata.tags`` is taken out of the request: no provider
  is sent it.

A tag is 1..:data:`MAX_TAG_LEN` printable ASCII characters other than a comma or a space (the
ledger joins a call's tags with commas); a call has at most :data:`MAX_TAGS` of them, sorted and
deduplicated.  Anything else is a 400 in the caller's dialect (param ``x-fareway-tags`` or
``metadata.tags``).  A user id is at most :data:`MAX_USER_LEN` characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fareway.errors import BadRequest
from fareway.types import ChatRequest

TAGS_HEADER = "x-fareway-tags"
MAX_TAGS = 10
MAX_TAG_LEN = 64
MAX_USER_LEN = 256


def _check_tag(tag: str, param: str) -> str:
    if not tag:
        raise BadRequest(f"'{param}' holds an empty tag", param=param)
    if len(tag) > MAX_TAG_LEN:
        raise BadRequest(
            f"'{param}': a tag is at most {MAX_TAG_LEN} characters ({len(tag)} given)", param=param
        )
    if not all("!" <= c <= "~" and c != "," for c in tag):
        raise BadRequest(
            f"'{param}': a tag is printable ASCII without spaces or commas; {tag[:MAX_TAG_LEN]!r} is not",
            param=param,
        )
    return tag


def _split(text: str, param: str) -> list[str]:
    return [_check_tag(t.strip(), param) for t in text.split(",")]


def header_tags(headers: Mapping[str, str]) -> list[str]:
    """The tags of the ``x-fareway-tags`` header (none when absent)."""
    value = None
    for k, v in headers.items():
        if k.lower() == TAGS_HEADER:
            value = v
            break
    if value is None or not value.strip():
        return []
    return _split(value, TAGS_HEADER)


def body_tags(value: Any) -> list[str]:
    """The tags of a ``metadata.tags`` value: a list of strings or a comma-separated string."""
    param = "metadata.tags"
    if value is None:
        return []
    if isinstance(value, str):
        return _split(value, param) if value.strip() else []
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return [_check_tag(t, param) for t in value]
    raise BadRequest(f"'{param}' must be a list of strings or a comma-separated string", param=param)


def combine(*groups: list[str]) -> tuple[str, ...]:
    """The call's tags: sorted, unique, at most :data:`MAX_TAGS`."""
    if not any(groups):  # an untagged call (most are): nothing to sort
        return ()
    tags = sorted({t for g in groups for t in g})
    if len(tags) > MAX_TAGS:
        raise BadRequest(f"a call has at most {MAX_TAGS} tags ({len(tags)} given)", param=TAGS_HEADER)
    return tuple(tags)


def check_user(user: str | None) -> str | None:
    if user is not None and len(user) > MAX_USER_LEN:
        raise BadRequest(f"'user' is at most {MAX_USER_LEN} characters ({len(user)} given)", param="user")
    return user


def _pop_tags(meta: Any) -> Any:
    """Take ``tags`` out of a metadata dict (in place); returns its value."""
    if isinstance(meta, dict) and "tags" in meta:
        return meta.pop("tags")
    return None


def from_chat(req: ChatRequest, headers: Mapping[str, str]) -> tuple[str | None, tuple[str, ...]]:
    """The user id and tags of ``req``; ``metadata.tags`` is removed from it (OpenAI metadata,
    or the Anthropic dialect's passed-through metadata)."""
    value = _pop_tags(req.metadata)
    for ext in req.extensions.values():
        meta = ext.get("metadata") if isinstance(ext, dict) else None
        if isinstance(meta, dict) and "tags" in meta:
            ext_value = _pop_tags(meta)
            value = ext_value if value is None else value
            if not meta:
                del ext["metadata"]
    return check_user(req.user), combine(header_tags(headers), body_tags(value))
