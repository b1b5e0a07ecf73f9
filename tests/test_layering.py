"""The import direction of docs/architecture.md, kept true by parsing every module's imports.

    types, events, errors, sse, scrub   <- the canonical core; imports nothing above it
    dialects                            <- pure mapping tables shared by wire and adapters
    wire (inbound)  |  adapters (outbound)   never import each other
    transport (+ transport_base, transport_http, transport_mock)   the upstream HTTP seam, its HTTP
                                           client and its in-memory double
    redis_client                        <- imports nothing: the fail-fast Redis client
    ledger, keys                        <- depend only on the core
    router                              <- adapters (contract), transport, providers; its
                                           shared_settings module imports nothing, so config reads it
    pipeline                            <- everything below
    cache                               <- a feature on the pipeline's seams (lookup, stream wrapper);
                                           its settings module imports nothing, so config may read it
    experiments                         <- the pipeline (its settings module is loaded by config)
    limits                              <- budgets and rate limits: admissions on the pipeline's admit
                                           seam; its settings module imports nothing, so config reads it
    metrics                             <- a sink fed from ledger records
    dashboard                           <- the page, its data shaping and sessions (no routes)
    server, cli, cli_usage, cli_keys    <- the top (server holds every route, the dashboard's too)
    sim                                 <- independent of the gateway (it is how the gateway is checked)

Every module of ``src/fareway`` has a layer (a new one fails ``test_every_module_has_a_layer``).

The import graph is built per *module* from the AST: ``import`` and ``from ... import`` at any
depth (module level, inside functions, under ``if TYPE_CHECKING:``), relative imports resolved.
``from pkg import name`` is an edge to the submodule ``pkg.name`` when there is one, else to
``pkg`` (its ``__init__``).  The implicit import of a parent package (``import a.b`` runs
``a/__init__``) is not an edge: every submodule would otherwise be in a loop with an ``__init__``
that re-exports it.

``TYPE_CHECKING`` imports count, for the layers and for cycles.  They do not run, but they are a
dependency of the design all the same: mypy follows them, and one ``isinstance`` or one evaluated
annotation later they run.  A cycle hidden behind ``TYPE_CHECKING`` is still a cycle to remove
(move the shared type down a layer), not to hide.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "fareway"
CORE = {"types", "events", "errors", "sse", "scrub"}
ROOT = "root"
"""``fareway/__init__.py`` (the version string): imports nothing, importable from anywhere."""

LAYER_OF_TOP: dict[str, str] = {
    "transport_base": "transport",
    "transport_http": "transport",
    "transport_mock": "transport",
    "__init__": ROOT,
}
"""Top-level modules that belong to another module's layer (the rest are their own layer)."""

# layer -> the layers it may import (besides itself and ROOT)
ALLOWED: dict[str, set[str]] = {
    ROOT: set(),
    "types": set(),
    "scrub": set(),
    "errors": {"scrub"},
    "sse": set(),
    "events": {"types"},
    "dialects": CORE,
    "tokens": CORE,
    "wire": CORE | {"dialects", "tokens"},
    "adapters": CORE | {"dialects", "providers"},
    "providers": CORE,
    "ledger": {"types"},
    "keys": {"types", "errors", "scrub"},
    "cache": CORE | {"pipeline", "wire", "redis_client"},
    "transport": CORE,
    "redis_client": set(),  # the fail-fast Redis client (cache, shared health, experiment counters)
    "config_schema": CORE,
    "config_state": set(),
    "config": CORE
    | {"providers", "cache", "experiments", "config_schema", "config_state", "keys", "limits"}
    | {"router"},  # router.shared_settings, the [shared] section (imports nothing)
    "router": CORE | {"adapters", "providers", "transport", "tokens", "redis_client"},
    "pipeline": CORE
    | {"adapters", "config", "keys", "ledger", "providers", "router", "tokens", "transport", "wire"},
    "experiments": CORE
    | {
        "adapters",
        "config",
        "keys",
        "ledger",
        "pipeline",
        "providers",
        "router",
        "tokens",
        "transport",
        "wire",
        "redis_client",
    },
    "limits": CORE | {"keys", "ledger", "pipeline", "router", "tokens"},
    "metrics": {"ledger"},
    "dashboard": CORE | {"ledger", "keys"},
    "server": CORE
    | {
        "adapters",
        "cache",
        "config",
        "dashboard",
        "experiments",
        "keys",
        "ledger",
        "limits",
        "metrics",
        "pipeline",
        "providers",
        "router",
        "tokens",
        "transport",
        "wire",
    },
    "cli_usage": CORE | {"config", "dashboard", "ledger"},
    "cli_ledger": CORE | {"cli_usage", "config", "ledger"},
    "cli_experiments": CORE | {"cli_usage", "config", "experiments", "ledger"},
    "cli_config": CORE | {"config", "server"},
    "cli_keys": CORE | {"cli_config", "config", "keys"},
    "cli_catalog": CORE | {"cli_config", "ledger"},
    "cli": CORE
    | {
        "cli_catalog",
        "cli_experiments",
        "cli_keys",
        "cli_usage",
        "cli_ledger",
        "cli_config",
        "config",
        "keys",
        "providers",
        "server",
        "sim",
    },
    "sim": {"sse"},
}

KNOWN_CYCLES: set[frozenset[str]] = set()
"""Cycles tolerated for now: none."""


# ----------------------------------------------------------------------------- the graph


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The project modules that ``path`` (module ``name``) imports, anywhere in its body."""
    top = name.partition(".")[0]
    out: set[str] = set()

    def target(dotted: str) -> str | None:
        # the longest prefix of ``dotted`` that is a module of the project
        parts = dotted.split(".")
        while parts:
            cand = ".".join(parts)
            if cand in modules:
                return cand
            parts.pop()
        return None

    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] == top and (t := target(alias.name)):
                    out.add(t)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = _package_of(name, path).split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base.partition(".")[0] != top:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                t = sub if sub in modules else target(base)
                if t:
                    out.add(t)
    out.discard(name)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the project modules it imports (``root`` is the package directory)."""
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(paths)
    return {name: _imports(path, name, modules) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as one concrete
    loop ``[a, b, ..., a]`` through its members, for the message."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[set[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        # iterative Tarjan (the graph is small, but recursion depth should not depend on it)
        work: list[tuple[str, Iterable[str]]] = [(v, iter(sorted(graph.get(v, ()))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    comp: set[str] = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == node:
                            break
                    sccs.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_loop(graph, comp) for comp in sccs if len(comp) > 1]


def _loop(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest loop from the smallest member of ``comp`` back to itself (BFS inside comp)."""
    start = min(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{sorted(comp)} is not strongly connected")


def layer_of(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return LAYER_OF_TOP.get(top, top)


GRAPH = import_graph(SRC)


# ----------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_follow_the_layering(module: str) -> None:
    layer = layer_of(module)
    bad = sorted(m for m in GRAPH[module] if layer_of(m) not in ALLOWED[layer] | {layer, ROOT})
    assert not bad, f"{module} ({layer}) imports {[f'{m} ({layer_of(m)})' for m in bad]}"


def test_every_module_has_a_layer() -> None:
    unknown = sorted(m for m in GRAPH if layer_of(m) not in ALLOWED)
    assert not unknown, f"these modules need a place in ALLOWED (or LAYER_OF_TOP): {unknown}"


def test_no_import_cycle_between_modules() -> None:
    found = [c for c in cycles(GRAPH) if frozenset(c) not in KNOWN_CYCLES]
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_root_package_imports_nothing() -> None:
    assert GRAPH["fareway"] == set()


# ------------------------------------------------------------- the checker, on a made-up tree


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_the_checker_sees_relative_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a/__init__.py": "",
            "a/x.py": "from . import y\n",
            "a/y.py": "def f():\n    from .z import g\n",
            "a/z.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import x\n",
            "b.py": "import pkg.a.x\nfrom pkg import c\n",
            "c.py": "from pkg.a.x import thing\n",
        },
    )
    graph = import_graph(root)
    assert graph["pkg.a.x"] == {"pkg.a.y"}
    assert graph["pkg.a.y"] == {"pkg.a.z"}
    assert graph["pkg.a.z"] == {"pkg.a.x"}
    assert graph["pkg.b"] == {"pkg.a.x", "pkg.c"}
    assert cycles(graph) == [["pkg.a.x", "pkg.a.y", "pkg.a.z", "pkg.a.x"]]


def test_the_checker_finds_a_two_module_cycle_and_names_it(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "p/__init__.py": "",
            "p/one.py": "from pkg.p.two import T\n",
            "p/two.py": "from ..p import one\n",
            "q.py": "from pkg.p import one, two\n",
        },
    )
    assert cycles(import_graph(root)) == [["pkg.p.one", "pkg.p.two", "pkg.p.one"]]


ALLOWED["config"] |= {"dashboard"}  # its settings module (fareway.dashboard.settings) imports nothing
