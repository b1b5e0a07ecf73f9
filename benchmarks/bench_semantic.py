"""Semantic cache matching on the project's paraphrase set: hit rate and false-hit rate.

For every pair of benchmarks/data/paraphrases.jsonl (built by data/make_paraphrases.py) the
request with turn ``a`` is stored in a fresh :class:`fareway.cache.semantic.SemanticMatcher`
and the request with turn ``b`` (same system prompt, same parameters, same tenant) is looked up:

* hit rate       = should-match pairs that hit / should-match pairs;
* false-hit rate = should-not-match pairs that hit / should-not-match pairs (target: <= 1 %).

The vectors are the simulator's (``fareway.sim.embeddings.sim_vector``, the very function behind
the simulator's /v1/embeddings, model text-embedding-3-small, 1536 dimensions), computed in
process.  They are lexical (hashed words, word pairs and trigrams), so these figures say how the
matching rules (context digest, anchors, threshold) behave, not how a real embedding model would:
a real model scores heavy rewordings far higher, and also scores near-misses higher.

    python benchmarks/bench_semantic.py                    # threshold 0.92 (the README's example)
    python benchmarks/bench_semantic.py --threshold 0.85 --sweep
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fareway.cache import semantic as sem
from fareway.cache.key import derive
from fareway.cache.settings import parse
from fareway.keys.store import Principal
from fareway.sim.embeddings import sim_vector
from fareway.types import ChatRequest, Message, TextPart

DATA = Path(__file__).resolve().parent / "data" / "paraphrases.jsonl"
MODEL = "text-embedding-3-small"
DIMS = 1536
ALIAS = "bench"


class SimEmbedder:
    """The simulator's vectors, in process."""

    def __init__(self) -> None:
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [sim_vector(t, DIMS, MODEL) for t in texts]


def request(text: str) -> ChatRequest:
    return ChatRequest(
        model=ALIAS,
        messages=[
            Message("system", [TextPart("You are a helpful assistant.")]),
            Message("user", [TextPart(text)]),
        ],
        max_tokens=400,
    )


def ctx_for(req: ChatRequest) -> Any:
    return SimpleNamespace(req=req, principal=Principal("key_bench", "bench", "inference"), notes={})


async def hits(rows: list[dict[str, Any]], threshold: float, use_anchors: bool) -> list[tuple[bool, float]]:
    aliases = {ALIAS: {"targets": ["openai/gpt-4o-mini"], "cache": {"semantic": threshold}}}
    settings = parse({"embeddings_model": MODEL}, aliases)
    embedder = SimEmbedder()
    saved = sem.anchors
    if not use_anchors:
        sem.anchors = lambda text: ()  # type: ignore[assignment]  # the ablation only
    out: list[tuple[bool, float]] = []
    try:
        for row in rows:
            matcher = sem.SemanticMatcher(settings, lambda m, p: embedder, clock=lambda: 0.0)
            a, b = request(row["a"]), request(row["b"])
            ka, kb = (
                derive(a, "openai/gpt-4o-mini", "k:key_bench"),
                derive(b, "openai/gpt-4o-mini", "k:key_bench"),
            )
            await matcher.stored(ka, ctx_for(a))
            found = await matcher.find(kb, ctx_for(b))
            out.append((found is not None, found.similarity or 0.0 if found else 0.0))
    finally:
        sem.anchors = saved
    return out


def report(rows: list[dict[str, Any]], got: list[tuple[bool, float]], threshold: float, label: str) -> None:
    should = [h for r, (h, _) in zip(rows, got, strict=True) if r["match"]]
    shouldnt = [h for r, (h, _) in zip(rows, got, strict=True) if not r["match"]]
    print(
        f"{label} threshold={threshold:.2f}: hit rate {sum(should)}/{len(should)} = "
        f"{100 * sum(should) / len(should):.1f} %, false-hit rate {sum(shouldnt)}/{len(shouldnt)} = "
        f"{100 * sum(shouldnt) / len(shouldnt):.1f} %"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, default=0.92)
    ap.add_argument("--sweep", action="store_true", help="also print a few other thresholds")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    kinds = Counter(r["kind"] for r in rows)
    print(f"{args.data.name}: {len(rows)} pairs: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print(f"embeddings: the simulator's ({MODEL}, {DIMS} dims; lexical, not a real embedding model)")
    t0 = time.perf_counter()
    got = await hits(rows, args.threshold, use_anchors=True)
    elapsed = time.perf_counter() - t0
    report(rows, got, args.threshold, "rules (context + anchors + cosine)")
    by_kind: dict[str, list[bool]] = {}
    for r, (h, _) in zip(rows, got, strict=True):
        by_kind.setdefault(r["kind"], []).append(h)
    for kind, hs in sorted(by_kind.items()):
        print(f"  {kind:17} hits {sum(hs)}/{len(hs)}")
    for r, (h, s) in zip(rows, got, strict=True):
        if h and not r["match"]:
            print(f"  false hit ({r['kind']}, {s:.4f}): {r['a']!r} -> {r['b']!r}")
    ablation = await hits(rows, args.threshold, use_anchors=False)
    report(rows, ablation, args.threshold, "cosine only (anchors rule off)  ")
    if args.sweep:
        for t in (0.80, 0.85, 0.90, 0.95):
            report(rows, await hits(rows, t, use_anchors=True), t, "rules (context + anchors + cosine)")
    print(
        f"{len(rows)} lookups in {elapsed:.2f} s ({1000 * elapsed / len(rows):.2f} ms each, embedding included)"
    )


if __name__ == "__main__":
    asyncio.run(main())
