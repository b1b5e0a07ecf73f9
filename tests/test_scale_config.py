"""The settings of the scale-out: [server] workers, [keys] database_url / schema / pool_size,
[dashboard] sessions; each wrong value is a start-up error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fareway.config import ConfigError, load_config


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    p = tmp_path / "fareway.toml"
    p.write_text(text)
    return load_config(p, env=env or {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nworkers = -1\n", "[server] workers must be at least 0"),
        ('[server]\nworkers = "2"\n', "[server] workers must be an integer"),
        ('[keys]\ndatabase_url = "mysql://x"\n', "[keys] database_url must be a postgresql:// URL"),
        ('[keys]\nschema = "Bad-Name"\n', "[keys] schema must be a lower-case SQL name"),
        ("[keys]\npool_size = 0\n", "[keys] pool_size must be a whole number from 1 to 100"),
        ('[dashboard]\nsessions = "disk"\n', '[dashboard] sessions must be "auto", "memory" or "redis"'),
        ('[dashboard]\nredis_url = "http://x"\n', "[dashboard] redis_url must be a redis://"),
        (
            "[dashboard]\nsession_ttl = 5\n",
            "[dashboard] session_ttl must be a number of seconds, at least 60",
        ),
        ('[dashboard]\nsessions = "redis"\n', '[dashboard] sessions = "redis" needs a Redis url'),
        ("[dashboard]\nsesions = 1\n", 'did you mean "sessions"?'),
    ],
)
def test_wrong_values_name_their_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert message in err.value.message


def test_the_settings_and_where_sessions_go(tmp_path: Path) -> None:
    cfg = load_config(None, env={})
    assert (cfg.workers, cfg.key_settings.database_url, cfg.sessions_url()) == (0, None, None)
    cfg = _load(
        tmp_path,
        '[server]\nworkers = 3\n[keys]\ndatabase_url = "${PGURL}"\nschema = "fw_keys"\npool_size = 2\n'
        '[limits]\nstore = "redis"\nredis_url = "redis://limits:6379/0"\n[cache]\nurl = "redis://cache:6379/0"\n',
        env={"PGURL": "postgresql://u@db/fareway"},
    )
    assert cfg.workers == 3  # type: ignore[attr-defined]
    ks = cfg.key_settings  # type: ignore[attr-defined]
    assert (ks.database_url, ks.schema, ks.pool_size) == ("postgresql://u@db/fareway", "fw_keys", 2)
    assert cfg.sessions_url() == "redis://limits:6379/0"  # type: ignore[attr-defined]
    cfg = _load(tmp_path, '[cache]\nurl = "redis://cache:6379/0"\n')
    assert cfg.sessions_url() == "redis://cache:6379/0"  # type: ignore[attr-defined]
    cfg = _load(tmp_path, '[cache]\nurl = "redis://cache:6379/0"\n[dashboard]\nsessions = "memory"\n')
    assert cfg.sessions_url() is None  # type: ignore[attr-defined]
    cfg = load_config(None, env={"FAREWAY_KEYS_DATABASE_URL": "postgresql://u@db/k"})
    assert cfg.key_settings.database_url == "postgresql://u@db/k"
