"""Fuzz the chat endpoints of a live demo gateway with generated malformed bodies and count what
came back: requests, 2xx, 4xx, 5xx, and ledger rows for them (every call, refused or not, must be
exactly one row; no answer may be a 5xx or carry a traceback).

    python benchmarks/fuzz_http.py -n 3000

The bodies come from the hostile-input test's generator (tests/test_hostile_input.py: fields of
the right name with values of any JSON shape, malformed messages, raw bytes, any top-level JSON),
seeded, so a run is repeatable; they are sent in turn to /v1/chat/completions and /v1/messages of
a gateway in demo mode (the simulator answers the valid ones).  Loopback only; bounded by ``-n``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import aiohttp  # noqa: E402
from tests.conftest import MASTER_KEY, gateway_config, start_gateway  # noqa: E402
from tests.test_hostile_input import generated_bodies  # noqa: E402

from fareway.sim.server import SimConfig, start_sim  # noqa: E402

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
MODELS = {b'"oai/ok"': b'"openai/gpt-4o-mini"', b'"ant/ok"': b'"anthropic/claude-haiku-4-5"'}


async def main(n: int) -> int:
    sim = await start_sim("127.0.0.1", 0, SimConfig.default())
    gw = await start_gateway(gateway_config(sim.url, Path(tempfile.mkdtemp(prefix="fareway-fuzz-"))))
    statuses: dict[int, int] = {}
    ids: list[str] = []
    bad: list[str] = []
    try:
        cases = generated_bodies(n)
        headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
        async with aiohttp.ClientSession() as s:
            for client, body in cases:
                for old, new in MODELS.items():
                    body = body.replace(old, new)
                async with s.post(gw.url + PATHS[client], data=body, headers=headers) as r:
                    raw = await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    ids.append(r.headers.get("x-request-id", ""))
                    if r.status >= 500 or b"Traceback" in raw:
                        bad.append(f"{client} {r.status} {body[:200]!r} -> {raw[:200]!r}")
        ledger = gw.app.gateway.accounting.ledger
        assert ledger is not None
        await ledger.flush()
        rows: dict[str, int] = dict.fromkeys(ids, 0)
        for row in await ledger.recent_calls(n=len(ids) + 1000):
            if row.call.request_id in rows:
                rows[row.call.request_id] += 1
    finally:
        await gw.stop()
        await sim.stop()
    total = sum(statuses.values())
    by = {k: sum(v for s, v in statuses.items() if s // 100 == k) for k in (2, 4, 5)}
    print(
        f"requests {total}  2xx {by[2]}  4xx {by[4]}  5xx {by[5]}  statuses {dict(sorted(statuses.items()))}"
    )
    once = sum(1 for c in rows.values() if c == 1)
    print(f"ledger rows: {sum(rows.values())} for {len(rows)} requests; exactly one row: {once}")
    for line in bad[:20]:
        print("BAD", line)
    return 0 if not bad and once == len(rows) else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3000, help="generated bodies (default 3,000)")
    sys.exit(asyncio.run(main(ap.parse_args().n)))
