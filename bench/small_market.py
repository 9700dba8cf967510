"""A small market beside big ones, on real judgments: how the market weighting of the loss (``--market-power``) moves
every market's AUC.

A 261-query market among big ones is the case this bench builds. The public sets have two big markets, so this bench
derives two datasets from a multi-market one (written under ``--work``, never into the repository) and fits each
with every weighting asked for:

- ``split``: ``--split-market`` (Home Depot) cut in two markets, a big one and a small one of ``--small`` train
  queries (+ 150 valid); the items the small market's queries judge move to it and the big market's judgments of
  them are dropped. Both halves come from one catalog, so pooling helps the small market.
- ``shrunk``: ``--shrink-market`` (Shopee) keeps only ``--small`` of its train queries (all its valid ones): a small
  market unlike the big one, which pooling cannot carry.

Item ids and texts are unchanged, so the source stores serve both (stores are checked per row). Prints JSON and a
table of the MoE's valid macro and per-market AUC per weighting and seed, with LightGBM and the best single expert.

Usage: ``python bench/small_market.py --data DATA/multimarket --stores S -e minilm,use,static,wordllama
--lexical lexical --powers 0,0.5,1 --seeds 0 --work /tmp/small-market``.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from _tables import print_table, publish
from quality import run_seed

from hetmoe.data.dataset import load_dataset, write_dataset
from hetmoe.experts.card import default_router_expert

SMALL_VALID = 150  # valid queries of the split-off market: enough for its AUC to mean something (CI ~ +-0.03)


def _market_queries(queries: pl.DataFrame, judgments: pl.DataFrame, market: str, split: str) -> np.ndarray:
    judged = judgments.join(queries.select("query_id", "market"), on="query_id")
    ids = judged.filter((pl.col("market") == market) & (pl.col("split") == split))["query_id"].unique().sort()
    if ids.len() == 0:
        raise SystemExit(f"market {market!r} has no {split} queries in this dataset; "
                         "pick another with --split-market / --shrink-market")
    return ids.to_numpy()


def _relabel(frame: pl.DataFrame, key: str, ids: list[str], market: str) -> pl.DataFrame:
    """``frame`` with the rows whose ``key`` is in ``ids`` moved to ``market``."""
    moved = pl.when(pl.col(key).is_in(ids)).then(pl.lit(market)).otherwise(pl.col("market"))
    return frame.with_columns(moved.alias("market"))


def split_market(data: Path, out: Path, market: str, small: int, seed: int) -> Path:
    """``market`` cut into itself and ``<market>_small`` (``small`` train + SMALL_VALID valid queries, own items)."""
    source = load_dataset(data)
    items, queries, judgments = source.items, source.queries, source.judgments
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(_market_queries(queries, judgments, market, s), n, replace=False)
              for s, n in (("train", small), ("valid", SMALL_VALID))]
    moved = set(np.concatenate(chosen).tolist())
    name = f"{market}_small"
    moved_items = judgments.filter(pl.col("query_id").is_in(sorted(moved)))["item_id"].unique().to_list()
    queries, items = _relabel(queries, "query_id", sorted(moved), name), _relabel(items, "item_id", moved_items, name)
    pairs = judgments.join(queries.select("query_id", pl.col("market").alias("qm")), on="query_id")
    pairs = pairs.join(items.select("item_id", pl.col("market").alias("im")), on="item_id")
    return write_dataset(out, items, queries, pairs.filter(pl.col("qm") == pl.col("im")).drop("qm", "im"))


def shrink_market(data: Path, out: Path, market: str, small: int, seed: int) -> Path:
    """``market`` with only ``small`` of its train queries (its valid queries all kept)."""
    source = load_dataset(data)
    train = _market_queries(source.queries, source.judgments, market, "train")
    kept = np.random.default_rng(seed).choice(train, small, replace=False)
    dropped = ~pl.col("query_id").is_in(sorted(set(train.tolist()) - set(kept.tolist())))
    return write_dataset(out, source.items, source.queries.filter(dropped), source.judgments.filter(dropped))


def row(scenario: str, power: float, run: dict[str, Any]) -> dict[str, Any]:
    rep = run["report"]
    moe = rep["auc_by_market"]["moe"]
    return {"scenario": scenario, "power": power, "seed": run["seed"], "moe": round(rep["auc_macro"]["moe"], 4),
            **{m: round(v, 4) for m, v in sorted(moe.items())}, "lightgbm": round(rep["auc_macro"]["lightgbm"], 4),
            "best_single": f"{rep['best_single']} {rep['auc_macro'][rep['best_single']]:.4f}",
            "guard": ",".join(f"{m}:{g['flag']}" for m, g in (rep["market_guard"] or {}).items() if g["flag"] != "ok") or "ok",
            "fit_s": run["fit_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="A multi-market dataset (e.g. DATA/multimarket).")
    parser.add_argument("--stores", type=Path, required=True, help="Stores covering it (the derived sets reuse them).")
    parser.add_argument("-e", "--experts", required=True)
    parser.add_argument("--lexical", default="lexical")
    parser.add_argument("--split-market", default="us_homedepot")
    parser.add_argument("--shrink-market", default="id_shopee")
    parser.add_argument("--small", type=int, default=261, help="Train queries of the small market (the issue's 261).")
    parser.add_argument("--scenarios", default="split,shrunk")
    parser.add_argument("--powers", default="0,0.5,1")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--work", type=Path, default=Path("stores/small-market"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    makers = {"split": lambda out: split_market(args.data, out, args.split_market, args.small, 7),
              "shrunk": lambda out: shrink_market(args.data, out, args.shrink_market, args.small, 11)}
    results, rows = [], []
    for scenario in (s for s in args.scenarios.split(",") if s):
        data = makers[scenario](args.work / scenario / "data")
        for power in (float(p) for p in args.powers.split(",") if p):
            opts = argparse.Namespace(data=data, stores=args.stores, work=args.work / scenario / f"power{power:g}",
                                      k=2, split="valid", router_expert=default_router_expert(), lexical=args.lexical,
                                      pair_stats="reference", no_stack=False, market_power=power, eval_data=None)
            for seed in (int(s) for s in args.seeds.split(",") if s):
                run = run_seed(opts, seed, [e for e in args.experts.split(",") if e])
                results.append({"scenario": scenario, "power": power, **run})
                rows.append(row(scenario, power, run))
    publish("small_market", {"benchmark": "small_market", "data": args.data.name, "experts": args.experts,
                             "small_train_queries": args.small, "runs": results})
    fixed = {"scenario", "power", "seed", "moe", "lightgbm", "best_single", "guard", "fit_s"}
    markets = sorted({k for r in rows for k in r} - fixed)
    for r in rows:  # the scenarios' markets differ
        for m in markets:
            r.setdefault(m, "-")
    print_table(rows, [("scenario", "scenario", 10), ("power", "power", 7), ("seed", "seed", 6), ("moe", "moe macro", 11)]
                + [(m, m, 20) for m in markets]
                + [("lightgbm", "LightGBM", 10), ("best_single", "best single", 26), ("guard", "guard", 30)])


if __name__ == "__main__":
    main()
