"""``/search`` against exact search: how many of the top-k items a served search returns an exact search returns too.

Usage: ``python bench/search_recall.py --model M [--kind hnsw] [--queries 300] [--k 10] [--candidates 200]
[--work DIR] [--tag NAME]``.

The model's stores are copied twice into ``--work`` (default: a temporary folder; the model's own stores are not
touched): one copy gets exact (flat) indexes, the other ``--kind`` indexes built and tuned by ``hetmoe index``
(recall@10 target 0.95 against exact search on sampled query vectors). The same model is loaded on each copy with
``Scorer.load(store_root=...)`` and both answer the same searches: distinct judged queries of the model's dataset,
each in its own market, encoded online exactly as ``/search`` does. ``recall_at_k`` is the mean over queries of
|served top k ∩ exact top k| / |exact top k|, after the head's rerank of each side's candidates (what a user sees).
``index`` holds each expert's index recall@10 against exact search as ``hetmoe index`` measured it (unfiltered, on
held-out sample query vectors). Prints one JSON object (also ``bench/results/search_recall[-TAG].json``) and a short
table.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import print_table, publish  # noqa: E402


def _stores(model: Any, source: Path, target: Path, kind: str) -> dict[str, Any]:
    """Copy the model's expert and lexical stores to ``target`` and index every expert with ``kind``."""
    from hetmoe.store.index import build_index

    names = [*model.experts, *([model.spec.lexical_store] if model.spec.lexical_store else [])]
    for name in dict.fromkeys([*names, model.router_expert or names[0]]):
        shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns("items.faiss*"))
    return {expert: build_index(target, expert, kind) for expert in model.experts}


def _searches(scorer: Any, queries: list[tuple[str, str]], k: int, candidates: int) -> list[tuple[list[str], float]]:
    out = []
    for text, market in queries:
        began = time.perf_counter()
        result = scorer.search(text, market, k=k, candidates=candidates)
        out.append((result.item_ids, time.perf_counter() - began))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="Model folder (its stores and dataset are read).")
    parser.add_argument("--kind", default="hnsw", help="Index kind served: hnsw | ivf-pq | flat.")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--tag", default="", help="Suffix of the result file (search_recall-TAG.json).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import polars as pl

    from hetmoe.moe.infer import MoEModel
    from hetmoe.online.scorer import Scorer

    model = MoEModel.load(args.model)
    work = args.work or Path(tempfile.mkdtemp(prefix="hetmoe-search-"))
    indexes = {kind: _stores(model, Path(model.store_root), work / kind, kind) for kind in ("flat", args.kind)}
    queries = (pl.read_parquet(Path(model.config["dataset"]) / "queries.parquet").filter(
        pl.col("market").is_in(model.markets)).unique("text", keep="first", maintain_order=True)
        .sample(fraction=1.0, shuffle=True, seed=0).head(args.queries).select("text", "market").rows())
    answers = {}
    for kind in ("flat", args.kind):
        scorer = Scorer.load(args.model, store_root=work / kind, with_indexes=True)
        _searches(scorer, queries[:5], args.k, args.candidates)  # encoders and caches warm before timing
        scorer.clear_caches()
        answers[kind] = _searches(scorer, queries, args.k, args.candidates)
        scorer.close()
    exact, served = answers["flat"], answers[args.kind]
    recall = [len(set(s[0]) & set(e[0])) / max(1, len(e[0])) for s, e in zip(served, exact)]
    row = {"kind": args.kind, "queries": len(queries), "k": args.k, "candidates": args.candidates,
           "recall_at_k": round(float(np.mean(recall)), 4), "queries_below_1": int(sum(r < 1 for r in recall)),
           "min_recall": round(float(min(recall)), 4),
           "p50_ms_served": round(1000 * statistics.median(t for _, t in served), 2),
           "p50_ms_exact": round(1000 * statistics.median(t for _, t in exact), 2)}
    out = {"name": "search_recall", "model": str(args.model), "dataset": Path(model.config["dataset"]).name,
           "items": {e: v["count"] for e, v in indexes[args.kind].items()},
           "index": {e: {k: v.get(k) for k in ("kind", "params", "recall@10")} for e, v in indexes[args.kind].items()},
           **row}
    publish(f"search_recall{'-' + args.tag if args.tag else ''}", out)
    print_table([row], [("kind", "served index", 14), ("recall_at_k", f"recall@{args.k}", 11),
                        ("queries_below_1", "queries < 1", 12), ("p50_ms_served", "p50 ms", 9),
                        ("p50_ms_exact", "exact p50 ms", 13)])
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
