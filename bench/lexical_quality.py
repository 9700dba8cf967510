"""How well the lexical features rank on real judgments: each feature alone, and LightGBM over all of them.

Usage: ``python bench/lexical_quality.py DATA [DATA ...]`` (dataset folders with train and valid judgments, e.g. the
real homedepot and shopee sets). For each folder the lexical expert is fitted on the folder's own items; per feature,
the pooled AUC per market on ``valid`` (macro = mean over markets; a feature where higher means less relevant shows
below 0.5); then LightGBM (binary, early-stopped on one eighth of the train queries) trained on ``train`` pairs and
scored on ``valid``. Prints one JSON object (also bench/results/lexical_quality.json) and a short table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def pairs(data: Path):
    """The fitted model, the features of every judged pair, labels, splits, markets and query ids."""
    from hetmoe.data.validate import check_dataset
    from hetmoe.lexical import LexicalModel

    ds = check_dataset(data)
    items, queries, judged = ds.items, ds.queries, ds.judgments
    began = time.perf_counter()
    model = LexicalModel.fit(
        items["item_id"].to_list(),
        items["title"].to_list(),
        items["text"].to_list() if "text" in items.columns else None,
        items["market"].to_list(),
    )
    fit_s = time.perf_counter() - began
    position = {q: i for i, q in enumerate(queries["query_id"].to_list())}
    groups = np.asarray([position[q] for q in judged["query_id"].to_list()])
    began = time.perf_counter()
    features = model.features(queries["text"].to_list(), model.rows(judged["item_id"].to_list()), groups)
    feature_s = time.perf_counter() - began
    markets = queries["market"].to_numpy()[groups]
    return model, features, judged["relevant"].to_numpy(), judged["split"].to_numpy(), markets, groups, fit_s, feature_s


def lightgbm_auc(features, labels, split, markets, groups, seed: int = 0) -> tuple[dict[str, float], int]:
    import lightgbm as lgb

    from hetmoe.metrics import auc_by_market

    train, valid = split == "train", split == "valid"
    rng = np.random.default_rng(seed)
    train_queries = np.unique(groups[train])
    held = train & np.isin(groups, rng.choice(train_queries, max(1, train_queries.size // 8), replace=False))
    fit = train & ~held
    booster = lgb.train(
        {
            "objective": "binary",
            "learning_rate": 0.03,
            "num_leaves": 31,
            "min_data_in_leaf": 20,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": seed,
            "verbose": -1,
            "num_threads": 2,
        },
        lgb.Dataset(features[fit], labels[fit]),
        num_boost_round=2000,
        valid_sets=[lgb.Dataset(features[held], labels[held])],
        callbacks=[lgb.early_stopping(100, verbose=False)],
    )
    scores = booster.predict(features[valid], num_iteration=booster.best_iteration)
    return auc_by_market(scores, labels[valid], markets[valid]), int(booster.best_iteration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data", type=Path, nargs="*", help="dataset folders (none: nothing to measure, e.g. in run_all)"
    )
    args = parser.parse_args()
    if not args.data:
        print(json.dumps({"skipped": "no dataset folders given; pass real ones, e.g. homedepot and shopee"}))
        return
    logging.basicConfig(level=logging.WARNING)
    from hetmoe.metrics import auc_by_market, macro

    result: dict[str, dict] = {}
    for data in args.data:
        model, features, labels, split, markets, groups, fit_s, feature_s = pairs(data)
        valid = split == "valid"
        alone = {
            name: round(macro(auc_by_market(features[valid, i], labels[valid], markets[valid])), 4)
            for i, name in enumerate(model.feature_names)
        }
        per_market, rounds = lightgbm_auc(features, labels, split, markets, groups)
        result[data.name] = {
            "items": int(model.item_ids.size),
            "pairs": int(labels.size),
            "fit_s": round(fit_s, 2),
            "features_s": round(feature_s, 2),
            "feature_auc_macro": alone,
            "lightgbm": {
                "auc_by_market": {m: round(v, 4) for m, v in per_market.items()},
                "auc_macro": round(macro(per_market), 4),
                "rounds": rounds,
            },
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lexical_quality.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    names = list(next(iter(result.values()))["feature_auc_macro"])
    print(f"\n{'valid macro AUC':24s}" + "".join(f"{d:>14s}" for d in result))
    for name in names:
        print(f"{name:24s}" + "".join(f"{r['feature_auc_macro'][name]:14.4f}" for r in result.values()))
    print(f"{'LightGBM (all lexical)':24s}" + "".join(f"{r['lightgbm']['auc_macro']:14.4f}" for r in result.values()))


if __name__ == "__main__":
    main()
