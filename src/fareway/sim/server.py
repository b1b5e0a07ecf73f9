"""The simulator's HTTP server (aiohttp.web) and its control API.

Routes (the first path segment picks the provider):

* ``POST /{provider}/v1/chat/completions``, ``GET /{provider}/v1/models`` — OpenAI dialect;
* ``POST /openai/v1/responses`` — the OpenAI Responses API (stateless, as ``store: false``);
* ``POST /anthropic/v1/messages`` (``?beta=true`` too), ``POST /anthropic/v1/messages/count_tokens``;
* ``POST /gemini/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``;
* embeddings (sim.embeddings): ``POST /{provider}/v1/embeddings`` (OpenAI shape, Mistral's and
  DeepInfra's flavours), ``POST /gemini/v1beta/models/{model}:embedContent`` / ``:batchEmbedContents``;
* control: ``POST/GET/DELETE /_sim/faults``, ``GET /_sim/stats``, ``POST /_sim/reset``
  (zeroes the counters; ``{"rng": true}`` also re-seeds the latency and fault RNGs,
  ``{"cache": true}`` empties the Anthropic prompt cache).

Public API: :func:`create_app`, :func:`start_sim` (in the running loop, returns a :class:`SimHandle`),
:func:`run_sim` (blocking, for ``fareway sim``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from fareway.sim.anthropic_dialect import AnthropicDialect, count_tokens_body
from fareway.sim.embeddings import gemini_embeddings, is_embedding_target, openai_embeddings
from fareway.sim.faults import Fault
from fareway.sim.gemini_dialect import GeminiDialect
from fareway.sim.openai_dialect import OpenAIDialect, models_body
from fareway.sim.openai_responses import ResponsesDialect
from fareway.sim.profiles import SimConfig
from fareway.sim.runtime import BadRequest, SimState, handle

STATE_KEY = web.AppKey("fareway_sim_state", SimState)
_JSON = {"Content-Type": "application/json"}


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, headers=_JSON)


def create_app(config: SimConfig | None = None) -> web.Application:
    state = SimState(config or SimConfig.default())
    openai = OpenAIDialect()
    responses = ResponsesDialect()
    anthropic = AnthropicDialect(state)
    gemini = GeminiDialect()

    async def chat(request: web.Request) -> web.StreamResponse:
        return await handle(state, openai, request, request.match_info["provider"])

    async def responses_create(request: web.Request) -> web.StreamResponse:
        return await handle(state, responses, request, "openai")

    async def models(request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        if provider == "anthropic":
            ids = state.config.model_ids(provider)
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in ids
            ]
            body = {"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
            return _json(body)
        if not openai.auth_ok(request, provider):
            return openai.error_response(provider, 401, "missing or invalid API key", "authentication_error")
        return web.Response(body=models_body(provider, state.config.model_ids(provider)), headers=_JSON)

    async def messages(request: web.Request) -> web.StreamResponse:
        return await handle(state, anthropic, request, "anthropic")

    async def count_tokens(request: web.Request) -> web.StreamResponse:
        if not anthropic.auth_ok(request, "anthropic"):
            return anthropic.error_response(
                "anthropic", 401, "x-api-key header is required", "authentication_error"
            )
        try:
            data = orjson.loads(await request.read())
            return _json(count_tokens_body(data))
        except orjson.JSONDecodeError as e:
            return anthropic.error_response("anthropic", 400, f"malformed JSON: {e}")
        except BadRequest as e:
            return anthropic.error_response("anthropic", e.status, e.message, e.etype)

    async def generate(request: web.Request) -> web.StreamResponse:
        if is_embedding_target(request.match_info.get("target", "")):
            return await gemini_embeddings(state, gemini, request)
        return await handle(state, gemini, request, "gemini")

    async def embeddings(request: web.Request) -> web.StreamResponse:
        return await openai_embeddings(state, openai, request, request.match_info["provider"])

    async def faults_post(request: web.Request) -> web.StreamResponse:
        try:
            data = orjson.loads(await request.read())
            specs = data if isinstance(data, list) else [data]
            faults = [Fault.from_obj(s) for s in specs]
        except (orjson.JSONDecodeError, ValueError, TypeError) as e:
            return _json({"error": str(e)}, 400)
        for f in faults:
            state.faults.arm(f)
        return _json({"armed": [f.to_obj() for f in faults]})

    async def faults_get(request: web.Request) -> web.StreamResponse:
        return _json({"faults": state.faults.list()})

    async def faults_delete(request: web.Request) -> web.StreamResponse:
        state.faults.clear()
        return _json({"cleared": True})

    async def stats(request: web.Request) -> web.StreamResponse:
        return _json(state.stats.to_obj())

    async def reset(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        opts = orjson.loads(raw) if raw.strip() else {}
        state.stats.reset()
        if isinstance(opts, dict) and opts.get("rng"):
            state.reseed()
        if isinstance(opts, dict) and opts.get("cache"):
            state.prompt_cache.clear()
        return _json({"reset": True})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_post("/_sim/faults", faults_post)
    app.router.add_get("/_sim/faults", faults_get)
    app.router.add_delete("/_sim/faults", faults_delete)
    app.router.add_get("/_sim/stats", stats)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_post("/anthropic/v1/messages", messages)
    app.router.add_post("/anthropic/v1/messages/count_tokens", count_tokens)
    app.router.add_post("/gemini/v1beta/models/{target}", generate)
    app.router.add_post("/openai/v1/responses", responses_create)
    app.router.add_post("/{provider}/v1/chat/completions", chat)
    app.router.add_post("/{provider}/v1/embeddings", embeddings)
    app.router.add_get("/{provider}/v1/models", models)
    return app


@dataclass
class SimHandle:
    url: str
    port: int
    runner: web.AppRunner
    app: web.Application

    @property
    def state(self) -> SimState:
        return self.app[STATE_KEY]

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_sim(host: str = "127.0.0.1", port: int = 0, config: SimConfig | None = None) -> SimHandle:
    """Start the simulator in the running event loop.  ``port=0`` picks a free port."""
    app = create_app(config)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    real_port = port
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            real_port = int(addr[1])
            break
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return SimHandle(url=f"http://{shown}:{real_port}", port=real_port, runner=runner, app=app)


def run_sim(
    host: str = "127.0.0.1", port: int = 8900, config_path: str | None = None, demo: bool = False
) -> None:
    """Blocking entry point for ``fareway sim``: uvloop when available, Ctrl-C to stop."""
    if config_path:
        config = SimConfig.load(config_path)
    elif demo:
        config = SimConfig.demo()
    else:
        config = SimConfig.default()

    async def main() -> None:
        handle_ = await start_sim(host, port, config)
        print(f"fareway sim listening on {handle_.url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await handle_.stop()

    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        runner = asyncio.run
    try:
        runner(main())
    except KeyboardInterrupt:
        pass
