"""Which approximate index suits a market: the market index's HNSW graph against an IVF index, both against exact
search, on one expert's stored item and query vectors.

Why: on real markets of 35-55k items the HNSW graph finds 95-99% of the exact top 16 (bench/market_index.py), but on
the synthetic million-item catalog (half its titles repeated, products in tight families) some queries cannot reach
their region of the graph at any search breadth. This measures, per index: its build time (one thread, as the market
index builds), the shift of the top-16 mean cosine against exact search for sampled queries and items (mean, max,
share of rows within 1e-3), and the search time per query (a batch of 1,000, one thread).

Usage: ``python bench/index_kinds.py --store S --expert static [--sample 1000] [--name index_kinds-1m]``.
Writes bench/results/NAME.json and prints a table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import print_table, publish  # bench/_tables.py (a script's own folder is on sys.path)

TOP, CANDIDATES, BLOCK = 16, 32, 65_536


def exact_top(x: np.ndarray, units: np.ndarray, own: np.ndarray | None) -> np.ndarray:
    """Each unit row's TOP best cosines over ``x`` (its own row left out when ``own`` gives it)."""
    best = np.full((units.shape[0], TOP), -np.inf, np.float32)
    for lo in range(0, x.shape[0], BLOCK):
        sims = units @ x[lo:lo + BLOCK].T
        if own is not None:
            sims[own[:, None] == np.arange(lo, lo + sims.shape[1])[None, :]] = -np.inf
        best = -np.sort(-np.concatenate([best, sims], axis=1), axis=1)[:, :TOP]
    return best


def shift(index: Any, x: np.ndarray, units: np.ndarray, exact: np.ndarray, own: np.ndarray | None) -> dict[str, float]:
    began = time.perf_counter()
    _, found = index.search(units, CANDIDATES + 1)
    ms = (time.perf_counter() - began) * 1000 / units.shape[0]
    cos = np.einsum("qd,qkd->qk", units, x[np.maximum(found, 0)])
    cos[found < 0] = -np.inf
    if own is not None:
        cos[found == own[:, None]] = -np.inf
    moved = np.abs(-np.sort(-cos, axis=1)[:, :TOP].mean(axis=1) - exact.mean(axis=1))
    return {"shift_mean": round(float(moved.mean()), 5), "shift_max": round(float(moved.max()), 4),
            "rows_within_1e-3": round(float(np.mean(moved < 1e-3)), 3), "ms_per_query": round(ms, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--expert", required=True)
    parser.add_argument("--sample", type=int, default=1000, help="Queries and items sampled.")
    parser.add_argument("--name", default="index_kinds")
    args = parser.parse_args()
    import faiss

    from hetmoe.store.market_index import EF_CONSTRUCTION, HNSW_M
    from hetmoe.store.zarr_store import open_expert
    from hetmoe.vectors import l2_normalize

    stores = open_expert(args.store, args.expert)
    x = l2_normalize(stores.items.load().astype(np.float32))
    rng = np.random.default_rng(0)
    queries = stores.queries.load()
    queries = l2_normalize(queries[rng.choice(queries.shape[0], min(args.sample, queries.shape[0]), replace=False)]
                           .astype(np.float32))
    own = rng.choice(x.shape[0], min(args.sample, x.shape[0]), replace=False)
    exact_q, exact_i = exact_top(x, queries, None), exact_top(x, x[own], own)
    faiss.omp_set_num_threads(1)
    rows: list[dict[str, Any]] = []
    began = time.perf_counter()
    hnsw = faiss.IndexHNSWSQ(x.shape[1], faiss.ScalarQuantizer.QT_fp16, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = EF_CONSTRUCTION
    hnsw.add(x)
    built = time.perf_counter() - began
    for ef in (128, 512, 2048):
        hnsw.hnsw.efSearch = ef
        rows.append({"index": f"HNSW M={HNSW_M}", "search": f"efSearch {ef}", "build_s": round(built, 1),
                     "queries": shift(hnsw, x, queries, exact_q, None), "items": shift(hnsw, x, x[own], exact_i, own)})
    nlist = int(2 ** round(np.log2(2 * np.sqrt(x.shape[0]))))
    began = time.perf_counter()
    ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(x.shape[1]), x.shape[1], nlist,
                                        faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x[rng.choice(x.shape[0], min(x.shape[0], 39 * nlist), replace=False)])
    ivf.add(x)
    built = time.perf_counter() - began
    for nprobe in (16, 64, 256):
        ivf.nprobe = nprobe
        rows.append({"index": f"IVF{nlist},SQfp16", "search": f"nprobe {nprobe}", "build_s": round(built, 1),
                     "queries": shift(ivf, x, queries, exact_q, None), "items": shift(ivf, x, x[own], exact_i, own)})
    publish(args.name, {"name": args.name, "expert": args.expert, "items": int(x.shape[0]), "sample": args.sample,
                        "rows": rows})
    print_table([{"index": r["index"], "search": r["search"], "build": r["build_s"],
                  **{f"q_{k}": v for k, v in r["queries"].items()}, **{f"i_{k}": v for k, v in r["items"].items()}}
                 for r in rows],
                [("index", "index", 18), ("search", "search", 15), ("build", "build s", 9),
                 ("q_shift_mean", "query shift mean", 18), ("q_shift_max", "max", 8),
                 ("q_rows_within_1e-3", "rows ok", 9), ("q_ms_per_query", "ms/query", 10),
                 ("i_shift_mean", "item shift mean", 17), ("i_shift_max", "max", 8), ("i_rows_within_1e-3", "rows ok", 9)])


if __name__ == "__main__":
    main()
