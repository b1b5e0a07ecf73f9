"""The gateway's HTTP/1.1 client (fareway.transport_http) against raw local servers that do
exactly what each test needs: keep-alive, a server that closes idle connections, chunked and
gzip bodies, a body that ends with the connection, a truncated body, a malformed answer, TLS,
a consumer slower than the upstream.  Expected bytes are written here, not produced by the
client."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from fareway.errors import UpstreamConnectionError
from fareway.transport import Transport
from fareway.transport_http import _HIGH_WATER, HttpClient, HttpClientError
from fareway.types import HttpRequest

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Server:
    """A raw TCP server: ``handler(reader, writer, n)`` for its n-th connection (from 1)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.closed = asyncio.Event()
        """Set when a connection's client went away (read EOF or reset)."""

    async def start(self, ssl_ctx: ssl.SSLContext | None = None) -> None:
        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer, self.connections)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=ssl_ctx)
        self.port = self.server.sockets[0].getsockname()[1]

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request (head and body by its content-length), or None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed.set()
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return head + body

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[Server] = []

    async def make(handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> Server:
        s = Server(handler)
        await s.start(ssl_ctx)
        servers.append(s)
        return s

    yield make
    for s in servers:
        await s.close()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    c = HttpClient()
    yield c
    await c.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def read_all(resp) -> bytes:  # type: ignore[no-untyped-def]
    body = resp.body()
    out = b""
    while chunk := await body.readany():
        out += chunk
    return out


async def test_keep_alive_reuses_one_connection_and_sends_the_request_as_given(
    serve, client: HttpClient
) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(ok(b'{"n":%d}' % len(srv.requests), b"content-type: application/json\r\n"))
            await writer.drain()

    srv = await serve(handler)
    url = f"http://127.0.0.1:{srv.port}/v1/chat/completions?x=1"
    for i in range(3):
        resp = await client.send("POST", url, {"authorization": "Bearer k", "content-type": "a/b"}, b"{}")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"  # (any case)
        assert await read_all(resp) == b'{"n":%d}' % (i + 1)
        resp.release()
    assert srv.connections == 1
    assert srv.requests[0] == (
        b"POST /v1/chat/completions?x=1 HTTP/1.1\r\n"
        b"host: 127.0.0.1:%d\r\n"
        b"authorization: Bearer k\r\ncontent-type: a/b\r\n"
        b"accept-encoding: gzip, deflate\r\ncontent-length: 2\r\n\r\n{}" % srv.port
    )


async def test_a_request_on_a_connection_the_server_closed_goes_out_again_on_a_new_one(
    serve, client: HttpClient
) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        if n == 1:
            writer.write(ok(b"first"))
            await writer.drain()
            # the next request on this connection is read and dropped, as a server whose
            # keep-alive ran out drops it: the connection closes with no answer
            await srv.read_request(reader)
            return
        writer.write(ok(b"second"))
        await writer.drain()

    srv = await serve(handler)
    url = f"http://127.0.0.1:{srv.port}/"
    resp = await client.send("POST", url, {}, b"a")
    assert await read_all(resp) == b"first"
    resp.release()
    resp = await client.send("POST", url, {}, b"b")
    assert await read_all(resp) == b"second"
    resp.release()
    assert srv.connections == 2
    assert [r[-1:] for r in srv.requests] == [b"a", b"b", b"b"]


async def test_an_answer_cut_after_its_first_bytes_is_not_sent_again(serve, client: HttpClient) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        if n == 1:
            writer.write(ok(b"first"))
            await writer.drain()
            await srv.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-le")  # half a head, then the connection ends
            await writer.drain()

    srv = await serve(handler)
    url = f"http://127.0.0.1:{srv.port}/"
    resp = await client.send("POST", url, {}, b"a")
    await read_all(resp)
    resp.release()
    with pytest.raises(HttpClientError):
        await client.send("POST", url, {}, b"b")
    assert srv.connections == 1  # the server got it and began to answer: not retried


async def test_chunked_gzip_body_is_decoded(serve, client: HttpClient) -> None:  # type: ignore[no-untyped-def]
    payload = b"data: " + b"x" * 5000 + b"\n\n"
    packed = gzip.compress(payload)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: gzip\r\n\r\n")
        for i in range(0, len(packed), 7):
            piece = packed[i : i + 7]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    srv = await serve(handler)
    resp = await client.send("POST", f"http://127.0.0.1:{srv.port}/", {}, b"")
    assert await read_all(resp) == payload
    resp.release()


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
async def test_deflate_body_is_decoded_wrapped_or_raw(serve, client: HttpClient, wbits: int) -> None:  # type: ignore[no-untyped-def]
    payload = b'{"answer": "' + b"y" * 3000 + b'"}'
    c = zlib.compressobj(wbits=wbits)
    packed = c.compress(payload) + c.flush()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(ok(packed, b"content-encoding: deflate\r\n"))
        await writer.drain()

    srv = await serve(handler)
    resp = await client.send("POST", f"http://127.0.0.1:{srv.port}/", {}, b"")
    assert await read_all(resp) == payload
    resp.release()


async def test_a_body_that_ends_with_the_connection_is_read_whole_and_not_reused(
    serve, client: HttpClient
) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\npart one, ")
        await writer.drain()
        writer.write(b"part two")
        await writer.drain()

    srv = await serve(handler)
    url = f"http://127.0.0.1:{srv.port}/"
    for _ in range(2):
        resp = await client.send("POST", url, {}, b"")
        assert await read_all(resp) == b"part one, part two"
        resp.release()
    assert srv.connections == 2


async def test_a_truncated_body_is_an_error_not_a_short_answer(serve, client: HttpClient) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()

    srv = await serve(handler)
    resp = await client.send("POST", f"http://127.0.0.1:{srv.port}/", {}, b"")
    with pytest.raises(HttpClientError):
        await read_all(resp)
    resp.close()


async def test_a_malformed_answer_is_an_error(serve, client: HttpClient) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await reader.read()

    srv = await serve(handler)
    with pytest.raises(HttpClientError, match="malformed"):
        await client.send("POST", f"http://127.0.0.1:{srv.port}/", {}, b"")


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
    serve, client: HttpClient
) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)

    srv = await serve(handler)
    for headers in ({"x-a": "v\r\nx-injected: 1"}, {"x-a\nb": "v"}):
        with pytest.raises(ValueError, match="line break"):
            await client.send("POST", f"http://127.0.0.1:{srv.port}/", headers, b"")
    assert srv.connections == 0


async def test_a_response_given_up_early_closes_its_connection(serve, client: HttpClient) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        if n == 1:
            await srv.read_request(reader)  # waits: returns None once the client closed
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    srv = await serve(handler)
    url = f"http://127.0.0.1:{srv.port}/"
    resp = await client.send("POST", url, {}, b"")
    assert await resp.body().readany() == b"first"
    resp.close()  # the provider sees the disconnect (and stops generating)
    await srv.closed.wait()
    resp = await client.send("POST", url, {}, b"")
    assert await read_all(resp) == b"first"
    resp.release()
    assert srv.connections == 2


async def test_a_cancel_while_waiting_for_the_head_closes_the_connection(serve, client: HttpClient) -> None:  # type: ignore[no-untyped-def]
    second = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        if n == 1:
            writer.write(ok(b"warm"))
            await writer.drain()
            await srv.read_request(reader)  # the second request: never answered
            second.set()
            await srv.read_request(reader)  # until the client goes (None)
            return
        writer.write(ok(b"fresh"))
        await writer.drain()

    srv = await serve(handler)
    url = f"http://127.0.0.1:{srv.port}/"
    resp = await client.send("POST", url, {}, b"")
    await read_all(resp)
    resp.release()
    task = asyncio.ensure_future(client.send("POST", url, {}, b""))
    await second.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await srv.closed.wait()  # the connection of the cancelled request was closed
    resp = await client.send("POST", url, {}, b"")  # and not reused
    assert await read_all(resp) == b"fresh"
    resp.release()
    assert srv.connections == 2


async def test_a_slow_consumer_holds_a_bounded_buffer(serve, client: HttpClient) -> None:  # type: ignore[no-untyped-def]
    total = 8 * 1024 * 1024
    piece = bytes(range(256)) * 256  # 64 KiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        for _ in range(total // len(piece)):
            writer.write(piece)
            await writer.drain()

    srv = await serve(handler)
    resp = await client.send("POST", f"http://127.0.0.1:{srv.port}/", {}, b"")
    body = resp.body()
    conn = resp._conn
    # nothing is read: the connection stops reading from the socket once the buffer is full
    for _ in range(100_000):
        if conn._paused:
            break
        await asyncio.sleep(0)
    assert conn._paused
    held = sum(len(c) for c in body.chunks)
    assert _HIGH_WATER < held <= _HIGH_WATER + 1024 * 1024  # (one socket read past the mark)
    got = await read_all(resp)
    assert len(got) == total and got[: len(piece)] == piece and got[-len(piece) :] == piece
    resp.release()


def _tls_contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fareway test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_https_verifies_the_server_and_keeps_the_connection(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server_ctx, client_ctx = _tls_contexts(tmp_path)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(ok(b"secret"))
            await writer.drain()

    srv = await serve(handler, server_ctx)
    url = f"https://127.0.0.1:{srv.port}/v1"
    client = HttpClient(ssl_context=client_ctx)
    try:
        for _ in range(2):
            resp = await client.send("POST", url, {}, b"")
            assert await read_all(resp) == b"secret"
            resp.release()
        assert srv.connections == 1
        assert b"host: 127.0.0.1:%d\r\n" % srv.port in srv.requests[0]
    finally:
        await client.close()
    # without the test's authority the certificate is refused: no request goes out
    untrusting = HttpClient()
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusting.send("POST", url, {}, b"")
        assert len(srv.requests) == 2
    finally:
        await untrusting.close()


async def test_transport_turns_client_failures_into_upstream_errors(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 500\r\n\r\ndata: {}\n\n"
        )
        await writer.drain()  # then the connection ends mid-body

    srv = await serve(handler)
    transport = Transport()
    await transport.start()
    try:
        req = HttpRequest("POST", f"http://127.0.0.1:{srv.port}/", {}, b"{}", stream=True)
        resp = await transport.send(req, "p", total=30.0, idle=30.0)
        assert await resp.next_chunk() == b"data: {}\n\n"
        with pytest.raises(UpstreamConnectionError, match="mid-stream"):
            await resp.next_chunk()
        resp.close()
        # nothing listens on the port any more: a connection error, not a library exception
        await srv.close()
        with pytest.raises(UpstreamConnectionError, match="could not connect"):
            await transport.send(req, "p", total=30.0, idle=30.0)
    finally:
        await transport.close()


async def test_an_interim_answer_is_skipped_for_the_real_one(serve, client: HttpClient) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + ok(b"real", b"x-real: 1\r\n"))
        await writer.drain()

    srv = await serve(handler)
    resp = await client.send("POST", f"http://127.0.0.1:{srv.port}/", {}, b"")
    assert (resp.status, resp.headers.get("x-real"), resp.headers.get("link")) == (200, "1", None)
    assert await read_all(resp) == b"real"
    resp.release()


async def test_bytes_on_an_idle_connection_retire_it(serve, client: HttpClient) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        # the answer, then at once an answer nobody asked for (as a 408 before a server closes)
        writer.write(ok(b"mine") + b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        if n == 1:
            await srv.read_request(reader)  # (None: the client closed this connection)
            return

    srv = await serve(handler)
    url = f"http://127.0.0.1:{srv.port}/"
    resp = await client.send("POST", url, {}, b"")
    assert (resp.status, await read_all(resp)) == (200, b"mine")
    resp.release()
    await srv.closed.wait()
    resp = await client.send("POST", url, {}, b"")  # a new connection: not the 408
    assert (resp.status, await read_all(resp)) == (200, b"mine")
    resp.release()
    assert srv.connections == 2


async def test_idle_connections_are_closed_by_the_sweep(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(ok(b"x"))
            await writer.drain()

    srv = await serve(handler)
    client = HttpClient()
    pool = client._pool
    try:
        url = f"http://127.0.0.1:{srv.port}/"
        # three connections at once (three requests in flight), all back in the pool after
        resps = await asyncio.gather(*(client.send("POST", url, {}, b"") for _ in range(3)))
        for r in resps:
            await read_all(r)
            r.release()
        conns = [c for cs in pool.idle.values() for c in cs]
        assert len(conns) == 3 and pool._sweeper is not None  # a sweep is due
        loop = asyncio.get_running_loop()
        assert pool.sweep(loop) == 0  # none idle long enough yet
        for c in conns[:2]:
            c.idle_since -= 16.0  # (as if 16 s had passed for the two used first)
        assert pool.sweep(loop) == 2
        assert [c for cs in pool.idle.values() for c in cs] == conns[2:]
        assert all(c.lost for c in conns[:2]) and pool._sweeper is not None  # one left: again later
        conns[2].idle_since -= 16.0
        assert pool.sweep(loop) == 1 and pool._sweeper is None  # nothing idle: no timer
    finally:
        await client.close()


async def test_the_request_line_holds_an_encoded_path_and_a_large_body_arrives_whole(
    serve, client: HttpClient
) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(ok(b"ok"))
            await writer.drain()

    srv = await serve(handler)
    body = bytes(range(256)) * 4096  # 1 MiB: written apart from the head
    resp = await client.send(
        "POST", f"http://127.0.0.1:{srv.port}/v1/models/gé mini:gen?alt=sse&k=a b%2F", {}, body
    )
    assert await read_all(resp) == b"ok"
    resp.release()
    head, _, got = srv.requests[0].partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /v1/models/g%C3%A9%20mini:gen?alt=sse&k=a%20b%2F HTTP/1.1"
    assert got == body
    for bad in ("http://127.0.0.1:1/a\r\nx-injected: 1", "http://127.0.0.1:1/a\tb"):
        with pytest.raises(ValueError, match="control character"):
            await client.send("POST", bad, {}, b"")
