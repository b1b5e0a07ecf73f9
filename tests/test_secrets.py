"""No provider key ever reaches a client, a log line or the ledger.

A hostile upstream (tests/echo_upstream.py) echoes the key it received into every field of its
errors (message, code, type, param, status, details, extra fields, a response header), raw, as
``Bearer <key>``, percent-encoded and inside JSON, in all three upstream dialects: HTTP 400, 401,
429, 500, a plain-text 500, an error inside a 200 body, and in-stream errors before and after the
first token.  Every case is driven through a live gateway by both client dialects, streamed and
not; then everything the gateway produced is searched for every spelling of every key: response
bodies and headers, every log record (with tracebacks), every row of every table of the SQLite
ledger file, and what ``/v1/logs``, ``/v1/usage?format=csv`` and ``/v1/usage/export`` show.
The keys do not look like ``sk-...``, so only exact-substring scrubbing can catch them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fareway.config import load_config
from fareway.errors import TooManyFailedLogins, UpstreamClientError, scrub_error
from fareway.keys.store import FailedAuthThrottle
from fareway.scrub import KeyRing, fingerprint, scrub

from .conftest import MASTER_KEY, LiveGateway, start_gateway
from .echo_upstream import EchoUpstream, leak_forms, start_echo_upstream

KEYS = {
    "openai": "Zx9/q+Echo=Secret~OpenAI-dialect",
    "anthropic": "plain.anthropic.secret.token.0042",
    "gemini": "gemini_echo_secret_key_4242_xyz",
}
PROVIDER = {"openai": "echo-oai", "anthropic": "echo-ant", "gemini": "echo-gem"}
ERROR_SCENARIOS = ["e400", "e401", "e429", "e500", "text500", "pre", "post"]
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
async def echo() -> AsyncIterator[EchoUpstream]:
    up = await start_echo_upstream()
    yield up
    await up.stop()


@pytest.fixture
async def egw(echo: EchoUpstream, tmp_path: Path) -> AsyncIterator[LiveGateway]:
    f = tmp_path / "fareway.toml"
    f.write_text(
        f"""
[server]
state_dir = "{tmp_path / "state"}"

[providers.echo-oai]
dialect = "openai"
base_url = "{echo.url}/oai/v1"
api_key = "${{ECHO_OAI}}"

[providers.echo-ant]
dialect = "anthropic"
base_url = "{echo.url}/ant"
api_key = "${{ECHO_ANT}}"

[providers.echo-gem]
dialect = "gemini"
base_url = "{echo.url}/gem/v1beta"
api_key = "${{ECHO_GEM}}"
"""
    )
    env = {
        "ECHO_OAI": KEYS["openai"],
        "ECHO_ANT": KEYS["anthropic"],
        "ECHO_GEM": KEYS["gemini"],
        "FAREWAY_MASTER_KEY": MASTER_KEY,
    }
    gw = await start_gateway(load_config(f, env=env))
    yield gw
    await gw.stop()


def _leaks(text: str) -> list[str]:
    return [f"{d} key as {form!r}" for d, key in KEYS.items() for form in leak_forms(key) if form in text]


def _body(client: str, model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if client == "anthropic":
        body["max_tokens"] = 16
    return body


async def test_no_provider_key_in_any_answer_log_or_ledger_row(egw: LiveGateway, echo: EchoUpstream) -> None:
    collect = _Collect()
    watched = [logging.getLogger(n) for n in ("", "fareway", "uvicorn", "uvicorn.error", "uvicorn.access")]
    old_levels = [lg.level for lg in watched]
    for lg in watched:
        lg.addHandler(collect)
    logging.getLogger("fareway").setLevel(logging.DEBUG)
    outputs: list[tuple[str, str]] = []  # (what, text)
    fingerprints_seen = 0
    try:
        async with aiohttp.ClientSession() as s:
            for dialect, provider in PROVIDER.items():
                for scenario in ERROR_SCENARIOS:
                    for client in ("openai", "anthropic"):
                        for stream in (False, True):
                            path = "/v1/chat/completions" if client == "openai" else "/v1/messages"
                            what = f"{client} client -> {dialect} upstream, {scenario}, stream={stream}"
                            hits = len(echo.seen)
                            async with s.post(
                                egw.url + path,
                                json=_body(client, f"{provider}/{scenario}", stream),
                                headers=ADMIN,
                            ) as r:
                                raw = await r.read()
                                status = r.status
                                headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
                            text = raw.decode("utf-8", "replace")
                            outputs.append((what, headers + "\n" + text))
                            # The case really ran: the upstream was called with the stored key...
                            assert len(echo.seen) == hits + 1, what
                            assert echo.seen[-1].key == KEYS[dialect], what
                            # ...and its echo came back as an error (scrubbed, not dropped).
                            if stream and status == 200:
                                assert "error" in text, what
                                if scenario == "post":
                                    assert "hello" in text, what
                            else:
                                assert status >= 400, (what, status, text)
                            fingerprints_seen += text.count("[redacted key ")
            # What the ledger shows over HTTP (admin view: every call).
            await egw.app.gateway.accounting.ledger.flush()
            for q in ("/v1/logs?n=1000", "/v1/usage?format=csv&group_by=provider,model", "/v1/usage/export"):
                async with s.get(egw.url + q, headers=ADMIN) as r:
                    assert r.status == 200, q
                    outputs.append((q, await r.text()))
    finally:
        for lg, level in zip(watched, old_levels, strict=True):
            lg.removeHandler(collect)
            lg.setLevel(level)

    leaked = [(what, _leaks(text)) for what, text in outputs if _leaks(text)]
    assert not leaked, f"{len(leaked)} of {len(outputs)} outputs carry a key: {leaked[:5]}"
    for line in collect.lines:
        assert not _leaks(line), line
    n_calls = len(PROVIDER) * len(ERROR_SCENARIOS) * 4
    assert fingerprints_seen > n_calls // 2, "the echoed keys should reach the client as fingerprints"
    logs_json = next(t for w, t in outputs if w.startswith("/v1/logs"))
    assert "[redacted key " in logs_json, "the ledger keeps the (scrubbed) upstream errors"

    # Every row of every table of the ledger file.
    ledger_file = egw.config.ledger_file
    db = sqlite3.connect(ledger_file)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = 0
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                rows += 1
                dump = " | ".join(str(v) for v in row)
                assert not _leaks(dump), f"{table}: {dump}"
        assert rows >= n_calls
    finally:
        db.close()


# ------------------------------------------------------------------------- the scrubber itself


def test_every_spelling_of_a_known_key_becomes_its_fingerprint() -> None:
    ring = KeyRing()
    key = "Zx9/q+Ring=Secret~only-here"
    ring.add(key)
    tag = fingerprint(key)
    for form in leak_forms(key):
        out = ring.scrub(f"before {form} after")
        assert form not in out and tag in out, form
    assert ring.scrub("Authorization: Bearer " + key) == f"Authorization: Bearer {tag}"
    assert ring.scrub("nothing secret here") == "nothing secret here"
    # The fingerprint is stable, short and says nothing about the key.
    assert tag == fingerprint(key) and len(tag) < 30 and "Zx9" not in tag and "only-here" not in tag


def test_key_shaped_text_we_do_not_hold_is_scrubbed_too() -> None:
    out = scrub("their key sk-proj-ABCDEFGHIJKLMNOP1234 and AIzaSyA0123456789abcdefghijKLMNOP")
    assert "sk-proj-ABCD" not in out and "AIzaSy" not in out and out.count("[redacted key ") == 2


def test_short_placeholder_keys_do_not_mangle_text() -> None:
    ring = KeyRing()
    ring.add("a", "key", None, "")
    assert ring.scrub("a key in a sentence") == "a key in a sentence"


def test_scrub_error_cleans_every_field_and_the_chain() -> None:
    key = "not-key-shaped-value-123"
    try:
        try:
            raise ValueError(f"inner with {key}")
        except ValueError as inner:
            raise UpstreamClientError(
                f"msg {key}",
                provider="p",
                status=400,
                body=f'{{"k": "{key}"}}'.encode(),
                headers={"x-echo": f"Bearer {key}"},
                code=f"Bearer {key}",
                param=key,
            ) from inner
    except UpstreamClientError as caught:
        exc = caught
    exc.type = f"type {key}"
    scrub_error(exc, key)
    for value in (
        exc.message,
        str(exc),
        exc.code,
        exc.param,
        exc.type,
        exc.body.decode(),
        *exc.headers.values(),
    ):
        assert value is not None and key not in value and "[redacted key " in value
    assert exc.__cause__ is None and exc.__suppress_context__


# ------------------------------------------------------------------------- failed key guesses


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_counts_failures_per_address_in_a_window() -> None:
    clock = _Clock()
    t = FailedAuthThrottle(limit=3, window=60.0, clock=clock)
    for _ in range(3):
        t.check("10.0.0.1")
        t.failed("10.0.0.1")
    with pytest.raises(TooManyFailedLogins) as info:
        t.check("10.0.0.1")
    assert info.value.status == 429 and 59 <= info.value.retry_after <= 60
    t.check("10.0.0.2")  # another address is not affected
    t.check(None)  # no address known (an in-process caller): never throttled
    clock.now += 30
    with pytest.raises(TooManyFailedLogins) as info:
        t.check("10.0.0.1")
    assert 29 <= info.value.retry_after <= 30
    clock.now += 30  # the window that began with the first failure has passed
    t.check("10.0.0.1")
    assert t.failed("10.0.0.1") == 1


def test_throttle_tracks_a_bounded_number_of_addresses() -> None:
    clock = _Clock()
    t = FailedAuthThrottle(limit=3, window=60.0, max_addresses=100, clock=clock)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(t) <= 100


async def test_failed_guesses_are_logged_and_throttled_per_address(
    egw: LiveGateway, caplog: pytest.LogCaptureFixture
) -> None:
    clock = _Clock()
    egw.app.gateway.keys.throttle = FailedAuthThrottle(limit=4, window=60.0, clock=clock)
    guesses = [f"fw-guess-{i}-abcdefghijklmnop" for i in range(4)]
    body = _body("openai", "echo-oai/ok", False)
    caplog.set_level(logging.WARNING, logger="fareway.auth")
    async with aiohttp.ClientSession() as s:
        for g in guesses:
            async with s.post(
                egw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {g}"}
            ) as r:
                assert r.status == 401
        for headers in ({"authorization": "Bearer fw-one-more-guess-0123456789"}, ADMIN):
            for path in ("/v1/chat/completions", "/v1/messages"):
                async with s.post(
                    egw.url + path, json=_body("anthropic", "echo-ant/ok", False), headers=headers
                ) as r:
                    raw = await r.read()
                    assert r.status == 429, raw  # even the right key, while the address is throttled
                    assert 1 <= int(r.headers["retry-after"]) <= 60
                    data = json.loads(raw)
                    if path == "/v1/messages":
                        assert data["type"] == "error" and data["error"]["type"] == "rate_limit_error"
                    else:
                        assert data["error"]["code"] == "too_many_failed_authentications"
        clock.now += 61
        async with s.post(egw.url + "/v1/chat/completions", json=body, headers=ADMIN) as r:
            assert r.status == 200, await r.text()
    failures = [r.getMessage() for r in caplog.records if "failed authentication from" in r.getMessage()]
    assert len(failures) == 4
    for g, line in zip(guesses, failures, strict=True):
        assert "127.0.0.1" in line and fingerprint(g) in line and g not in line
    assert any("throttling 127.0.0.1" in r.getMessage() for r in caplog.records)
