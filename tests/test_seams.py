"""The typed seams (transport, ledger sink and reader, price source, metrics sink, health view and
recorder, adapters and wire dialects), the in-memory MockTransport, and the explicit registry of
adapters and dialects in the factory (a missing or broken one stops start-up, naming it).

mypy checks the signatures (``server/factory.py`` assigns every concrete part to its seam);
these tests check the runtime side and drive the executor through MockTransport, with no socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import fareway.adapters
import fareway.wire
from fareway.adapters.base import Adapter, StreamParser
from fareway.config import Config, load_config
from fareway.errors import NoRouteSucceeded, UpstreamConnectionError
from fareway.events import PartDelta
from fareway.ledger.pricing import PriceBook
from fareway.ledger.seams import LedgerReader, LedgerSink, MetricsSink, PriceSource
from fareway.ledger.writer import Ledger
from fareway.metrics import Metrics
from fareway.providers.registry import ProviderSpec
from fareway.router.executor import CallLog, Executor
from fareway.router.health import HealthRecorder, HealthView, OfferStats
from fareway.router.routes import Fallback, Target
from fareway.router.stats import Stats
from fareway.server import factory
from fareway.server.factory import StartupError, build_adapters, build_app, build_wires
from fareway.transport import Transport
from fareway.transport_base import OpenResponse, UpstreamTransport
from fareway.transport_mock import MockRequest, MockResponse, MockTransport
from fareway.types import ChatRequest, Message, TextPart, Upstream
from fareway.wire.base import ResponseMeta, StreamEncoder, WireDialect

# --------------------------------------------------------------------------- conformance


def test_concrete_parts_fulfil_their_seams() -> None:
    stats = Stats()
    ledger = Ledger.open(None, path=":memory:", writer="thread")  # not started: no thread, no file
    assert isinstance(Transport(), UpstreamTransport)
    assert isinstance(MockTransport(lambda r: MockResponse()), UpstreamTransport)
    assert isinstance(MockResponse(), OpenResponse)
    assert isinstance(stats, HealthView) and isinstance(stats, HealthRecorder)
    assert isinstance(stats.snapshot("openai/gpt-4o-mini"), OfferStats)
    assert isinstance(PriceBook(), PriceSource)
    assert isinstance(Metrics(), MetricsSink)
    assert isinstance(ledger, LedgerSink) and isinstance(ledger, LedgerReader)


def test_every_registered_adapter_and_dialect_fulfils_its_contract() -> None:
    up = Upstream("p", "openai", "http://upstream.invalid/v1", "m", api_key="k")
    req = ChatRequest("m", [Message("user", [TextPart("hi")])])
    adapters = build_adapters()
    assert set(adapters) == {"openai", "anthropic", "gemini", "openai_responses"}
    for name, adapter in adapters.items():
        assert isinstance(adapter, Adapter) and adapter.dialect == name
        assert isinstance(
            adapter.stream_parser(dataclasses.replace(up, dialect=adapter.dialect)), StreamParser
        )
    wires = build_wires()
    assert set(wires) == {"openai", "anthropic", "openai_responses"}
    for name, wire in wires.items():
        assert isinstance(wire, WireDialect) and wire.name == name
        assert isinstance(wire.stream_encoder(req, ResponseMeta("req-1")), StreamEncoder)


# ---------------------------------------------------------------------- the registry


def _config(tmp_path: Path) -> Config:
    cfg = load_config(None, env={"OPENAI_API_KEY": "sk-test"})
    return dataclasses.replace(cfg, state_dir=tmp_path, ledger_enabled=False, master_key="m" * 24)


def _fail_import(monkeypatch: pytest.MonkeyPatch, package: Any, name: str) -> None:
    """Make ``from <package> import <name>`` fail as a missing module does."""
    monkeypatch.delattr(package, name, raising=False)
    monkeypatch.setitem(sys.modules, f"{package.__name__}.{name}", None)


def test_build_app_serves_both_dialects(tmp_path: Path) -> None:
    app = build_app(_config(tmp_path))
    for route in ("/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens"):
        assert ("POST", route) in app.routes
    assert ("GET", "/ui") in app.routes and ("GET", "/v1/usage") in app.routes


@pytest.mark.parametrize("name", ["gemini", "anthropic", "openai_chat"])
def test_an_adapter_that_fails_to_import_stops_start_up_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    _fail_import(monkeypatch, fareway.adapters, name)
    with pytest.raises(ImportError, match=rf"fareway\.adapters\.{name}"):
        build_app(_config(tmp_path))


@pytest.mark.parametrize("name", ["anthropic", "openai_chat"])
def test_a_wire_dialect_that_fails_to_import_stops_start_up_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    _fail_import(monkeypatch, fareway.wire, name)
    with pytest.raises(ImportError, match=rf"fareway\.wire\.{name}"):
        build_app(_config(tmp_path))


def test_a_broken_adapter_object_stops_start_up_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fareway.adapters import gemini

    monkeypatch.setattr(gemini, "ADAPTER", object())
    with pytest.raises(StartupError, match=r"the `gemini` adapter .* does not fulfil"):
        build_app(_config(tmp_path))


def test_an_adapter_registered_under_the_wrong_dialect_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fareway.adapters import anthropic, gemini

    monkeypatch.setattr(gemini, "ADAPTER", anthropic.ADAPTER)
    with pytest.raises(StartupError, match=r"`gemini` adapter"):
        build_app(_config(tmp_path))


def test_a_broken_wire_dialect_stops_start_up_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fareway.wire import anthropic

    monkeypatch.setattr(anthropic, "WIRE", object())
    with pytest.raises(StartupError, match=r"the `anthropic` wire dialect"):
        build_app(_config(tmp_path))


def test_a_provider_whose_dialect_has_no_adapter_stops_start_up(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    spec = ProviderSpec("oddball", "cohere", "http://oddball.invalid/v1", builtin=False)  # type: ignore[arg-type]
    providers = {**cfg.providers, "oddball": dataclasses.replace(cfg.providers["openai"], spec=spec)}
    with pytest.raises(StartupError, match=r"provider `oddball` speaks the `cohere` dialect"):
        build_app(dataclasses.replace(cfg, providers=providers))


def test_the_factory_catches_no_import_error() -> None:
    """The registry is plain imports: nothing in the factory swallows an ImportError."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(factory))
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            assert "ImportError" not in ast.unparse(node.type)


# ------------------------------------------------------------- the executor on MockTransport


def _upstream(provider: str) -> Upstream:
    return Upstream(provider, "openai", f"http://{provider}.invalid/v1", "m-1", api_key=f"key-{provider}")


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def _sse(*texts: str) -> list[bytes]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m-1"}
    frames = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    frames += [{**base, "choices": [{"index": 0, "delta": {"content": t}}]} for t in texts]
    frames.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    frames.append(
        {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    )
    return [b"data: " + orjson.dumps(f) + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"]


def _request(stream: bool) -> ChatRequest:
    return ChatRequest("m-1", [Message("user", [TextPart("hello")])], stream=stream)


def _executor(transport: MockTransport, **kw: Any) -> Executor:
    return Executor(transport, build_adapters(), first_token_timeout=5.0, idle_timeout=5.0, **kw)


ERROR_500 = {"error": {"message": "internal error", "type": "server_error"}}


async def test_fallback_over_a_500_then_a_200_non_streamed() -> None:
    def handler(request: MockRequest) -> MockResponse:
        if request.provider == "first":
            return MockResponse(500, json=ERROR_500)
        return MockResponse(200, json=_completion("from second"))

    transport = MockTransport(handler)
    stats = Stats()
    call = CallLog("req-1")
    route = Fallback([Target(_upstream("first")), Target(_upstream("second"))])
    committed = await _executor(transport, stats=stats).run(route, _request(False), call)

    assert committed.response is not None
    assert committed.response.content == [TextPart("from second")]
    assert [(a.target.upstream.provider, a.outcome, a.status) for a in call.attempts] == [
        ("first", "error", 500),
        ("second", "ok", 200),
    ]
    # what went out: each provider's own URL and key, the client's message
    assert [r.url for r in transport.requests] == [
        "http://first.invalid/v1/chat/completions",
        "http://second.invalid/v1/chat/completions",
    ]
    assert [r.headers["authorization"] for r in transport.requests] == [
        "Bearer key-first",
        "Bearer key-second",
    ]
    assert transport.requests[1].json()["messages"] == [{"role": "user", "content": "hello"}]
    assert transport.unfinished() == []
    assert stats.snapshot("first/m-1").error_rate > 0 and stats.snapshot("second/m-1").error_rate == 0


async def test_fallback_over_a_500_then_a_streamed_200() -> None:
    def handler(request: MockRequest) -> MockResponse:
        if request.provider == "first":
            return MockResponse(500, json=ERROR_500)
        return MockResponse(200, headers={"content-type": "text/event-stream"}, chunks=_sse("Hel", "lo"))

    transport = MockTransport(handler)
    call = CallLog("req-2")
    route = Fallback([Target(_upstream("first")), Target(_upstream("second"))])
    committed = await _executor(transport).run(route, _request(True), call)
    text = "".join(e.text for e in [e async for e in committed.events()] if isinstance(e, PartDelta))

    assert text == "Hello"
    assert [(a.target.upstream.provider, a.outcome) for a in call.attempts] == [
        ("first", "error"),
        ("second", "ok"),
    ]
    assert transport.requests[1].json()["stream"] is True
    assert [r.released for r in transport.responses] == [True, True]  # the 200 read to its end
    assert transport.unfinished() == []


async def test_connection_refused_falls_back() -> None:
    def handler(request: MockRequest) -> MockResponse:
        if request.provider == "first":
            raise UpstreamConnectionError("could not connect to the upstream", provider="first")
        return MockResponse(200, json=_completion("ok"))

    call = CallLog("req-3")
    route = Fallback([Target(_upstream("first")), Target(_upstream("second"))])
    committed = await _executor(MockTransport(handler)).run(route, _request(False), call)
    assert committed.target.upstream.provider == "second"
    assert [a.outcome for a in call.attempts] == ["error", "ok"]


def _stall_then(first: MockResponse) -> MockTransport:
    async def handler(request: MockRequest) -> MockResponse:
        return first if request.provider == "first" else MockResponse(200, chunks=_sse("fine"))

    return MockTransport(handler)


async def _stalled_stream() -> AsyncIterator[bytes]:
    yield _sse()[0]  # the role frame: not content, so not the commit point
    await asyncio.Event().wait()  # then nothing, ever
    yield b""  # pragma: no cover


async def test_a_stream_that_stalls_before_its_first_token_falls_back_at_the_idle_timeout() -> None:
    transport = _stall_then(MockResponse(200, chunks=_stalled_stream()))
    call = CallLog("req-4")
    route = Fallback([Target(_upstream("first")), Target(_upstream("second"))])
    executor = Executor(transport, build_adapters(), first_token_timeout=30.0, idle_timeout=0.05)
    committed = await executor.run(route, _request(True), call)
    events = [e async for e in committed.events()]

    assert "".join(e.text for e in events if isinstance(e, PartDelta)) == "fine"
    assert [a.outcome for a in call.attempts] == ["error", "ok"]
    assert call.attempts[0].error is not None and "sent nothing for 0.05s" in call.attempts[0].error.message


async def test_a_stream_that_fails_before_its_first_token_closes_its_connection() -> None:
    transport = _stall_then(MockResponse(200, chunks=_stalled_stream()))
    route = Fallback([Target(_upstream("first")), Target(_upstream("second"))])
    executor = Executor(transport, build_adapters(), first_token_timeout=30.0, idle_timeout=0.05)
    committed = await executor.run(route, _request(True), CallLog("req-4b"))
    _ = [e async for e in committed.events()]
    assert transport.responses[0].closed  # aborted: the provider must see the disconnect
    assert transport.unfinished() == []


async def test_every_attempt_failing_is_no_route_succeeded() -> None:
    transport = MockTransport(lambda request: MockResponse(500, json=ERROR_500))
    call = CallLog("req-5")
    route = Fallback([Target(_upstream("first")), Target(_upstream("second"))])
    with pytest.raises(NoRouteSucceeded):
        await _executor(transport).run(route, _request(False), call)
    assert [a.outcome for a in call.attempts] == ["error", "error"]
    assert transport.unfinished() == []


async def test_mock_response_reads_mixed_chunks_and_raises_at_an_exception() -> None:
    boom = UpstreamConnectionError("reset", provider="p")
    resp = MockResponse(200, chunks=[b"ab", b"c", boom])
    assert await resp.next_chunk() == b"ab"
    assert await resp.next_chunk() == b"c"
    with pytest.raises(UpstreamConnectionError):
        await resp.next_chunk()
    whole = MockResponse(200, body=b"xyz")
    assert await whole.read() == b"xyz" and await whole.next_chunk() == b""


async def test_mock_transport_refuses_a_reused_response() -> None:
    resp = MockResponse(200)
    transport = MockTransport(lambda request: resp)
    http = build_adapters()["openai"].build_request(_request(False), _upstream("p"))
    await transport.send(http, "p", total=1.0, idle=1.0)
    with pytest.raises(RuntimeError, match="same MockResponse"):
        await transport.send(http, "p", total=1.0, idle=1.0)
