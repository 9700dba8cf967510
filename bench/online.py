"""Online latency and throughput of the Scorer, single process: what the issue's "done when" asks for.

Figures (targets from issue 5, 2-core CPU):
- head-only scoring throughput, pairs/s (>= 100k): the numpy head on precomputed vectors, 100 items per query;
- ``score`` of 100 items, p50/p99, query embedding cached (p99 <= 2 ms) and uncached (p99 <= 20 ms);
- ``search`` p50/p99 over a 100k-item catalog (built here with the fast ``static`` + ``wordllama`` experts through
  the real embed / index / fit functions, and kept under ``--catalog-dir`` for the next run);
- query-encoding time saved by routing: the routed experts vs every expert, both encoded concurrently;
- with ``--data`` naming a dataset whose catalog holds markets the model was not fit on (a model with a transfer
  head): ``score`` of 100 items of those markets' queries, cached and uncached, under ``unseen_market`` (the other
  figures stay on the model's own markets).

Usage: ``python bench/online.py [--model stores/demo/model] [--data DIR] [--queries 1000] [--catalog-items 100000]``
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
log = logging.getLogger("bench.online")


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "mean": round(float(a.mean()), 3), "n": int(a.size)}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def workload(scorer: Any, data_dir: Path, n_queries: int, n_items: int, seed: int) -> list[tuple[str, str, list[str]]]:
    """(query, market, n_items known item ids of the query's market) for distinct query texts."""
    import polars as pl

    from hetmoe.data.dataset import load_dataset

    ds = load_dataset(data_dir)
    rng = np.random.default_rng(seed)
    known = set(scorer.catalog.ids.tolist())
    by_market: dict[str, list[str]] = {}
    for item_id, market in ds.items.select("item_id", "market").iter_rows():
        if item_id in known:
            by_market.setdefault(market, []).append(item_id)
    queries = ds.queries.filter(pl.col("market").is_in(list(by_market))).unique("text", keep="first", maintain_order=True)
    rows = queries.select("text", "market").rows()
    rng.shuffle(rows)
    out = []
    for text, market in rows[:n_queries]:
        pool = by_market[market]
        out.append((text, market, [pool[i] for i in rng.choice(len(pool), size=min(n_items, len(pool)), replace=False)]))
    return out


def head_throughput(scorer: Any, work: list[tuple[str, str, list[str]]], seconds: float) -> dict[str, float]:
    """Pairs/s of the stage-two head alone, on the arguments the Scorer hands it (routed query vectors, item vectors,
    reference cosines and lexical features gathered beforehand), per query and batched over queries; then through
    ``score_batch`` with every cache warm."""
    from hetmoe.online.results import ScoreRequest

    requests = [ScoreRequest(t, ids, m) for t, m, ids in work]
    per_query = [scorer.head_inputs([r]) for r in requests]
    for inputs in per_query:  # features computed once here: the loops below time the head alone
        scorer.model.score(*inputs)
    n_pairs = sum(len(r.item_ids) for r in requests)
    pairs, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for inputs in per_query:
            scorer.model.score(*inputs)
            pairs += len(inputs[0])
    single = pairs / (time.perf_counter() - start)
    single_cpu = pairs / max(time.process_time() - cpu, 1e-9)
    together = scorer.head_inputs(requests)
    scorer.model.score(*together)
    pairs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        scorer.model.score(*together)
        pairs += n_pairs
    batched = pairs / (time.perf_counter() - start)
    pairs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        scorer.score_batch(requests)
        pairs += n_pairs
    via_scorer = pairs / (time.perf_counter() - start)
    return {"head_pairs_per_s_per_query": round(single), "head_pairs_per_cpu_s_per_query": round(single_cpu),
            "head_pairs_per_s_batched": round(batched),
            "score_batch_pairs_per_s_cached": round(via_scorer)}


def score_latency(scorer: Any, work: list[tuple[str, str, list[str]]], repeats: int) -> dict[str, Any]:
    """``score`` of 100 items: uncached (every query new to the caches) then cached (same queries again)."""
    scorer.clear_caches()
    uncached = [timed(lambda w=w: scorer.score(w[0], w[2], w[1])) for w in work]
    cpu = time.process_time()
    cached = [timed(lambda w=w: scorer.score(w[0], w[2], w[1])) for _ in range(repeats) for w in work]
    cpu_ms = (time.process_time() - cpu) * 1000 / len(cached)
    # CPU time per call is what a quiet machine's wall time would be (the cached path is single-threaded numpy).
    return {"score_cached_ms": percentiles(cached), "score_cached_cpu_ms_mean": round(cpu_ms, 3),
            "score_uncached_ms": percentiles(uncached)}


def routing_savings(scorer: Any, work: list[tuple[str, str, list[str]]]) -> dict[str, Any]:
    """Query-encoding time of the routed experts vs every expert (both concurrently, caches cleared per query)."""
    routed_ms, all_ms, k_seen = [], [], []
    every = list(scorer.experts)
    per_expert: dict[str, list[float]] = {e: [] for e in every}
    for text, market, _ in work:
        experts = scorer.route(text, market).experts
        k_seen.append(len(experts))
        scorer.clear_caches()
        routed_ms.append(timed(lambda: scorer.query_vectors([text], [experts])))
        scorer.clear_caches()
        all_ms.append(timed(lambda: scorer.query_vectors([text], [every])))
        for e in every:
            per_expert[e].append(timed(lambda e=e: scorer.encoder(e).encode([text], kind="query")))
    r, a = float(np.mean(routed_ms)), float(np.mean(all_ms))
    return {"encode_routed_ms": percentiles(routed_ms), "encode_all_experts_ms": percentiles(all_ms),
            "encode_saved_ms_mean": round(a - r, 3), "encode_saved_fraction": round(1 - r / a, 3) if a else 0.0,
            "experts_routed_mean": round(float(np.mean(k_seen)), 2), "experts_total": len(every),
            "encode_single_query_ms_median": {e: round(float(np.median(v)), 3) for e, v in per_expert.items()}}


def build_catalog(folder: Path, n_items: int, seed: int) -> Path:
    """A ~n_items demo catalog embedded with the fast experts, indexed, and a k=1 model fitted on it (reused if present)."""
    from hetmoe.data.demo import MARKETS, generate_demo
    from hetmoe.experts.card import default_experts, get_card
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig
    from hetmoe.store.embed import embed_dataset
    from hetmoe.store.index import ItemIndex, build_index

    data, stores, model = folder / "data", folder / "stores", folder / "model"
    fast = default_experts(key="fast_experts")
    if not (data / "judgments.parquet").is_file():
        generate_demo(data, items_per_market=math.ceil(n_items / len(MARKETS)), queries_per_market=60, seed=seed)
    for expert in fast:
        embed_dataset(data, get_card(expert), stores)
        try:
            ItemIndex.load(stores, expert)
        except Exception:  # missing or stale: (re)build
            log.info("indexing %s ...", expert)
            build_index(stores, expert)
    if not (model / "config.json").is_file():
        fit(data, stores, model, fast, k=1, variants=(), seed=seed,
            train_config=TrainConfig(max_epochs=5))
    return model


def search_latency(model_dir: Path, n_queries: int, k: int, candidates: int, seed: int) -> dict[str, Any]:
    from hetmoe.online.scorer import Scorer

    scorer = Scorer.load(model_dir)
    scorer.warm()
    work = workload(scorer, Path(scorer.model.config["dataset"]), n_queries, 1, seed)
    scorer.search(work[0][0], work[0][1], k=k, candidates=candidates)  # faiss selectors are built lazily per market
    uncached = [timed(lambda w=w: scorer.search(w[0], w[1], k=k, candidates=candidates)) for w in work]
    cached = [timed(lambda w=w: scorer.search(w[0], w[1], k=k, candidates=candidates)) for w in work]
    sizes = [scorer.search(w[0], w[1], k=k, candidates=candidates).candidates for w in work[:20]]
    kinds = {e: idx.kind for e, idx in scorer.retriever.indexes.items()}
    return {"catalog_items": scorer.n_items, "index_kinds": kinds, "k": k, "candidates_per_expert": candidates,
            "reranked_mean": round(float(np.mean(sizes)), 1), "search_cached_ms": percentiles(cached),
            "search_uncached_ms": percentiles(uncached)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("stores/demo/model"))
    parser.add_argument("--data", type=Path, default=None,
                        help="Catalog and queries to serve (default: the model's dataset); markets the model was not "
                        "fit on are timed apart.")
    parser.add_argument("--queries", type=int, default=1000,
                        help="Distinct queries per measurement (a p99 from 200 calls would be the second-worst call).")
    parser.add_argument("--items", type=int, default=100, help="Items per score call.")
    parser.add_argument("--repeats", type=int, default=5, help="Passes over the queries for the cached figures.")
    parser.add_argument("--seconds", type=float, default=3.0, help="Duration of each throughput measurement.")
    parser.add_argument("--catalog-items", type=int, default=100_000, help="Search catalog size (0 skips search).")
    parser.add_argument("--catalog-dir", type=Path, default=Path("stores/bench-online"))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "online.json")
    parser.add_argument("--runtime", choices=("torch", "onnx", "onnx-int8"), default="torch",
                        help="Runtime of the sentence-transformers experts' query encoders (bench/_runtimes.py).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hetmoe.online.scorer import Scorer

    began = time.perf_counter()
    from _runtimes import serving_encoders

    scorer = Scorer.load(args.model, data_dir=args.data, with_indexes=None,  # score needs no index
                         encoders=serving_encoders(args.model, args.runtime))
    scorer.warm()
    served = workload(scorer, args.data or Path(scorer.model.config["dataset"]), args.queries, args.items, args.seed)
    work, unseen = [], []
    for w in served:
        (work if w[1] in scorer.model.markets else unseen).append(w)
    if not work:
        raise SystemExit(f"{args.data}: no query of the model's markets ({', '.join(scorer.model.markets)}) to time")
    result: dict[str, Any] = {"benchmark": "online", "model": str(args.model), "experts": scorer.experts, "k": scorer.model.k,
                              "items_per_score": args.items, "queries": len(work), "cpu_count": os.cpu_count(),
                              "runtime": args.runtime}
    if unseen:
        result["unseen_market"] = {"markets": sorted({w[1] for w in unseen}), "queries": len(unseen),
                                   **score_latency(scorer, unseen, args.repeats)}
    result.update(score_latency(scorer, work, args.repeats))
    result["encoding"] = scorer.encoding_stats()
    result.update(head_throughput(scorer, work[:64], args.seconds))
    result.update(routing_savings(scorer, work[: min(len(work), 100)]))
    scorer.close()
    if args.catalog_items > 0:
        model = build_catalog(args.catalog_dir / f"{args.catalog_items}", args.catalog_items, args.seed)
        result["search"] = search_latency(model, args.queries, args.k, args.candidates, args.seed)
    result["seconds"] = round(time.perf_counter() - began, 1)
    result["targets_met"] = {
        "head_pairs_per_s>=100k": result["head_pairs_per_s_per_query"] >= 100_000,
        "score_cached_p99<=2ms": result["score_cached_ms"]["p99"] <= 2.0,
        "score_uncached_p99<=20ms": result["score_uncached_ms"]["p99"] <= 20.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    print(f"\n{'figure':<34}{'p50 / value':>14}{'p99':>10}")
    for name in ("score_cached_ms", "score_uncached_ms", "encode_routed_ms", "encode_all_experts_ms"):
        print(f"{name:<34}{result[name]['p50']:>14}{result[name]['p99']:>10}")
    if "unseen_market" in result:
        for name in ("score_cached_ms", "score_uncached_ms"):
            print(f"{name + ' (unseen market)':<34}{result['unseen_market'][name]['p50']:>14}"
                  f"{result['unseen_market'][name]['p99']:>10}")
    if "search" in result:
        for name in ("search_cached_ms", "search_uncached_ms"):
            print(f"{name + ' (' + str(result['search']['catalog_items']) + ')':<34}{result['search'][name]['p50']:>14}{result['search'][name]['p99']:>10}")
    for name in ("head_pairs_per_s_per_query", "head_pairs_per_cpu_s_per_query", "head_pairs_per_s_batched",
                 "score_batch_pairs_per_s_cached", "score_cached_cpu_ms_mean", "encode_saved_fraction"):
        print(f"{name:<34}{result[name]:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
