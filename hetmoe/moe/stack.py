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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hetmoe.moe.features import PairSet, carve_by_query
from hetmoe.moe.heads.stacked import StackedHead
from hetmoe.moe.infer import MoEModel
from hetmoe.moe.jobs import Job, run_jobs
from hetmoe.moe.spec import ModelSpec
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


def cross_fit_jobs(spec: ModelSpec, train: PairSet, stop: PairSet, cfg: TrainConfig,
                   teacher: np.ndarray | None) -> tuple[list[np.ndarray], list[Job]]:
    """The query folds of ``train`` and one job per fold (a net trained on the other folds, returning its logits on
    the fold's pairs); :func:`fold_logits` assembles their results. Separate, so a fit can run the folds of several
    heads side by side in one batch of jobs."""
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
    jobs: list[Job] = [(_fold_logits, (spec, train, stop, replace(cfg, seed=cfg.seed + fold + 1), teacher, held))
                       for fold, held in enumerate(folds)]
    return folds, jobs


def fold_logits(folds: list[np.ndarray], results: list[np.ndarray]) -> np.ndarray:
    """(n,) out-of-fold logits from the folds of :func:`cross_fit_jobs` and their jobs' results."""
    out = np.zeros(folds[0].shape[0], np.float32)
    for held, logits in zip(folds, results):
        out[held] = logits
    return out


def stacked_model(net: MoEModel, train: PairSet, stop: PairSet, oof_logits: np.ndarray, cfg: TrainConfig,
                  stack_router: bool) -> MoEModel:
    """``net`` with a stacked head trained over its routed experts (and the training pairs' item neighbourhoods when
    they carry them; the router expert's columns with ``stack_router`` and a learned router)."""
    spec = replace(net.spec, item_neighbourhood=train.neighbourhood,
                   stack_router=stack_router and net.spec.learned_router)
    booster = train_stack(MoEModel(spec, net.weights), train, stop, oof_logits, cfg)
    return MoEModel(spec, net.weights, stack=StackedHead(booster))


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


@dataclass
class Stacker:
    """Stacked heads for several nets of one fit, all built alike: the folds of every net train side by side in one
    batch of jobs (``workers`` processes), then each net's booster trains on its out-of-fold logits."""

    train: PairSet
    stop: PairSet
    cfg: TrainConfig
    teacher: np.ndarray | None
    workers: int = 1
    stack_router: bool = False

    def jobs(self, spec: ModelSpec) -> tuple[list[np.ndarray], list[Job]]:
        """The folds and fold jobs for a net of ``spec`` (to run in a batch of the caller's)."""
        return cross_fit_jobs(spec, self.train, self.stop, self.cfg, self.teacher)

    def build(self, net: MoEModel, folds: list[np.ndarray], results: list[np.ndarray]) -> MoEModel:
        """``net`` with its stacked head, from its folds and their jobs' results."""
        return stacked_model(net, self.train, self.stop, fold_logits(folds, results), self.cfg, self.stack_router)

    def stack_all(self, nets: dict[str, MoEModel]) -> dict[str, MoEModel]:
        """Each net of ``nets`` with its stacked head, by name."""
        planned = {name: self.jobs(net.spec) for name, net in nets.items()}
        results = iter(run_jobs([job for _, jobs in planned.values() for job in jobs], self.workers, self.cfg.threads))
        return {name: self.build(nets[name], folds, [next(results) for _ in jobs])
                for name, (folds, jobs) in planned.items()}
