"""Embeddings calls: ``POST /v1/embeddings`` and the in-process :class:`~fareway.types.Embedder`.

One call goes through the same stages as a chat call, with the embeddings parts in them::

    parse     wire.openai_embeddings.parse_request (400s in OpenAI's error shape)
    resolve   the embeddings Router (policies.Router with kind="embedding"): a pin, a bare id (its
              offers on every keyed provider, cheapest first, as a fallback chain), an alias;
              ``auto`` is refused (vectors of different models are not comparable), a chat model
              is a 400, an unknown one a 404
    admit     the gateway's Admit stage (allow-lists, provider keys, rate limits, budget
              reservations), after resolve as for chat calls
    execute   router.embed_executor (fallback on 429/5xx/timeouts, race, hedge, circuit breaker)
    account   the gateway's account stage (Gateway._account: Accounting, admissions settled,
              after-call hooks): one calls row with kind="embedding" and one attempts row per try

There is no lookup stage (the response cache is for chat) and nothing is streamed.

The in-process seam: :meth:`EmbeddingService.embedder` returns an :class:`~fareway.types.Embedder`
bound to a model (``await embedder.embed(["text", ...]) -> list[list[float]]``) whose calls take
exactly this path, so a feature such as the semantic cache gets routing, fallback and a ledger row
(under the principal it names: the tenant whose request it serves pays for it) for free.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from fareway.errors import BadRequest, FarewayError
from fareway.keys.store import Principal
from fareway.pipeline import attribution
from fareway.pipeline.context import CallContext, Reply
from fareway.pipeline.stages import Stage
from fareway.router.embed_executor import EmbeddingAnswer, EmbeddingExecutor
from fareway.router.executor import Committed
from fareway.router.policies import Decision, Router
from fareway.types import ChatRequest, EmbeddingRequest, EmbeddingResult
from fareway.wire import openai_embeddings as wire_embeddings
from fareway.wire.base import WireDialect

INTERNAL = Principal("internal", "fareway-internal", "inference")
"""Who an in-process Embedder's calls are booked to when its user names no principal."""

_BIG_FLOAT_RESPONSE = 1_000_000
"""Float values above which the JSON body is encoded in a worker thread, off the event loop."""

_ids = random.Random()


def _request_id() -> str:
    """Time-ordered like the server's request ids (server.http.new_request_id)."""
    return f"req_{time.time_ns() // 1_000_000:012x}{_ids.getrandbits(48):012x}"


def _is_auto(name: str) -> bool:
    return name == "auto" or name.startswith(("auto:", "auto@"))


@dataclass(slots=True)
class _Done:
    ctx: CallContext
    req: EmbeddingRequest
    answer: EmbeddingAnswer
    cost_usd: str | None


class EmbeddingService:
    """Runs embeddings calls.  Built by server.factory from the gateway's own parts."""

    def __init__(
        self,
        *,
        router: Router,
        executor: EmbeddingExecutor,
        wire: WireDialect,
        admit: Stage,
        account: Callable[[CallContext], str | None],
    ) -> None:
        self.router = router
        self.executor = executor
        self.wire = wire
        """The OpenAI wire dialect: the calls' ``client_dialect`` in the ledger."""
        self.admit = admit
        self.account = account

    # ------------------------------------------------------------------ entry points

    async def create(
        self, body: bytes, headers: Mapping[str, str], principal: Principal, request_id: str
    ) -> Reply:
        """``POST /v1/embeddings``.  Raises FarewayError (the server encodes it in OpenAI's error
        shape); every path leaves exactly one ledger record."""
        ctx = CallContext(request_id, principal, self.wire, body, headers, kind="embedding")

        async def parsed() -> EmbeddingRequest:
            req = wire_embeddings.parse_request(ctx.body, ctx.headers)
            ctx.user_id = attribution.check_user(req.user)
            ctx.tags = attribution.combine(attribution.header_tags(ctx.headers))
            return req

        done = await self._run(ctx, parsed)
        result, req = done.answer.result, done.req
        up = done.answer.target.upstream
        if (
            req.encoding_format == "float"
            and len(result.vectors) * len(result.vectors[0]) > _BIG_FLOAT_RESPONSE
        ):
            out = await asyncio.to_thread(
                wire_embeddings.encode_response, result, req, up.model, done.cost_usd
            )
        else:
            out = wire_embeddings.encode_response(result, req, up.model, done.cost_usd)
        return Reply(200, self._headers(done), out)

    async def embed(
        self,
        inputs: Sequence[str],
        *,
        model: str,
        dimensions: int | None = None,
        principal: Principal = INTERNAL,
        request_id: str | None = None,
    ) -> EmbeddingResult:
        """Embed ``inputs`` in process, through routing, fallback and the ledger.  Raises
        FarewayError (BadRequest for bad input, NotFound for an unknown model,
        NoRouteSucceeded when no provider answered)."""
        req = EmbeddingRequest(
            model=model, inputs=wire_embeddings.parse_inputs(list(inputs)), dimensions=dimensions
        )
        ctx = CallContext(
            request_id or _request_id(),
            principal,
            self.wire,
            orjson.dumps({"model": model}),
            kind="embedding",
        )

        async def given() -> EmbeddingRequest:
            return req

        return (await self._run(ctx, given)).answer.result

    def embedder(
        self,
        model: str,
        *,
        dimensions: int | None = None,
        principal: Principal = INTERNAL,
    ) -> RoutedEmbedder:
        """An :class:`~fareway.types.Embedder` bound to ``model`` (any name /v1/embeddings takes:
        a bare id, ``provider/model``, an alias)."""
        return RoutedEmbedder(self, model, dimensions=dimensions, principal=principal)

    def decide(self, req: EmbeddingRequest) -> Decision:
        """The routing decision for ``req.model`` (raises NotFound, BadRequest, NoEligibleRoute)."""
        name = req.model
        if _is_auto(name) and name not in self.router.aliases:
            raise BadRequest(
                f"`{name}` routing does not apply to embeddings: vectors of different models cannot be "
                "compared. Name an embedding model (GET /v1/models lists them with kind=embedding) or an alias.",
                param="model",
            )
        # One token of prompt: offers are ordered by their input price (the ratio is the same for
        # every token count) and the per-input length is left to the provider to judge.
        return self.router.decide(ChatRequest(model=name, messages=[]), prompt_tokens=1)

    # ------------------------------------------------------------------ the stages

    async def _run(self, ctx: CallContext, parse: Callable[[], Awaitable[EmbeddingRequest]]) -> _Done:
        try:
            req = await parse()
            ctx.notes["embedding_request"] = req  # for the admit stage's token estimate
            decision = self.decide(req)
            ctx.decision = decision
            ctx.route = decision.route_text
            ctx.route_note = decision.header()
            await self.admit.run(ctx)
            answer = await self.executor.run(decision.route, req, ctx.attempts)
            ctx.committed = Committed(answer.log)
            ctx.usage = answer.result.usage
            ctx.succeeded()
            cost = self.account(ctx)
        except FarewayError as exc:
            ctx.fail(exc)
            self.account(ctx)
            raise
        except asyncio.CancelledError:
            ctx.cancelled()
            self.account(ctx)
            raise
        except Exception:
            ctx.fail(FarewayError("internal error"))
            self.account(ctx)
            raise
        return _Done(ctx, req, answer, cost)

    def _headers(self, done: _Done) -> list[tuple[str, str]]:
        ctx, log = done.ctx, done.answer.log
        up = log.target.upstream
        tried = ",".join(
            f"{a.target.key}={'committed' if a is log else a.outcome}" for a in ctx.attempts.attempts
        )
        hdrs = [
            ("x-fareway-provider", up.provider),
            ("x-fareway-model", up.model),
            ("x-fareway-route", f"{ctx.route_note}; attempts={tried}"),
        ]
        if log.dropped:
            hdrs.append(("x-fareway-dropped-params", ",".join(log.dropped)))
        if done.cost_usd is not None:
            hdrs.append(("x-fareway-cost-usd", done.cost_usd))
        if log.usage is not None and log.usage.estimated:
            hdrs.append(("x-fareway-estimated", "true"))
        return hdrs + list(ctx.reply_headers.items())


class RoutedEmbedder:
    """An :class:`~fareway.types.Embedder` over :meth:`EmbeddingService.embed` for one model."""

    def __init__(
        self,
        service: EmbeddingService,
        model: str,
        *,
        dimensions: int | None = None,
        principal: Principal = INTERNAL,
    ) -> None:
        self.service = service
        self.model = model
        self.dimensions = dimensions
        self.principal = principal

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        result = await self.service.embed(
            texts, model=self.model, dimensions=self.dimensions, principal=self.principal
        )
        return [v.floats() for v in result.vectors]


__all__ = ["INTERNAL", "EmbeddingService", "RoutedEmbedder"]
