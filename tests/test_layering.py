"""The import direction of docs/architecture.md, kept true by parsing every module's imports.

    types, events, errors, sse          <- the canonical core; imports nothing above it
    dialects                            <- pure mapping tables shared by wire and adapters
    wire (inbound)  |  adapters (outbound)   never import each other
    ledger, keys                        <- depend only on the core
    router                              <- adapters (contract), transport, providers
    pipeline                            <- everything below
    server, cli, dashboard, metrics     <- the top
    sim                                 <- independent of the gateway (it is how the gateway is checked)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "fareway"
CORE = {"types", "events", "errors", "sse"}

# package/module -> the top-level fareway modules it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "types": set(),
    "errors": set(),
    "sse": set(),
    "events": {"types"},
    "dialects": CORE,
    "tokens": CORE,
    "wire": CORE | {"dialects", "tokens"},
    "adapters": CORE | {"dialects", "providers"},
    "providers": CORE,
    "ledger": {"types"},
    "keys": {"types", "errors"},
    "cache": {"types", "errors", "events"},
    "transport": CORE,
    "config": CORE | {"providers"},
    "router": CORE | {"adapters", "providers", "transport", "tokens"},
    "pipeline": CORE
    | {"adapters", "config", "keys", "ledger", "providers", "router", "tokens", "transport", "wire", "cache"},
    "sim": {"sse"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "fareway":
                if len(parts) > 1:
                    out.add(parts[1])
                else:
                    out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "fareway" and len(parts) > 1:
                    out.add(parts[1])
    return out


def _modules() -> list[tuple[str, Path]]:
    mods = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        top = rel.parts[0].removesuffix(".py")
        if top in ALLOWED:
            mods.append((top, path))
    return mods


@pytest.mark.parametrize(("layer", "path"), _modules(), ids=lambda v: str(v) if isinstance(v, str) else v.name)
def test_imports_follow_the_layering(layer: str, path: Path) -> None:
    imported = _imports(path) - {layer, "__version__"}
    forbidden = imported - ALLOWED[layer]
    assert not forbidden, f"{path.relative_to(SRC)} ({layer}) imports {sorted(forbidden)}"


def test_every_layer_is_known() -> None:
    tops = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.rglob("*.py")}
    top_level = {"__init__", "cli", "cli_usage", "metrics", "server", "dashboard"}
    assert tops - set(ALLOWED) - top_level == set(), "a new package needs a place in ALLOWED"
