"""The LightGBM head: gradient-boosted trees over every expert's pair features, the strong non-neural baseline.

It reads every expert's statistics block (cosine, raw dot product, z-score and gap against the query's reference row;
listwise: z-score and rank in the list), its item-neighbourhood block when fitted with one, the lexical block, and the
market as a categorical feature: the tree heads' one input (:mod:`hetmoe.moe.heads.trees`). Two boosters: ``binary`` (scores used for AUC) and ``lambdarank``
(scores used for nDCG@10, gains = the dataset's grades). Both early-stop on the held-out split.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.moe.artifacts import FORMAT, load_booster, read_config, save_booster, seal_model
from hetmoe.moe.features import PairSet
from hetmoe.moe.heads.trees import tree_matrix
from hetmoe.pairs.blocks.neighbourhood import NEIGHBOURHOOD_FEATURES

log = logging.getLogger(__name__)
# Boosting rounds are chosen, not tuned: early stopping decides the tree count (28 binary trees on the small demo), so
# MAX_ROUNDS is only a ceiling against a stop set that keeps improving by noise; STOP_ROUNDS rounds without a better
# stop-set metric ends training: long enough to cross a noisy plateau at learning rate 0.05, and the extra trees it
# grows past the best one are discarded (best_iteration is what predicts).
MAX_ROUNDS = 1000
STOP_ROUNDS = 50
FEATURES_PER_EXPERT = ("cos", "dot", "z", "gap_or_rank")
BOOSTERS = ("binary.txt", "lambdarank.txt")  # the binary and lambdarank boosters' files, in that order


def lgbm_features(pairs: PairSet, blocks: list[str] | None = None) -> np.ndarray:
    """(n, columns) float32: every expert's tree columns, the per-pair blocks and the market index (categorical);
    ``blocks``: the ones the head was fitted on (default: every block the pairs carry)."""
    return tree_matrix(pairs.features, pairs.experts, None, list(pairs.features.blocks) if blocks is None else blocks,
                       [], pairs.q_market[pairs.qi].astype(np.float64))


def _grades(labels: np.ndarray, levels: list[float]) -> np.ndarray:
    """Integer grade of each label: its index among the training label levels (nearest level for unseen values)."""
    lv = np.asarray(levels)
    return np.abs(labels[:, None] - lv[None, :]).argmin(1).astype(np.int32)


@dataclass
class LgbmModel:
    """Two boosters over :func:`lgbm_features`; ``predict`` gives (binary scores, lambdarank scores)."""

    binary: Any
    rank: Any
    experts: list[str]
    markets: list[str]
    config: dict[str, Any]

    def predict(self, pairs: PairSet) -> tuple[np.ndarray, np.ndarray]:
        if pairs.experts != self.experts or pairs.markets[: len(self.markets)] != self.markets:
            raise HetmoeError(f"LightGBM head expects experts {self.experts} and markets {self.markets} first")
        if list(pairs.lex_names) != list(self.config.get("lexical", [])):
            raise HetmoeError(f"LightGBM head expects lexical features {self.config.get('lexical', [])}, got {list(pairs.lex_names)}")
        blocks = self.config.get("blocks") or ["stats", *(["neighbourhood"] if self.config.get("item_neighbourhood") else []),
                                               *(["lexical"] if self.config.get("lexical") else [])]
        missing = [b for b in blocks if b not in pairs.features.blocks]
        if missing:
            raise HetmoeError(f"this LightGBM head reads the {', '.join(missing)} block(s); load the pairs with them")
        x = lgbm_features(pairs, blocks)
        return self.binary.predict(x), self.rank.predict(x)

    def save(self, out_dir: str | Path, meta: dict[str, Any]) -> Path:
        """Both boosters, then config and digests (:func:`hetmoe.moe.artifacts.seal_model`)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, booster in zip(BOOSTERS, (self.binary, self.rank)):
            save_booster(booster, out / name)
        seal_model(out, {"format": FORMAT, "kind": "lightgbm", **meta, **self.config}, list(BOOSTERS))
        return out

    @classmethod
    def load(cls, model_dir: str | Path) -> "LgbmModel":
        """Both boosters, each checked before LightGBM reads it (:func:`hetmoe.moe.artifacts.load_booster`)."""
        model_dir = Path(model_dir)
        config = read_config(model_dir)
        if config.get("kind") != "lightgbm":
            raise HetmoeError(f"{model_dir} holds a {config.get('kind')} model, not a LightGBM head")
        binary, rank = (load_booster(model_dir, name, config) for name in BOOSTERS)
        return cls(binary, rank, list(config["experts"]), list(config["markets"]), config)


def _sorted_by_query(pairs: PairSet) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(pairs.qi, kind="stable")
    _, sizes = np.unique(pairs.qi[order], return_counts=True)
    return order, sizes


def train_lgbm(train: PairSet, stop: PairSet, seed: int = 0, threads: int = 0) -> LgbmModel:
    """Fit the binary and lambdarank boosters with early stopping on ``stop``."""
    import lightgbm as lgb

    t0 = time.perf_counter()
    x_tr, x_st = lgbm_features(train), lgbm_features(stop)
    cat = [x_tr.shape[1] - 1]
    base = {
        "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20, "feature_fraction": 0.9,
        "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0, "seed": seed, "deterministic": True,
        "num_threads": threads, "verbosity": -1, "force_col_wise": True,
    }
    stop_cb = [lgb.early_stopping(STOP_ROUNDS, verbose=False)]
    d_tr = lgb.Dataset(x_tr, train.y, categorical_feature=cat, free_raw_data=False)
    d_st = lgb.Dataset(x_st, stop.y, categorical_feature=cat, reference=d_tr)
    binary = lgb.train({**base, "objective": "binary", "metric": "auc"}, d_tr, MAX_ROUNDS, valid_sets=[d_st], callbacks=stop_cb)

    levels = sorted(set(np.unique(train.label).tolist()))
    o_tr, s_tr = _sorted_by_query(train)
    o_st, s_st = _sorted_by_query(stop)
    r_tr = lgb.Dataset(x_tr[o_tr], _grades(train.label[o_tr], levels), group=s_tr, categorical_feature=cat)
    r_st = lgb.Dataset(x_st[o_st], _grades(stop.label[o_st], levels), group=s_st, categorical_feature=cat, reference=r_tr)
    gains = [float(v - min(levels)) if min(levels) < 0 else float(v) for v in levels]
    rank_params = {**base, "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "label_gain": gains}
    rank = lgb.train(rank_params, r_tr, MAX_ROUNDS, valid_sets=[r_st], callbacks=stop_cb)
    seconds = time.perf_counter() - t0
    log.info("trained LightGBM heads in %.1fs (binary %d trees, lambdarank %d trees)", seconds, binary.best_iteration, rank.best_iteration)
    config = {
        "experts": list(train.experts),
        "markets": list(train.markets),
        "features": {"per_expert": list(FEATURES_PER_EXPERT) + (list(NEIGHBOURHOOD_FEATURES) if train.neighbourhood else []),
                     "market": "categorical"},
        "lexical": list(train.lex_names),
        "item_neighbourhood": train.neighbourhood,
        "blocks": list(train.features.blocks),
        "label_levels": levels,
        "metrics": {"train_seconds": round(seconds, 2), "binary_trees": binary.best_iteration, "rank_trees": rank.best_iteration},
    }
    return LgbmModel(binary, rank, list(train.experts), list(train.markets), config)
