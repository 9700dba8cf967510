"""The stacked MoE head: gradient-boosted trees over the *routed* experts' pair statistics, the lexical features and
the MoE net's own logit, under the same router.

Why: on real data LightGBM over every expert's cosine statistics beat the net, but it encodes every expert per query.
This head keeps the MoE's online cost (the router picks k experts; only they encode the query; an unrouted expert's
columns are missing values, which the trees handle natively) and lets the trees combine what the net learned from
the routed experts' projected vectors (its logit) with the raw statistics and lexical match. The net's logit on the
training pairs comes from nets trained on the other folds of the queries (cross-fitting), so the trees never learn
to trust a logit that has seen its own labels.

This module trains the booster; :mod:`hetmoe.moe.heads.stacked` holds the serving side (the input both build and the
head a :class:`hetmoe.moe.infer.MoEModel` carries), so the Scorer, ``eval`` and bulk scoring serve it unchanged.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from hetmoe.moe.features import PairSet, carve_by_query
from hetmoe.moe.infer import MoEModel
from hetmoe.moe.jobs import run_jobs
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.heads.stacked import StackedHead
from hetmoe.moe.train import TrainConfig, market_weights, net_logits, train_net

log = logging.getLogger(__name__)
FOLDS = 2  # cross-fitting folds for the net's logit: each fold's net sees half the training queries
EARLY_STOP_ROUNDS = 50  # LightGBM stops after this many rounds without a better held-out AUC
MAX_ROUNDS = 2000
PARAMS = {"objective": "binary", "metric": "auc", "learning_rate": 0.03, "num_leaves": 31, "min_data_in_leaf": 40,
          "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "deterministic": True,
          "verbosity": -1, "force_col_wise": True}


def pairset_matrix(spec: ModelSpec, pairs: PairSet, dense: np.ndarray, net_logit: np.ndarray) -> np.ndarray:
    """The stacked head's input over a PairSet under per-query dense gates (n_q, N), as it is served."""
    return StackedHead(None).matrix(spec, pairs.features, dense, net_logit, pairs.q_market[pairs.qi])


def cross_fit_logits(spec: ModelSpec, train: PairSet, stop: PairSet, cfg: TrainConfig,
                     teacher: np.ndarray | None, workers: int = 1) -> np.ndarray:
    """(n,) out-of-fold net logits on ``train``: fold f's pairs are scored by a net trained on the other folds
    (the folds train side by side in ``workers`` processes)."""
    folds, rest = [], np.ones(len(train), dtype=bool)
    for fold in range(FOLDS):
        if fold < FOLDS - 1:
            part = train.subset(rest)
            _, held_in_part = carve_by_query(part, 1.0 / (FOLDS - fold), cfg.seed + 101 * fold)
            held = np.zeros(len(train), dtype=bool)
            held[np.flatnonzero(rest)[held_in_part]] = True
        else:
            held = rest.copy()
        rest &= ~held
        folds.append(held)
    jobs = [(_fold_logits, (spec, train, stop, replace(cfg, seed=cfg.seed + fold + 1), teacher, held))
            for fold, held in enumerate(folds)]
    out = np.zeros(len(train), np.float32)
    for held, logits in zip(folds, run_jobs(jobs, workers, cfg.threads)):
        out[held] = logits
    return out


def _fold_logits(spec: ModelSpec, train: PairSet, stop: PairSet, cfg: TrainConfig, teacher: np.ndarray | None,
                 held: np.ndarray) -> np.ndarray:
    """The logits on the ``held`` pairs of a net trained on the others."""
    fit_mask = ~held
    result = train_net(spec, train.subset(fit_mask), stop, cfg, teacher=None if teacher is None else teacher[fit_mask])
    return net_logits(spec, result.weights, train.subset(held))


def train_stack(net: MoEModel, train: PairSet, stop: PairSet, oof_logits: np.ndarray, cfg: TrainConfig) -> Any:
    """The binary booster over :func:`pairset_matrix`, its pairs weighted by market as the nets' (``cfg.market_power``,
    on both the training and the early-stopping pairs), early-stopped on ``stop`` (AUC); ``net``'s spec says which
    experts' columns it reads."""
    import lightgbm as lgb

    from hetmoe.moe.evaluate import score_net

    dense_tr = net.dense_gates(net.route(np.asarray(train.markets, dtype=object)[train.q_market], train.rvec))
    stop_scores, dense_st = score_net(net, stop)
    stop_logit = np.log(stop_scores / np.clip(1.0 - stop_scores, 1e-12, None)).astype(np.float32)
    x_tr = pairset_matrix(net.spec, train, dense_tr, oof_logits)
    x_st = pairset_matrix(net.spec, stop, dense_st, stop_logit)
    cat = [x_tr.shape[1] - 1]
    d_tr = lgb.Dataset(x_tr, train.y, weight=market_weights(train, cfg.market_power), categorical_feature=cat, free_raw_data=False)
    d_st = lgb.Dataset(x_st, stop.y, weight=market_weights(stop, cfg.market_power), categorical_feature=cat, reference=d_tr)
    params = {**PARAMS, "seed": cfg.seed, "num_threads": cfg.threads}
    booster = lgb.train(params, d_tr, MAX_ROUNDS, valid_sets=[d_st],
                        callbacks=[lgb.early_stopping(EARLY_STOP_ROUNDS, verbose=False)])
    log.info("stacked head: %d trees over %d features", booster.best_iteration, x_tr.shape[1])
    return booster
