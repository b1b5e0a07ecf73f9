"""Where Fareway keeps its state (keys, ledger, spool): one place for the server and every CLI command.

In order: ``[server] state_dir`` in the config file (a relative path is relative to the file, not
to the working directory), else the ``FAREWAY_HOME`` environment variable (``FAREWAY_STATE_DIR``,
its older name, still works), else the per-user data directory (platformdirs:
``~/.local/share/fareway`` on Linux, ``~/Library/Application Support/fareway`` on macOS,
``%LOCALAPPDATA%\\fareway`` on Windows).  A relative environment value is made absolute against
the working directory at start, so a server and a CLI started from the same shell agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import platformdirs

HOME_ENV = "FAREWAY_HOME"
LEGACY_ENV = "FAREWAY_STATE_DIR"


def default_state_dir() -> Path:
    return Path(platformdirs.user_data_dir("fareway", appauthor=False))


def resolve_state_dir(configured: str | None, config_file: Path | None, env: Any) -> tuple[Path, str]:
    """(the state directory, a phrase saying where it came from)."""
    if configured is not None:
        p = Path(configured).expanduser()
        if not p.is_absolute() and config_file is not None:
            p = config_file.resolve().parent / p
        return p.absolute(), f"[server] state_dir in {config_file}" if config_file else "[server] state_dir"
    for name in (HOME_ENV, LEGACY_ENV):
        value = env.get(name)
        if value:
            return Path(value).expanduser().absolute(), f"${name}"
    return default_state_dir(), "the per-user data directory (set FAREWAY_HOME to change it)"
