"""The OpenAI Responses API routes, and the wiring of its stored state.

* ``POST /v1/responses``: a call through the gateway's stages like chat (routing, fallback,
  races, accounting), in the Responses dialect;
* ``GET /v1/responses/{id}`` (``?include[]=reasoning.encrypted_content`` shows reasoning state),
  ``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items`` (``limit`` 1-100, default
  20; ``order`` ``desc`` (default) or ``asc``; ``after`` an item id): the caller's own stored
  responses only; any other id is a 404.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fareway.config import Config
from fareway.errors import BadRequest, NotFound
from fareway.ledger.responses_store import open_store
from fareway.pipeline.gateway import Gateway, Reply
from fareway.pipeline.responses_state import ResponsesState, tenant_of
from fareway.server.app import App, Request, json_reply
from fareway.wire.base import WireDialect
from fareway.wire.openai_responses import strip_private

__all__ = ["add_responses"]

_PREFIX = "/v1/responses/"
_ENCRYPTED = "reasoning.encrypted_content"


def _hide_reasoning_state(response: dict[str, Any]) -> dict[str, Any]:
    out = dict(response)
    out["output"] = [
        {k: v for k, v in it.items() if k != "encrypted_content"} if it.get("type") == "reasoning" else it
        for it in response.get("output") or []
        if isinstance(it, dict)
    ]
    return out


def _query(req: Request) -> dict[str, list[str]]:
    return parse_qs(req.query.decode("latin-1"), keep_blank_values=True)


def add_responses(app: App, gateway: Gateway, wire: WireDialect, config: Config) -> ResponsesState:
    """Register the routes and plug the state into the gateway's stages (see the module docstring)."""
    state = ResponsesState(
        open_store(
            config.ledger_url,
            str(config.ledger_file),
            config.ledger_schema,
            connect_timeout=config.ledger_connect_timeout,
            statement_timeout=config.ledger_statement_timeout,
        )
    )
    gateway.prepare.append(state)
    gateway.wrappers.append(state)
    gateway.after_hooks.append(state)
    gateway.on_start.append(state.start)
    gateway.on_close.append(state.close)

    async def create(req: Request) -> Reply:
        assert req.principal is not None
        return await gateway.chat(wire, req.body, req.headers, req.principal, req.request_id)

    def _split(req: Request) -> tuple[str, str]:
        rest = req.path[len(_PREFIX) :].strip("/")
        rid, _, tail = rest.partition("/")
        if not rid:
            raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
        return rid, tail

    async def get(req: Request) -> Reply:
        assert req.principal is not None
        rid, tail = _split(req)
        q = _query(req)
        if tail == "input_items":
            return await _input_items(req, rid, q)
        if tail:
            raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
        if q.get("stream", ["false"])[0].lower() == "true":
            raise BadRequest(
                "streaming a stored response back is not supported by this gateway", param="stream"
            )
        rec = await state.get(tenant_of(req.principal), rid)
        include = q.get("include[]", []) + q.get("include", [])
        body = rec.response if _ENCRYPTED in include else _hide_reasoning_state(rec.response)
        return json_reply(strip_private(body))

    async def _input_items(req: Request, rid: str, q: dict[str, list[str]]) -> Reply:
        assert req.principal is not None
        try:
            limit = int(q.get("limit", ["20"])[0])
        except ValueError:
            raise BadRequest("'limit' must be an integer between 1 and 100", param="limit") from None
        if not 1 <= limit <= 100:
            raise BadRequest("'limit' must be an integer between 1 and 100", param="limit")
        order = q.get("order", ["desc"])[0]
        if order not in ("asc", "desc"):
            raise BadRequest("'order' must be asc or desc", param="order")
        rec = await state.get(tenant_of(req.principal), rid)
        items = list(rec.context) if order == "asc" else list(reversed(rec.context))
        after = q.get("after", [None])[0]
        if after:
            ids = [it.get("id") for it in items]
            if after not in ids:
                raise BadRequest(f"'after' names item '{after}', which is not in this list", param="after")
            items = items[ids.index(after) + 1 :]
        page = strip_private(items[:limit])
        return json_reply(
            {
                "object": "list",
                "data": page,
                "first_id": page[0].get("id") if page else None,
                "last_id": page[-1].get("id") if page else None,
                "has_more": len(items) > limit,
            }
        )

    async def delete(req: Request) -> Reply:
        assert req.principal is not None
        rid, tail = _split(req)
        if tail:
            raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
        await state.delete(tenant_of(req.principal), rid)
        return json_reply({"id": rid, "object": "response.deleted", "deleted": True})

    app.add("POST", "/v1/responses", create, wire=wire, body=True)
    app.add("POST", "/responses", create, wire=wire, body=True)
    app.add("GET", _PREFIX, get, wire=wire, prefix=True)
    app.add("DELETE", _PREFIX, delete, wire=wire, prefix=True)
    return state
