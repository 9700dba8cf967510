"""Would an item-side neighbourhood statistic help the heads? A measurement for a feature not built yet.

The heads see each expert's pair cosine against the *query's* 16 best cosines in its market (request-independent
reference statistics). The item side has the same problem the other way round (hubness: some items sit close to
everything in an anisotropic space), and CSLS-style retrieval corrects it with the item's own neighbourhood: r_d, the
mean of the item's 16 best cosines with the other items of its market. This script adds (cos - r_d, r_d) per expert to
LightGBM over every expert's pair statistics (cos, z, gap: what the stacked head reads for its routed experts, without
the net's logit) and the lexical features, and compares valid macro AUC, trained alike (early stopping on 15% of
train's queries). Each r_d costs one pass over the market's items per item, so it would be computed once in stage
one, not per request.

Usage: ``python bench/item_neighbourhood.py --data ../shared/data/shopee --stores S -e minilm,use,static,wordllama
[--lexical lexical] [--seeds 0,1]`` (prints JSON and a table; ``--out`` writes the JSON).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

TOP = 16  # as the query-side reference rows (hetmoe.moe.reference)
BLOCK = 2048


def item_neighbourhood(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mean of the TOP best cosines of each ``rows`` item with the other items of ``vectors`` (unit rows)."""
    out = np.zeros(rows.size, np.float32)
    for a in range(0, rows.size, BLOCK):
        part = rows[a : a + BLOCK]
        sims = vectors[part] @ vectors.T
        sims[np.arange(part.size), part] = -np.inf  # not itself
        out[a : a + BLOCK] = np.partition(sims, -TOP, axis=1)[:, -TOP:].mean(axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--stores", type=Path, required=True)
    parser.add_argument("-e", "--experts", required=True)
    parser.add_argument("--lexical", default="lexical")
    parser.add_argument("--router-expert", default="static")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    from hetmoe.data.validate import check_dataset
    from hetmoe.moe.features import carve_by_query, load_pairs
    from hetmoe.moe.stack import EARLY_STOP_ROUNDS, MAX_ROUNDS, PARAMS  # the stacked head's own booster settings
    from hetmoe.store.zarr_store import EmbeddingStore
    from hetmoe.vectors import l2_normalize

    experts = [e for e in args.experts.split(",") if e]
    dataset = check_dataset(args.data)
    pairs = load_pairs(dataset, args.stores, experts, ["train", "valid"], args.router_expert,
                       lexical_store=args.lexical or "")
    item_market = dict(zip(dataset.items["item_id"].to_list(), dataset.items["market"].to_list()))
    judged_market = np.array([item_market[i] for i in pairs.item_ids], dtype=object)
    market_ids = {m: [d for d, dm in item_market.items() if dm == m] for m in np.unique(judged_market)}
    began, extra = time.perf_counter(), []
    for i, expert in enumerate(experts):
        r_d = np.zeros(len(pairs.item_ids), np.float32)
        store = EmbeddingStore.open(args.stores / expert / "items.zarr")
        for market, ids in market_ids.items():
            vectors = l2_normalize(store.get(ids).astype(np.float32))
            pos = {d: n for n, d in enumerate(ids)}
            judged = np.flatnonzero(judged_market == market)
            r_d[judged] = item_neighbourhood(vectors, np.array([pos[d] for d in pairs.item_ids[judged]]))
        extra += [pairs.stats[:, i, 0] - r_d[pairs.di], r_d[pairs.di]]
    seconds = time.perf_counter() - began
    base = [pairs.stats[:, i, j] for i in range(len(experts)) for j in range(3)]
    base += [] if pairs.lex is None else list(pairs.lex.T)
    train = np.flatnonzero(pairs.split == "train")
    fit_mask, stop_mask = carve_by_query(pairs.subset(pairs.split == "train"), 0.15, 0)
    fit_rows, stop_rows, valid = train[fit_mask], train[stop_mask], np.flatnonzero(pairs.split == "valid")
    markets = pairs.market_names[valid]
    runs = []
    for name, columns in (("stacked inputs", base), ("+ item neighbourhood", base + extra)):
        x = np.column_stack(columns).astype(np.float32)
        for seed in (int(s) for s in args.seeds.split(",") if s):
            booster = lgb.train({**PARAMS, "seed": seed}, lgb.Dataset(x[fit_rows], pairs.y[fit_rows]), MAX_ROUNDS,
                                valid_sets=[lgb.Dataset(x[stop_rows], pairs.y[stop_rows])],
                                callbacks=[lgb.early_stopping(EARLY_STOP_ROUNDS, verbose=False)])
            p = booster.predict(x[valid])
            by_market = {m: float(roc_auc_score(pairs.y[valid][markets == m], p[markets == m])) for m in np.unique(markets)}
            runs.append({"features": name, "seed": seed, "auc_by_market": by_market,
                         "auc_macro": float(np.mean(list(by_market.values())))})
    result = {"benchmark": "item_neighbourhood", "data": str(args.data), "experts": experts, "lexical": args.lexical,
              "top": TOP, "neighbourhood_seconds": round(seconds, 1), "runs": runs}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    print(f"\n{'features':24s}{'seed':>6s}{'macro AUC':>11s}")
    for run in runs:
        print(f"{run['features']:24s}{run['seed']:>6d}{run['auc_macro']:>11.4f}")


if __name__ == "__main__":
    main()
