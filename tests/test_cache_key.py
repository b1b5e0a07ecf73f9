"""The cache key (issue: response caching, item 2): a deny-list over the canonical request after
resolution, namespaced by tenant; the request controls (item 1); the ``[cache]`` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from fareway.cache.controls import Controls, controls, pop_body_field
from fareway.cache.key import DENIED_FIELDS, NotCacheable, derive
from fareway.cache.settings import AliasCache, CacheSettings, CacheSettingsError, parse
from fareway.config import ConfigError, load_config
from fareway.errors import BadRequest
from fareway.types import (
    ChatRequest,
    Message,
    ResponseFormat,
    TextPart,
    ThinkingConfig,
    ToolChoice,
    ToolSpec,
)
from fareway.wire import anthropic, openai_chat

ROUTE = "anthropic/claude-sonnet-4-5"
TENANT = "k:key_alice"
TOOL_OAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "the weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TOOL_ANT = {
    "name": "get_weather",
    "description": "the weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def oai(body: dict[str, Any]) -> ChatRequest:
    return openai_chat.WIRE.parse_request(orjson.dumps(body), {})


def ant(body: dict[str, Any], headers: dict[str, str] | None = None) -> ChatRequest:
    return anthropic.WIRE.parse_request(orjson.dumps(body), headers or {"anthropic-version": "2023-06-01"})


def key(req: ChatRequest, route: str = ROUTE, tenant: str = TENANT) -> str:
    return derive(req, route, tenant).storage


def base() -> ChatRequest:
    return ChatRequest(
        model="m",
        messages=[Message("system", [TextPart("be brief")]), Message("user", [TextPart("hi")])],
        max_tokens=100,
    )


# ------------------------------------------------------------------------------ the key


def test_the_same_request_from_both_dialects_streamed_or_not_has_one_key() -> None:
    o = oai(
        {
            "model": "claude-sonnet-4-5",
            "max_completion_tokens": 100,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.3,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "tools": [TOOL_OAI],
        }
    )
    a = ant(
        {
            "model": ROUTE,
            "max_tokens": 100,
            "temperature": 0.3,
            "system": "be brief",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [TOOL_ANT],
        }
    )
    assert key(o) == key(a)


def test_every_field_of_the_request_not_denied_is_in_the_key() -> None:
    """The deny-list, not an allow-list: changing any ChatRequest field that DENIED_FIELDS does not
    name changes the key (a field added to ChatRequest later fails here until it is given a
    changed value below, which keeps it in the key)."""
    changed: dict[str, Any] = {
        "messages": [Message("user", [TextPart("hello")])],
        "max_tokens": 101,
        "temperature": 0.7,
        "top_p": 0.5,
        "top_k": 5,
        "stop": ["\n"],
        "seed": 7,
        "n": 1,
        "tools": [ToolSpec("get_weather")],
        "tool_choice": ToolChoice("required"),
        "response_format": ResponseFormat("json_object"),
        "thinking": ThinkingConfig("enabled", budget_tokens=1024),
        "user": "end-user-1",
        "metadata": {"trace": "x"},
        "extensions": {"openai": {"logit_bias": {"50256": -100}}},
        "headers": {"anthropic-beta": "interleaved-thinking-2025-05-14"},
    }
    fields = {f.name for f in dataclasses.fields(ChatRequest)}
    assert set(changed) | set(DENIED_FIELDS) == fields, "a new request field needs a case here"
    k0 = key(base())
    for name, value in changed.items():
        assert key(dataclasses.replace(base(), **{name: value})) != k0, name
    for name in DENIED_FIELDS:
        if name != "model":  # the model is replaced by the route: see the next tests
            flipped = {"stream": True, "include_usage": True, "source_dialect": "anthropic"}[name]
            assert key(dataclasses.replace(base(), **{name: flipped})) == k0, name


@pytest.mark.parametrize(
    "extra",
    [
        {"reasoning_effort": "high"},  # LiteLLM's key missed reasoning parameters (its issue 9844)
        {"frequency_penalty": 0.5},  # and provider-specific ones (42400)
        {"logprobs": True},
        {"prediction": {"type": "content", "content": "x"}},
    ],
)
def test_reasoning_and_provider_specific_parameters_are_in_the_key(extra: dict[str, Any]) -> None:
    plain = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert key(oai(plain)) != key(oai({**plain, **extra}))


def test_anthropic_thinking_and_extensions_are_in_the_key() -> None:
    plain = {"model": ROUTE, "max_tokens": 2000, "messages": [{"role": "user", "content": "hi"}]}
    thinking = {**plain, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    tier = {**plain, "service_tier": "standard_only"}
    keys = {key(ant(plain)), key(ant(thinking)), key(ant(tier))}
    assert len(keys) == 3
    beta = ant(plain, {"anthropic-version": "2023-06-01", "anthropic-beta": "context-1m-2025-08-07"})
    assert key(beta) != key(ant(plain))


def test_a_thinking_signature_in_the_history_is_in_the_key() -> None:
    def turn(sig: str) -> dict[str, Any]:
        return {
            "model": ROUTE,
            "max_tokens": 100,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": sig}]},
                {"role": "user", "content": "and?"},
            ],
        }

    assert key(ant(turn("sig-a"))) != key(ant(turn("sig-b")))


def test_the_route_replaces_the_name_and_the_tenant_namespaces() -> None:
    a, b = base(), dataclasses.replace(base(), model="another-name-for-it")
    assert key(a) == key(b)  # two names resolved to one route share
    assert key(a, route="groq/llama-3.1-8b-instant") != key(a)  # a name re-pointed does not
    assert key(a, tenant="k:key_bob") != key(a)
    assert derive(a, ROUTE, TENANT).storage.startswith(TENANT + ":")


def test_long_conversations_are_keyed_whole() -> None:
    """Bifrost skips conversations longer than three messages; here every turn is in the key."""
    msgs = [Message("user" if i % 2 == 0 else "assistant", [TextPart(f"turn {i}")]) for i in range(12)]
    req = dataclasses.replace(base(), messages=msgs)
    earlier = dataclasses.replace(
        base(), messages=[*msgs[:3], Message("assistant", [TextPart("x")]), *msgs[4:]]
    )
    assert key(req) != key(earlier)


def test_the_context_digest_leaves_out_only_the_last_user_text() -> None:
    k1 = derive(base(), ROUTE, TENANT)
    other = dataclasses.replace(base(), messages=[base().messages[0], Message("user", [TextPart("hello")])])
    k2 = derive(other, ROUTE, TENANT)
    assert k1.digest != k2.digest and k1.context_digest() == k2.context_digest()
    assert k1.last_user_text() == "hi"
    system = dataclasses.replace(other, messages=[Message("system", [TextPart("x")]), other.messages[1]])
    assert derive(system, ROUTE, TENANT).context_digest() != k1.context_digest()


def test_several_choices_are_not_cacheable() -> None:
    with pytest.raises(NotCacheable):
        derive(dataclasses.replace(base(), n=2), ROUTE, TENANT)


# ------------------------------------------------------------------------------ controls

S = CacheSettings(ttl=300, max_ttl=3600)


def test_the_body_field_is_removed_and_read() -> None:
    req = oai({"model": "m", "messages": [{"role": "user", "content": "hi"}], "fareway_cache": "use"})
    plain = oai({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert pop_body_field(req) == "use"
    assert req.extensions == plain.extensions  # nothing left that would go upstream
    assert key(req) == key(plain)
    assert controls({}, {"mode": "use", "ttl": 60, "no_store": True}, None, S) == Controls(
        "use", True, False, 60
    )


@pytest.mark.parametrize(
    ("headers", "body", "alias", "want"),
    [
        ({}, None, None, Controls("bypass", False, False, 300)),
        ({"x-fareway-cache": "use"}, None, None, Controls("use", True, True, 300)),
        ({"x-fareway-cache": "REFRESH"}, None, None, Controls("refresh", False, True, 300)),
        ({"x-fareway-cache": "use", "x-fareway-cache-ttl": "60"}, None, None, Controls("use", True, True, 60)),
        ({"x-fareway-cache": "use", "x-fareway-cache-ttl": "99999"}, None, None, Controls("use", True, True, 3600)),
        ({"x-fareway-cache": "use", "cache-control": "no-store"}, None, None, Controls("use", True, False, 300)),
        ({"x-fareway-cache": "use", "cache-control": "max-age=0, no-cache"}, None, None, Controls("use", False, True, 300)),
        ({"x-fareway-cache": "bypass"}, "use", AliasCache("use", 60), Controls("bypass", False, False, 60)),
        ({}, None, AliasCache("use", 60), Controls("use", True, True, 60)),
        ({}, {"mode": "refresh"}, AliasCache("use", 60), Controls("refresh", False, True, 60)),
    ],
)  # fmt: skip
def test_controls(headers: dict[str, str], body: Any, alias: AliasCache | None, want: Controls) -> None:
    assert controls(headers, body, alias, S) == want


@pytest.mark.parametrize(
    ("headers", "body", "param"),
    [
        ({"x-fareway-cache": "yes"}, None, "x-fareway-cache"),
        ({"x-fareway-cache": "use", "x-fareway-cache-ttl": "0"}, None, "x-fareway-cache-ttl"),
        ({"x-fareway-cache": "use", "x-fareway-cache-ttl": "1.5"}, None, "x-fareway-cache-ttl"),
        ({}, 3, "fareway_cache"),
        ({}, {"mode": "use", "ttl": -1}, "fareway_cache.ttl"),
        ({}, {"mode": "sometimes"}, "fareway_cache.mode"),
        ({}, {"mode": "use", "later": 1}, "fareway_cache"),
    ],
)
def test_bad_controls_are_a_400_naming_them(headers: dict[str, str], body: Any, param: str) -> None:
    with pytest.raises(BadRequest) as info:
        controls(headers, body, None, S)
    assert info.value.param == param


# ------------------------------------------------------------------------------ settings


def test_settings_from_a_config_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[cache]\nurl = "redis://127.0.0.1:6379/3"\nttl = 60\nmax_bytes = 4096\n'
        '[cache.share]\nteam = ["key_a", "key_b"]\n'
        '[aliases.fast]\ntargets = ["groq/llama-3.1-8b-instant"]\ncache = { mode = "use", ttl = 30 }\n'
    )
    c = load_config(f, env={}).cache
    assert (c.url, c.ttl, c.max_bytes) == ("redis://127.0.0.1:6379/3", 60, 4096)
    assert c.tenant("key_a") == c.tenant("key_b") == "g:team" and c.tenant("key_c") == "k:key_c"
    assert c.aliases == {"fast": AliasCache("use", 30)}
    assert load_config(None, env={}).cache == CacheSettings()


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[cache]\nttl_seconds = 5\n", "ttl_seconds"),
        ('[cache]\nttl = "5"\n', "ttl"),
        ("[cache]\nenabled = 1\n", "enabled"),
        ('[cache]\nurl = "http://x"\n', "url"),
        ("[cache]\nttl = 100\nmax_ttl = 10\n", "max_ttl"),
        ('[cache.share]\nteam = "key_a"\n', "team"),
        ('[cache.share]\na = ["k"]\nb = ["k"]\n', "two groups"),
        ('[aliases.fast]\ntargets = ["groq/x"]\ncache = { mode = "always" }\n', "aliases.fast"),
        ('[aliases.fast]\ntargets = ["groq/x"]\ncache = { semantic = 0.92 }\n', "semantic"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_key(tmp_path: Path, toml: str, named: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=named):
        load_config(f, env={})


def test_the_redis_url_takes_a_password_from_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[cache]\nurl = "redis://:${REDIS_PW}@127.0.0.1:6379/0"\n')
    assert load_config(f, env={"REDIS_PW": "s3cret"}).cache.url == "redis://:s3cret@127.0.0.1:6379/0"


def test_parse_raises_its_own_error_type() -> None:
    with pytest.raises(CacheSettingsError):
        parse({"timeout": 0})
