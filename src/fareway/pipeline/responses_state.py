"""Conversation state of the Responses API (``/v1/responses``), plugged into the call's stages.

:class:`ResponsesState` is three seams of one feature:

* a **stage before resolve** (``Gateway.prepare``): ``previous_response_id`` and
  ``item_reference`` inputs are resolved from the tenant's stored responses (another tenant's id
  is a 404), and the canonical messages are rebuilt from the whole context: the stored context
  of the previous response, its output, then this request's input (``instructions`` are not
  inherited).  Routing then sees the real prompt;
* a **stream wrapper**: when ``store`` is true (the default) the committed answer is folded into
  the response object as the client gets it (same item ids) and written, committed, *before* the
  stream's final event or the JSON body is sent: the next request can continue from it at once;
* an **after hook**: the gateway's cost, known once the call is accounted, is added to the
  stored response's ``usage``.

The store is :mod:`fareway.ledger.responses_store` (the ledger's database).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from fareway.errors import BadRequest, FarewayError, NotFound
from fareway.events import StreamEvent
from fareway.ledger.responses_store import ResponseStore, StoredResponse
from fareway.pipeline.context import CallContext, Reply
from fareway.types import Message, TextPart
from fareway.wire.openai_responses import DIALECT, echo_of, item_type, items_to_messages
from fareway.wire.openai_responses_stream import MINTED, ResponseBuilder

log = logging.getLogger("fareway.responses")

__all__ = ["ResponsesState", "StateUnavailable", "tenant_of"]

_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}


class StateUnavailable(FarewayError):
    """The responses store cannot be reached now."""

    status = 503
    type = "api_error"
    code = "store_unavailable"


def tenant_of(ctx_principal: Any) -> str:
    return str(ctx_principal.key_id)


def mint_id(item: dict[str, Any]) -> str:
    return f"{_PREFIX.get(item_type(item), 'item')}_{MINTED}{os.urandom(20).hex()}"


def with_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as stored and listed: each with an id (minted when it has none), messages in the
    typed form (``type: message``, content parts)."""
    out = []
    for it in items:
        it = dict(it)
        if item_type(it) == "message":
            it["type"] = "message"
            if isinstance(it.get("content"), str):
                kind = "output_text" if it.get("role") == "assistant" else "input_text"
                it["content"] = [{"type": kind, "text": it["content"]}]
            it.setdefault("status", "completed")
        if not isinstance(it.get("id"), str) or not it.get("id"):
            it["id"] = mint_id(it)
        out.append(it)
    return out


class ResponsesState:
    """The stage, stream wrapper and after hook of the Responses API's stored state."""

    name = "responses_state"

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        await self.store.close()

    # ------------------------------------------------------------------ store calls

    async def _call(self, what: str, aw: Any) -> Any:
        try:
            return await aw
        except FarewayError:
            raise
        except Exception as exc:  # the database: unreachable, timed out, refused
            log.warning("responses store %s failed: %s: %s", what, type(exc).__name__, exc)
            raise StateUnavailable(
                "the responses store is unavailable right now; try again (stored conversations are kept)"
            ) from exc

    async def get(self, tenant: str, response_id: str) -> StoredResponse:
        rec = await self._call("read", self.store.get(tenant, response_id))
        if rec is None:
            raise NotFound(
                f"Response with id '{response_id}' not found.", param="response_id", code="not_found"
            )
        assert isinstance(rec, StoredResponse)
        return rec

    async def delete(self, tenant: str, response_id: str) -> None:
        if not await self._call("delete", self.store.delete(tenant, response_id)):
            raise NotFound(
                f"Response with id '{response_id}' not found.", param="response_id", code="not_found"
            )

    # ---------------------------------------------------------- the stage (before resolve)

    async def run(self, ctx: CallContext) -> Reply | None:
        req = ctx.req
        if req is None or ctx.wire.name != DIALECT:
            return None
        echo = echo_of(req)
        tenant = tenant_of(ctx.principal)
        items: list[dict[str, Any]] = list(echo.get("input") or [])
        history: list[dict[str, Any]] = []
        prev = echo.get("previous_response_id")
        if prev:
            rec = await self._call("read", self.store.get(tenant, prev))
            if rec is None:
                raise NotFound(
                    f"Previous response with id '{prev}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = [*rec.context, *(rec.response.get("output") or [])]
        refs = [it.get("id") for it in items if item_type(it) == "item_reference"]
        if refs:
            if not all(isinstance(r, str) and r for r in refs):
                raise BadRequest("every 'item_reference' input needs an 'id'", param="input")
            found = await self._call("read", self.store.items(tenant, [str(r) for r in refs]))
            missing = [r for r in refs if r not in found]
            if missing:
                raise NotFound(
                    f"Item with id '{missing[0]}' not found. Items are stored only for responses created with "
                    "store=true, by the same key.",
                    param="input",
                    code="not_found",
                )
            items = [found[it["id"]] if item_type(it) == "item_reference" else it for it in items]
        context = [*history, *items]
        if echo.get("needs_state"):
            messages = items_to_messages(context, "input")
            instructions = echo.get("instructions")
            if instructions:
                messages.insert(0, Message("system", [TextPart(instructions)]))
            if not messages:
                raise BadRequest("the conversation is empty: give 'input'", param="input")
            req.messages = messages
        ctx.notes["responses"] = {"context": with_ids(context) if echo.get("store", True) else context}
        return None

    # ---------------------------------------------------------------- the stream wrapper

    def wrap(self, ctx: CallContext, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        if ctx.wire.name != DIALECT or ctx.req is None or not echo_of(ctx.req).get("store", True):
            return events
        return self._tee(ctx, events)

    async def _tee(self, ctx: CallContext, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        req = ctx.req
        assert req is not None and ctx.committed is not None
        echo = echo_of(req)
        provider = ctx.committed.target.upstream.provider
        builder = ResponseBuilder(echo, provider, req.model, full=True, private=True)
        async for e in events:
            builder.add(e)
            yield e
        builder.finish_items()
        notes = ctx.notes.setdefault("responses", {})
        rec = StoredResponse(
            id=builder.response_id,
            tenant=tenant_of(ctx.principal),
            request_id=ctx.request_id,
            response=builder.response("completed", full=True),
            context=notes.get("context") or [],
            previous_response_id=echo.get("previous_response_id"),
            created_at=float(echo.get("created_at") or 0),
        )
        try:
            await self.store.put(rec)
            notes["stored"] = True
        except Exception:  # the answer still reaches the client; it cannot be continued from
            log.exception("could not store response %s (request %s)", rec.id, ctx.request_id)

    # --------------------------------------------------------------------- after hook

    def wants(self, ctx: CallContext) -> bool:
        notes = ctx.notes.get("responses")
        return bool(notes and notes.get("stored"))

    async def after(self, ctx: CallContext) -> None:
        notes = ctx.notes.get("responses")
        if not notes or not notes.get("stored") or ctx.cost_usd is None or ctx.req is None:
            return
        try:
            cost = float(ctx.cost_usd)
        except ValueError:
            return
        await self.store.set_cost(tenant_of(ctx.principal), echo_of(ctx.req)["id"], cost)
