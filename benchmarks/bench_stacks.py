"""Which ASGI server under the gateway: uvicorn (uvloop + httptools, what ``fareway serve`` runs)
against granian (Rust HTTP, uvloop) when it is installed (``pip install granian``; it is not a
dependency).  The same app on each, the bare pass-through and Fareway, pinned to core 0 with wrk
on core 1, non-streamed and streamed, interleaved ``--repeat`` times; prints requests/s and server
CPU per request (the steadier figure on a shared machine) of the median run.

    python benchmarks/bench_stacks.py --repeat 3 --duration 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_gateway import (  # noqa: E402
    KEY,
    PY,
    body,
    fareway_cmd,
    free_port,
    load,
    pinned,
    stop,
    tree_cpu_seconds,
    wait_port,
)

SERVER_CORE, LOAD_CORE = (0, 1) if len(os.sched_getaffinity(0)) > 1 else (None, None)


def granian_cmd() -> list[str] | None:
    exe = Path(PY).parent / "granian"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("granian")
    return [found] if found else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (printed path)")
    a = ap.parse_args()
    granian = granian_cmd()
    tmp = Path(tempfile.mkdtemp(prefix="fareway-stacks-"))
    fareway = fareway_cmd()
    sim_port = free_port()
    # the simulator's log goes to a file: a pipe nobody reads would stall it once full
    sim_log = (tmp / "sim.log").open("wb")
    sim = subprocess.Popen(
        pinned([*fareway, "sim", "--port", str(sim_port)], LOAD_CORE), stdout=sim_log, stderr=sim_log
    )
    sim_url = f"http://127.0.0.1:{sim_port}"
    cfg = tmp / "fareway.toml"
    cfg.write_text(
        f'[server]\nstate_dir = "{tmp / "state"}"\n[providers.openai]\nbase_url = "{sim_url}/openai/v1"\n'
        'api_key = "sim"\n'
    )
    (tmp / "stack_apps.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(HERE)!r})
            from bare_proxy import make_app
            from fareway.config import load_config
            from fareway.server.factory import build_app

            def fareway():
                return build_app(load_config({str(cfg)!r}))

            def bare():
                return make_app({sim_url + "/openai"!r})
            """
        )
    )
    env = {
        "FAREWAY_MASTER_KEY": KEY,
        "PYTHONPATH": os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")]),
    }
    targets: list[tuple[str, list[str]]] = []
    for app in ("bare", "fareway"):
        if app == "bare":
            uv = [PY, str(HERE / "bare_proxy.py"), "--upstream", f"{sim_url}/openai", "--port"]
        else:
            uv = [*fareway, "serve", "--config", str(cfg), "--port"]
        targets.append((f"uvicorn/{app}", uv))
        if granian is not None:
            gr = [
                *granian,
                "--interface",
                "asgi",
                "--factory",
                "--loop",
                "uvloop",
                "--workers",
                "1",
                "--runtime-mode",
                "st",
                "--no-ws",
                "--log-level",
                "warning",
                f"stack_apps:{app}",
                "--port",
            ]
            targets.append((f"granian/{app}", gr))
    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    try:
        wait_port(sim_port)
        for _ in range(a.repeat):
            for stream in (False, True):
                for name, cmd in targets:
                    port = free_port()
                    log = (tmp / f"{name.replace('/', '-')}.log").open("ab")
                    proc = subprocess.Popen(
                        pinned([*cmd, str(port)], SERVER_CORE),
                        env={**os.environ, **env},
                        stdout=log,
                        stderr=log,
                    )
                    try:
                        wait_port(port)
                        url = f"http://127.0.0.1:{port}/v1/chat/completions"
                        load(url, body(stream), 2, a.connections, LOAD_CORE)
                        cpu0 = tree_cpu_seconds(proc.pid)
                        r = load(url, body(stream), a.duration, a.connections, LOAD_CORE)
                        cpu = (tree_cpu_seconds(proc.pid) - cpu0) / max(r["requests"], 1.0) * 1e6
                        if r["non2xx"]:
                            print(f"warning: {name} answered {r['non2xx']:.0f} non-2xx", file=sys.stderr)
                        results.setdefault((name, stream), []).append((r["rps"], cpu))
                    finally:
                        stop(proc)
                        log.close()
    finally:
        stop(sim)
        sim_log.close()
        if a.keep_logs:
            print(f"# logs in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if granian is None:
        print("# granian is not installed (pip install granian): uvicorn only")
    print(
        f"# {a.connections} connections, {a.duration}s x {a.repeat} interleaved; server pinned to core {SERVER_CORE}"
    )
    print(f"{'stack/app':<18} {'mode':<13} {'req/s':>8} {'CPU us/req':>11}  runs (req/s; CPU us/req)")
    for (name, stream), runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        mode = "streamed" if stream else "non-streamed"
        print(
            f"{name:<18} {mode:<13} {rps:>8.0f} {cpu:>11.0f}  {[round(r) for r, _ in runs]}; {[round(c) for _, c in runs]}"
        )


if __name__ == "__main__":
    main()
