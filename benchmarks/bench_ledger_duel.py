"""The ledger's effect on requests/s, measured as a duel: Fareway without its ledger and Fareway
with it, running at the same time on the same core, each under its own load.

Why a duel: on a shared machine, requests/s moves by 10-30 % from one run to the next (a
neighbour takes the core for a while), more than the effect to measure.  Two servers that share
one core at every instant see the same neighbours.  Each is started in its own session, so the
kernel's CFS autogroups split the core evenly between the two sessions (a server and its ledger
writer process are one session: the writer's CPU is charged to its server's half).  With both
servers saturated, each gets half the core, and

    ledger cost = 1 - (requests/s with the ledger) / (requests/s without it)

is the share of a request's CPU that the ledger adds, with the noise cancelled.  The two wrk
instances and the simulator run on the other core.  Rounds alternate which server starts first.

    python benchmarks/bench_ledger_duel.py                      # default ledger, 5 rounds of 6 s
    python benchmarks/bench_ledger_duel.py --variant process
    python benchmarks/bench_ledger_duel.py --variant thread --rounds 7
    python benchmarks/bench_ledger_duel.py --variant writer-cpu1  # writer process on core 1

``--against-src DIR`` duels the variant against the *same* variant run from another source tree
(e.g. ``git archive <commit> | tar -x -C DIR``: ``DIR/src`` goes first on its PYTHONPATH), instead
of against Fareway without a ledger: the cost printed is then what this version's ledger adds over
that one's (the rollups, measured against the commit before them).

Variants: ``default`` (SQLite, ``writer = "auto"``: the writer thread here, since the server is
confined to one core), ``process`` (the writer process sharing the server's core),
``writer-cpu1`` (the writer process on the other core, as ``auto`` picks on a machine where the
gateway may use more than one core), ``thread``, ``pg`` (Postgres on 127.0.0.1; its server
processes are not pinned).
Needs Linux (taskset, autogroups: /proc/sys/kernel/sched_autogroup_enabled = 1; for writer-cpu1
a writable /sys/fs/cgroup/cpu) and wrk.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import KEY, body, fareway_cmd, free_port, run_wrk, wait_port

VARIANTS = {
    "default": "",  # writer = "auto": the thread here, the server being confined to one core
    "process": '[ledger]\nwriter = "process"\n',  # the writer process on the server's core
    "writer-cpu1": '[ledger]\nwriter = "process"\nwriter_cpus = [1]\n',
    "thread": '[ledger]\nwriter = "thread"\n',
    "pg": '[ledger]\nurl = "postgresql://postgres@127.0.0.1:5432/test"\n',
}
NO_LEDGER = "[ledger]\nenabled = false\n"


def serve(
    name: str, ledger: str, sim_url: str, tmp: Path, core: int, src: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    if "postgresql://" in ledger:  # a schema per server role, so that two versions do not share one
        ledger += f'schema = "fw_duel_{name.rsplit("-", 1)[0]}"\n'
    cfg = tmp / f"{name}.toml"
    cfg.write_text(
        f'[server]\nstate_dir = "{tmp / name}"\n[providers.openai]\nbase_url = "{sim_url}/openai/v1"\n'
        f'api_key = "sim"\n{ledger}'
    )
    proc = subprocess.Popen(
        ["taskset", "-c", str(core), *fareway_cmd(), "serve", "--config", str(cfg), "--port", str(port)],
        env={**os.environ, "FAREWAY_MASTER_KEY": KEY, **({"PYTHONPATH": f"{src}/src"} if src else {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own autogroup: half of the shared core
    )
    wait_port(port)
    return proc, port


WRITER_CGROUP = Path("/sys/fs/cgroup/cpu/fareway-duel-writer")


def detach_writer(server_pid: int) -> int:
    """For ``writer-cpu1``: move the server's ledger writer process out of the server's
    autogroup (into a cpu cgroup of its own).  CFS divides a group's weight across the CPUs
    where it has load, so a writer busy on core 1 would otherwise shrink its server's share of
    core 0 and charge the server for CPU it did not use there."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == server_pid:
                children.append(int(entry))
    if len(children) != 1:
        raise RuntimeError(f"expected one ledger writer process under {server_pid}, found {children}")
    WRITER_CGROUP.mkdir(exist_ok=True)
    (WRITER_CGROUP / "cgroup.procs").write_text(str(children[0]))
    return children[0]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def duel(ports: dict[str, int], seconds: int, conns: int, load_core: int) -> dict[str, float]:
    payload = body(False)
    out: dict[str, float] = {}

    def load(name: str) -> None:
        url = f"http://127.0.0.1:{ports[name]}/v1/chat/completions"
        out[name] = run_wrk(url, payload, seconds, conns, load_core)["rps"]

    threads = [threading.Thread(target=load, args=(n,)) for n in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="default")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--connections", type=int, default=32, help="per server")
    ap.add_argument("--against-src", default=None, help="duel against the variant run from this source tree")
    a = ap.parse_args()
    base = "baseline" if a.against_src else "noledger"
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: the servers share one, the load and the simulator use the other")
    server_core, load_core = 0, 1
    tmp = Path(tempfile.mkdtemp(prefix="fareway-duel-"))
    sim_port = free_port()
    sim = subprocess.Popen(
        ["taskset", "-c", str(load_core), *fareway_cmd(), "sim", "--port", str(sim_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    costs: list[float] = []
    try:
        wait_port(sim_port)
        sim_url = f"http://127.0.0.1:{sim_port}"
        for r in range(a.rounds):
            order = [
                (base, VARIANTS[a.variant] if a.against_src else NO_LEDGER),
                (a.variant, VARIANTS[a.variant]),
            ]
            if r % 2:
                order.reverse()
            procs, ports = [], {}
            try:
                for name, ledger in order:
                    src = a.against_src if name == "baseline" else None
                    proc, ports[name] = serve(f"{name}-{r}", ledger, sim_url, tmp, server_core, src)
                    procs.append(proc)
                    if a.variant == "writer-cpu1" and name != "noledger":
                        detach_writer(proc.pid)
                duel(ports, 2, a.connections, load_core)  # warm-up
                rps = duel(ports, a.duration, a.connections, load_core)
            finally:
                for proc in procs:
                    stop(proc)
            cost = 1 - rps[a.variant] / rps[base]
            costs.append(cost)
            print(
                f"round {r + 1}: {base} {rps[base]:.0f} req/s, {a.variant} {rps[a.variant]:.0f} req/s"
                f" -> ledger cost {cost:.1%}",
                flush=True,
            )
    finally:
        stop(sim)
    print(
        f"ledger cost ({a.variant}{', over ' + a.against_src if a.against_src else ''}), median of "
        f"{len(costs)} rounds: {statistics.median(costs):.1%}"
        f"  (min {min(costs):.1%}, max {max(costs):.1%})"
    )


if __name__ == "__main__":
    main()
