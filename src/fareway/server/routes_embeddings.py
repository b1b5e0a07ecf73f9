"""The embeddings route: ``POST /v1/embeddings`` (and ``/embeddings``), OpenAI's shape and errors."""

from __future__ import annotations

from fareway.pipeline.context import Reply
from fareway.pipeline.embeddings import EmbeddingService
from fareway.server.app import App, Request
from fareway.wire.base import WireDialect


def add_embedding_routes(app: App, service: EmbeddingService, openai_wire: WireDialect) -> None:
    async def embeddings(req: Request) -> Reply:
        assert req.principal is not None
        return await service.create(req.body, req.headers, req.principal, req.request_id)

    app.add("POST", "/v1/embeddings", embeddings, wire=openai_wire, body=True)
    app.add("POST", "/embeddings", embeddings, wire=openai_wire, body=True)
