"""A hostile fake upstream for the secret-scrubbing and hostile-input tests: it speaks the OpenAI,
Anthropic and Gemini upstream dialects on 127.0.0.1 (free port), records every request (the raw
path and the key it was sent), and answers in the way the *model name* asks:

``e400`` ``e401`` ``e429`` ``e500``
    that HTTP status, with the received key echoed into every field of the dialect's error body
    (message, code, type, param, status, details, extra fields) and into a response header;
``text500``
    HTTP 500 with a plain-text body that echoes the key;
``pre``
    streamed: an error event before any content; not streamed: an error inside a 200 body;
``post``
    streamed: one content chunk (``hello``), then an error event; not streamed: as ``pre``;
``ok`` (or anything else)
    a normal answer (``hello``).

The key is echoed raw, as ``Bearer <key>``, percent-encoded and inside JSON strings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from aiohttp import web

_GEMINI_PATH = re.compile(r"^/(?:.*/)?(?:models|tunedModels)/(?P<model>[^/:]+):(?P<method>\w+)$")


def leak_forms(key: str) -> list[str]:
    """Every spelling of ``key`` that must never appear in what the gateway produces."""
    forms = {
        key,
        quote(key, safe=""),
        quote(key),
        quote_plus(key),
        json.dumps(key)[1:-1],
        json.dumps(key)[1:-1].replace("/", "\\/"),
    }
    forms |= {f.lower() for f in forms if "%" in f}
    return sorted(forms)


def _echo(key: str) -> str:
    return f"Bearer {key} | raw={key} | url={quote(key, safe='')} | json={json.dumps({'k': key})}"


@dataclass
class Seen:
    path: str
    raw_path: str
    key: str
    model: str
    stream: bool


@dataclass
class EchoUpstream:
    runner: web.AppRunner
    port: int
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


def _received_key(request: web.Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    return (
        request.headers.get("x-api-key")
        or request.headers.get("x-goog-api-key")
        or request.query.get("key")
        or auth
    )


# ----------------------------------------------------------------------------- error bodies


def _openai_error(key: str, status: int) -> dict[str, Any]:
    e = _echo(key)
    return {
        "error": {
            "message": f"Incorrect API key provided: {e}",
            "type": e,
            "code": f"Bearer {key}",
            "param": quote(key, safe=""),
            "status_code": status,
            "metadata": {"raw": e, "provider_name": key},
            "echo": key,
        },
        "user_id": key,
    }


def _anthropic_error(key: str) -> dict[str, Any]:
    e = _echo(key)
    return {
        "type": "error",
        "error": {"type": e, "message": f"invalid x-api-key: {e}", "param": key, "echo": key},
        "request_id": key,
    }


def _gemini_error(key: str, status: int) -> dict[str, Any]:
    e = _echo(key)
    return {
        "error": {
            "code": status,
            "message": f"API key not valid. Please pass a valid API key. {e}",
            "status": f"Bearer {key}",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": key, "metadata": {"key": e}},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"url": f"https://x/?key={key}"}]},
            ],
        }
    }


def error_body(dialect: str, key: str, status: int) -> dict[str, Any]:
    if dialect == "openai":
        return _openai_error(key, status)
    if dialect == "anthropic":
        return _anthropic_error(key)
    return _gemini_error(key, status)


# ----------------------------------------------------------------------------- success shapes


def _ok_body(dialect: str, model: str) -> dict[str, Any]:
    if dialect == "openai":
        return {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    if dialect == "anthropic":
        return {
            "id": "msg_echo",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "hello"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "hello"}]}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4},
        "modelVersion": model,
    }


def _frame(dialect: str, data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    end = "\r\n\r\n" if dialect == "gemini" else "\n\n"
    return f"{head}data: {json.dumps(data)}{end}".encode()


def _content_frames(dialect: str, model: str, done: bool) -> list[bytes]:
    if dialect == "openai":
        chunk = {
            "id": "chatcmpl-echo",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": "hello"}, "finish_reason": None}
            ],
        }
        out = [_frame(dialect, chunk)]
        if done:
            fin = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            out += [_frame(dialect, fin), b"data: [DONE]\n\n"]
        return out
    if dialect == "anthropic":
        msg = {"id": "msg_echo", "type": "message", "role": "assistant", "model": model, "content": []}
        msg |= {"stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 0}}
        out = [
            _frame(dialect, {"type": "message_start", "message": msg}, "message_start"),
            _frame(
                dialect,
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            ),
            _frame(
                dialect,
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hello"}},
                "content_block_delta",
            ),
        ]
        if done:
            out += [
                _frame(dialect, {"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _frame(
                    dialect,
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn"},
                        "usage": {"output_tokens": 1},
                    },
                    "message_delta",
                ),
                _frame(dialect, {"type": "message_stop"}, "message_stop"),
            ]
        return out
    chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": "hello"}]}, "index": 0}]}
    if done:
        chunk["candidates"][0]["finishReason"] = "STOP"
        chunk["usageMetadata"] = {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}
    return [_frame(dialect, chunk)]


def _error_frame(dialect: str, key: str) -> bytes:
    if dialect == "anthropic":
        return _frame(dialect, _anthropic_error(key), "error")
    if dialect == "openai":
        return _frame(dialect, _openai_error(key, 500))
    return _frame(dialect, _gemini_error(key, 500))


# ----------------------------------------------------------------------------- the server


async def start_echo_upstream() -> EchoUpstream:
    holder: list[EchoUpstream] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        key = _received_key(request)
        try:
            body = await request.json()
        except ValueError:
            body = {}
        if "/chat/completions" in path:
            dialect, model, stream = "openai", str(body.get("model", "")), bool(body.get("stream"))
        elif path.endswith("/messages"):
            dialect, model, stream = "anthropic", str(body.get("model", "")), bool(body.get("stream"))
        else:
            m = _GEMINI_PATH.match(path)
            dialect = "gemini"
            model = m.group("model") if m else ""
            stream = bool(m and m.group("method") == "streamGenerateContent")
        holder[0].seen.append(Seen(path, request.raw_path, key, model, stream))
        scenario = model.rsplit("/", 1)[-1]
        echo_headers = {"x-echo": f"Bearer {key}", "x-echo-url": quote(key, safe="")}
        if scenario.startswith("e") and scenario[1:].isdigit():
            status = int(scenario[1:])
            return web.json_response(error_body(dialect, key, status), status=status, headers=echo_headers)
        if scenario == "text500":
            return web.Response(
                status=500, text=f"Internal error while handling {_echo(key)}", headers=echo_headers
            )
        if scenario in ("pre", "post") and not stream:
            if dialect == "gemini":
                return web.json_response(_gemini_error(key, 500), headers=echo_headers)
            return web.json_response(error_body(dialect, key, 500), headers=echo_headers)
        if not stream:
            return web.json_response(_ok_body(dialect, model))
        resp = web.StreamResponse(status=200, headers={"content-type": "text/event-stream", **echo_headers})
        await resp.prepare(request)
        if scenario == "pre":
            await resp.write(_error_frame(dialect, key))
        elif scenario == "post":
            for frame in _content_frames(dialect, model, done=False):
                await resp.write(frame)
            await resp.write(_error_frame(dialect, key))
        else:
            for frame in _content_frames(dialect, model, done=True):
                await resp.write(frame)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    up = EchoUpstream(runner, port)
    holder.append(up)
    return up
