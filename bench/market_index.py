"""How close the market index comes to exact search: each indexed market's reference rows (real queries) and
neighbourhood rows (items) against a full scan of the market, and what a query's search costs.

For each expert and each market above the exact-search size, from the index the store holds (built there first if it
has none): recall@16 of the rows against the exact top 16; how far the row statistics the heads read move (the mean
of the 16 cosines and the 16th, absolute difference); and the p50 / p99 of one query's search and exact re-ranking
(one thread). The exact side scans the market in blocks against the sampled rows, so it needs no float32 copy of it.

Usage: ``python bench/market_index.py --data DATA/multimarket --store S -e minilm,wordllama [--sample 1000]
[--name market_index-multimarket]``. Writes bench/results/NAME.json and prints a table.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import print_table, publish  # bench/_tables.py (a script's own folder is on sys.path)

TOP = 16
BLOCK = 65_536  # catalog rows per block of the exact scan


def exact_rows(units: np.ndarray, unit_of: Any, n: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Each unit row's exact TOP best cosines over index rows 0..n-1 (its own row left out when ``exclude``)."""
    best = np.full((units.shape[0], TOP), -np.inf, np.float32)
    rows = np.full((units.shape[0], TOP), -1, np.int64)
    for lo in range(0, n, BLOCK):
        block = np.arange(lo, min(n, lo + BLOCK))
        sims = units @ unit_of(block).T
        if exclude is not None:
            sims[(exclude[:, None] == block[None, :])] = -np.inf
        cos = np.concatenate([best, sims], axis=1)
        ids = np.concatenate([rows, np.broadcast_to(block, sims.shape)], axis=1)
        keep = np.argsort(-cos, axis=1, kind="stable")[:, :TOP]
        best, rows = np.take_along_axis(cos, keep, 1), np.take_along_axis(ids, keep, 1)
    return best, rows


def compare(found: tuple[np.ndarray, np.ndarray], exact: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """recall@16 and the movement of each row's mean and 16th cosine against exact search."""
    recall = np.mean([np.intersect1d(a, b).size / TOP for a, b in zip(found[1], exact[1])])
    mean_shift = np.abs(np.nanmean(found[0], axis=1) - exact[0].mean(axis=1))
    last_shift = np.abs(found[0][:, -1] - exact[0][:, -1])
    return {"recall16": round(float(recall), 4), "rows_all_16_found": round(float(np.mean(
        [np.intersect1d(a, b).size == TOP for a, b in zip(found[1], exact[1])])), 4),
            "mean_cos_shift_mean": float(np.nanmean(mean_shift)), "mean_cos_shift_max": float(np.nanmax(mean_shift)),
            "last_cos_shift_max": float(np.nanmax(last_shift))}


def one_market(context: Any, expert: str, market: str, queries: np.ndarray, sample: int,
               rng: np.random.Generator) -> dict[str, Any] | None:
    from threadpoolctl import threadpool_limits

    from hetmoe.store.market_index import rank
    from hetmoe.vectors import l2_normalize

    index, catalog_rows = context.market_index(expert, market)
    if index.exact:
        return None
    n = len(index)

    def unit_of(r: np.ndarray) -> np.ndarray:
        return context.unit_items(expert, catalog_rows[r])

    units = l2_normalize(queries[rng.choice(queries.shape[0], min(sample, queries.shape[0]), replace=False)])
    out: dict[str, Any] = {"expert": expert, "market": market, "items": n, "queries": units.shape[0]}
    out["reference"] = compare(index.nearest(units, unit_of, TOP), exact_rows(units, unit_of, n, None))
    items = rng.choice(n, min(sample, n), replace=False)
    table = index.table
    out["neighbours"] = compare((table.cosines[items], table.rows[items]), exact_rows(unit_of(items), unit_of, n, items))
    seconds = []
    with threadpool_limits(1):
        for unit in units[:200]:
            began = time.perf_counter()
            rank(unit[None], index.candidates(unit[None], 32), unit_of, TOP)
            seconds.append((time.perf_counter() - began) * 1000)
    out["query_ms"] = {"p50": round(float(np.percentile(seconds, 50)), 3), "p99": round(float(np.percentile(seconds, 99)), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("-e", "--experts", required=True, help="Comma-separated experts.")
    parser.add_argument("--sample", type=int, default=1000, help="Queries and items sampled per market.")
    parser.add_argument("--name", default="market_index")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from hetmoe.data.dataset import load_dataset
    from hetmoe.pairs.catalog import dataset_catalog
    from hetmoe.pairs.context import FeatureContext

    dataset = load_dataset(args.data)
    rng = np.random.default_rng(0)
    rows = []
    for expert in args.experts.split(","):
        query_ids = np.asarray(dataset.queries["query_id"].to_list(), dtype=object)
        catalog, queries = dataset_catalog(dataset, args.store, [expert], query_ids)
        context = FeatureContext(catalog, args.store)
        markets = dataset.queries["market"].cast(str).to_numpy()
        for market in sorted(set(markets.tolist())):
            row = one_market(context, expert, market, queries[expert][markets == market], args.sample, rng)
            if row is not None:
                rows.append(row)
    publish(args.name, {"name": args.name, "data": args.data.name, "sample": args.sample, "rows": rows})
    flat = [{"expert": r["expert"], "market": r["market"], "items": r["items"],
             "ref": r["reference"]["recall16"], "ref_shift": f"{r['reference']['mean_cos_shift_max']:.4f}",
             "nbr": r["neighbours"]["recall16"], "nbr_shift": f"{r['neighbours']['mean_cos_shift_max']:.4f}",
             "p50": r["query_ms"]["p50"], "p99": r["query_ms"]["p99"]} for r in rows]
    print_table(flat, [("expert", "expert", 11), ("market", "market", 10), ("items", "items", 9),
                       ("ref", "query recall@16", 17), ("ref_shift", "max mean-cos shift", 20),
                       ("nbr", "item recall@16", 16), ("nbr_shift", "max mean-cos shift", 20),
                       ("p50", "query p50 ms", 14), ("p99", "p99 ms", 9)])


if __name__ == "__main__":
    main()
