"""How a response reaches the socket under Fareway's HTTP protocol (server.protocol): the head
goes out with the first piece of the body, and a stream's last read goes out with its closing
chunk and the end of the chunked body, so a streamed call costs the gateway as few writes (system
calls) as the bare pass-through's."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from fareway.server import protocol
from tests.conftest import MASTER_KEY, gateway_config, start_gateway


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


async def test_the_head_goes_out_with_the_first_body_write_in_order() -> None:
    loop = asyncio.get_running_loop()
    t = _Recorder()
    w = protocol._HeadWithBody(t, loop)  # type: ignore[arg-type]
    w.write(b"HEAD")
    assert t.writes == []
    w.write(b"body1")
    w.write(b"body2")
    assert t.writes == [b"HEADbody1", b"body2"]
    assert w.get_extra_info("peername") == ("127.0.0.1", 1)  # anything else: the real transport


async def test_a_head_with_no_body_in_the_same_turn_is_written_at_its_end_and_before_a_close() -> None:
    loop = asyncio.get_running_loop()
    t = _Recorder()
    w = protocol._HeadWithBody(t, loop)  # type: ignore[arg-type]
    w.write(b"HEAD")
    await asyncio.sleep(0)
    assert t.writes == [b"HEAD"]
    w.write(b"later")
    assert t.writes == [b"HEAD", b"later"]
    t2 = _Recorder()
    w2 = protocol._HeadWithBody(t2, loop)  # type: ignore[arg-type]
    w2.write(b"HEAD")
    w2.close()
    assert t2.writes == [b"HEAD"] and t2.closed
    t3 = _Recorder()  # the client gone before the end of the turn: nothing written to its socket
    w3 = protocol._HeadWithBody(t3, loop)  # type: ignore[arg-type]
    w3.write(b"HEAD")
    t3.closed = True
    await asyncio.sleep(0)
    assert t3.writes == []


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_reaches_the_socket_in_as_few_writes_as_it_has_reads(
    sim: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    writes: list[bytes] = []
    real_init = protocol._HeadWithBody.__init__

    class Tap:
        """The socket's transport, with every write the response makes noted."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def write(self, data: bytes) -> None:
            writes.append(data)
            self.inner.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    def tapped_init(self: Any, transport: Any, loop: Any) -> None:
        real_init(self, Tap(transport), loop)

    monkeypatch.setattr(protocol._HeadWithBody, "__init__", tapped_init)
    gw = await start_gateway(gateway_config(sim.url, tmp_path))
    try:
        body = {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": "echo:one two three"}],
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        async with aiohttp.ClientSession() as s:
            async with s.post(
                gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}
            ) as r:
                assert r.status == 200
                text = await r.text()
    finally:
        await gw.stop()
    assert writes, "the response went through the protocol's transport"
    assert writes[0].startswith(b"HTTP/1.1 200") and b"\r\n\r\n" in writes[0]
    assert writes[0].split(b"\r\n\r\n", 1)[1], "the head carries the first piece of the body"
    if stream:
        assert text.endswith("data: [DONE]\n\n")
        # the read that ends the answer, the closing chunk (usage, cost, [DONE]) and the end of
        # the chunked body: one write
        assert writes[-1].endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
        assert b'"finish_reason":"stop"' in writes[-1]
        assert len(writes) <= 3, [w[:60] for w in writes]
    else:
        assert len(writes) == 1


async def test_reply_header_values_lose_cr_lf_and_non_latin1_characters() -> None:
    # A reply header value may carry caller input: a CR or LF becomes a space (no header can be
    # injected) and a character outside latin-1 becomes "?"; plain values go out as they are.
    from fareway.server.http import send_body

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [
        ("x-plain", "gpt-4o-mini; a=b"),
        ("x-crlf", "a\r\nx-evil: 1"),
        ("x-lf", "a\nb"),
        ("x-wide", "é€"),
    ]
    await send_body(send, 200, b"{}", headers)
    assert sent[0]["headers"] == [
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
        (b"x-plain", b"gpt-4o-mini; a=b"),
        (b"x-crlf", b"a  x-evil: 1"),
        (b"x-lf", b"a b"),
        (b"x-wide", b"\xe9?"),
    ]
