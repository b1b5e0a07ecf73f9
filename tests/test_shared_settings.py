"""The ``[shared]`` config section: defaults, the Redis URL taken from ``[limits]`` when unset, a
password as ``${VAR}``, and a clear error naming the key for every bad value; the factory builds
the shared health only when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from fareway.config import Config, ConfigError, load_config
from fareway.providers.catalog import Catalog
from fareway.router.shared_health import SharedStats
from fareway.router.stats import Stats
from fareway.server.factory import _health


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    p = tmp_path / "f.toml"
    p.write_text(text)
    return load_config(p, env=env or {})


def test_defaults_are_local_and_the_url_follows_limits(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")
    assert (cfg.shared.health, cfg.shared.experiments) == ("local", "local")
    assert cfg.shared.redis_url == "redis://127.0.0.1:6379/0"
    cfg = load(tmp_path, '[limits]\nredis_url = "redis://10.0.0.5:6380/2"\n[shared]\nhealth = "redis"\n')
    assert cfg.shared.redis_url == "redis://10.0.0.5:6380/2" and cfg.shared.health == "redis"
    cfg = load(
        tmp_path,
        '[shared]\nexperiments = "redis"\nredis_url = "redis://:${PW}@127.0.0.1:6379/1"\nsync_interval = 2\n',
        {"PW": "s3cret"},
    )
    assert cfg.shared.redis_url == "redis://:s3cret@127.0.0.1:6379/1"
    assert cfg.shared.sync_interval == 2.0 and cfg.shared.prefix == "fareway:shared:"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[shared]\nhealth = "shared"\n', "[shared] health must be one of local, redis"),
        ("[shared]\nexperiments = true\n", "[shared] experiments must be a non-empty string"),
        ('[shared]\nredis_url = "http://x"\n', "[shared] redis_url must be a redis://"),
        ("[shared]\ntimeout = 0\n", "[shared] timeout must be a number of seconds of at least 0.01"),
        ('[shared]\nsync_interval = "1"\n', "[shared] sync_interval must be a number"),
        ('[shared]\nhealth_store = "redis"\n', 'unknown key "health_store"'),
        ('[shared]\nredis_url = "redis://:${NOPE}@h:6379/0"\n', "[shared] redis_url refers to ${NOPE}"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert says in err.value.message, err.value.message


def test_the_factory_builds_shared_health_only_when_asked(tmp_path: Path) -> None:
    local = _health(load(tmp_path, ""), catalog=Catalog.builtin())
    assert type(local) is Stats
    cfg = load(tmp_path, '[shared]\nhealth = "redis"\nprefix = "p:"\n')
    shared = _health(cfg, catalog=Catalog.builtin())
    assert (
        isinstance(shared, SharedStats) and shared.prefix == "p:" and shared.redis_url == cfg.shared.redis_url
    )
