"""What the item-neighbourhood features (:mod:`hetmoe.pairs.blocks.neighbourhood`) add, measured with trees over every expert.

LightGBM (the stacked head's booster settings, early stopping on 15% of train's queries) over every expert's pair
statistics (cos, z, gap) and the lexical features, without and with the six item-neighbourhood features per expert,
plus the same two over a chosen pair of experts (``--pair``, what a top-2 route reads). Valid macro AUC per seed, and
the seconds the tables took (zero when the stores already hold them: they are built once per catalog).

Usage: ``python bench/item_neighbourhood.py --data DATA/shopee --stores S -e minilm,e5,use,static,wordllama
[--lexical lexical] [--pair minilm,e5] [--seeds 0,1]`` (prints JSON and a table; ``--out`` writes the JSON).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _pairs import add_pair_arguments, load_bench_pairs  # bench/_pairs.py (a script's own folder is on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pair_arguments(parser)
    parser.add_argument("--pair", default="", help="two experts to compare on their own too (a top-2 route)")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    from hetmoe.moe.features import carve_by_query
    from hetmoe.pairs.blocks.neighbourhood import NEIGHBOURHOOD_FEATURES
    from hetmoe.moe.stack import EARLY_STOP_ROUNDS, MAX_ROUNDS, PARAMS

    began = time.perf_counter()
    experts, pairs = load_bench_pairs(args)
    seconds = time.perf_counter() - began
    train = np.flatnonzero(pairs.split == "train")
    fit_mask, stop_mask = carve_by_query(pairs.subset(pairs.split == "train"), 0.15, 0)
    fit_rows, stop_rows, valid = train[fit_mask], train[stop_mask], np.flatnonzero(pairs.split == "valid")
    markets = pairs.market_names[valid]
    lexical = [] if pairs.lex is None else list(pairs.lex.T)
    assert pairs.nbr is not None
    groups = {"all": experts, **({"pair": args.pair.split(",")} if args.pair else {})}
    runs = []
    for group, names in groups.items():
        cols = [experts.index(e) for e in names]
        base = [pairs.stats[:, i, j] for i in cols for j in range(3)] + lexical
        extra = [pairs.nbr[:, i, f] for i in cols for f in range(len(NEIGHBOURHOOD_FEATURES))]
        for name, columns in (("stacked inputs", base), ("+ item neighbourhood", base + extra)):
            x = np.column_stack(columns).astype(np.float32)
            for seed in (int(s) for s in args.seeds.split(",") if s):
                booster = lgb.train({**PARAMS, "seed": seed}, lgb.Dataset(x[fit_rows], pairs.y[fit_rows]), MAX_ROUNDS,
                                    valid_sets=[lgb.Dataset(x[stop_rows], pairs.y[stop_rows])],
                                    callbacks=[lgb.early_stopping(EARLY_STOP_ROUNDS, verbose=False)])
                p = booster.predict(x[valid])
                by_market = {m: float(roc_auc_score(pairs.y[valid][markets == m], p[markets == m])) for m in np.unique(markets)}
                runs.append({"experts": names, "features": name, "seed": seed, "auc_by_market": by_market,
                             "auc_macro": float(np.mean(list(by_market.values())))})
    result = {"benchmark": "item_neighbourhood", "data": args.data.name, "experts": experts, "lexical": args.lexical,
              "features": list(NEIGHBOURHOOD_FEATURES), "load_seconds_with_tables": round(seconds, 1), "runs": runs}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    print(f"\n{'experts':34s}{'features':24s}{'seed':>6s}{'macro AUC':>11s}")
    for run in runs:
        print(f"{','.join(run['experts']):34s}{run['features']:24s}{run['seed']:>6d}{run['auc_macro']:>11.4f}")


if __name__ == "__main__":
    main()
