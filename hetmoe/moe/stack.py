"""The stacked MoE head: gradient-boosted trees over the *routed* experts' pair statistics, the lexical features and
the MoE net's own logit, under the same router.

Why: on real data LightGBM over every expert's cosine statistics beat the net, but it encodes every expert per query.
This head keeps the MoE's online cost (the router picks k experts; only they encode the query; an unrouted expert's
columns are missing values, which the trees handle natively) and lets the trees combine what the net learned from
the routed experts' projected vectors (its logit) with the raw statistics and lexical match. The net's logit on the
training pairs comes from nets trained on the other folds of the queries (cross-fitting), so the trees never learn
to trust a logit that has seen its own labels.

``StackedModel`` is an :class:`hetmoe.moe.infer.MoEModel` (the net: routing, projections, its logit) whose
``logits`` are the trees' raw scores, so the Scorer, ``eval`` and bulk scoring serve it unchanged.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.moe.features import PairSet, carve_by_query
from hetmoe.moe.infer import MoEModel
from hetmoe.moe.pairstats import pair_cosines
from hetmoe.vectors import l2_normalize
from hetmoe.moe.reference import reference_stats
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.train import TrainConfig, market_weights, net_logits, train_net

log = logging.getLogger(__name__)
STACK_FILE = "stack.txt"
FOLDS = 2  # cross-fitting folds for the net's logit: each fold's net sees half the training queries
EARLY_STOP_ROUNDS = 50  # LightGBM stops after this many rounds without a better held-out AUC
MAX_ROUNDS = 2000
PARAMS = {"objective": "binary", "metric": "auc", "learning_rate": 0.03, "num_leaves": 31, "min_data_in_leaf": 40,
          "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "deterministic": True,
          "verbosity": -1, "force_col_wise": True}


def expert_columns(stats: np.ndarray, dot: np.ndarray) -> list[np.ndarray]:
    """One expert's tree features from its (n, 3) pair statistics and raw dot products: cos, dot, z, gap."""
    return [stats[:, 0], dot, stats[:, 1], stats[:, 2]]


def stack_matrix(cols: list[list[np.ndarray]], routed: np.ndarray, lexical: np.ndarray | None, net_logit: np.ndarray,
                 market: np.ndarray) -> np.ndarray:
    """(n, 4 N + F + 2) float32: per expert its columns (NaN where not routed), lexical features, the net's logit and
    the market index (categorical, last)."""
    n = net_logit.shape[0]
    blocks = []
    for i, expert_cols in enumerate(cols):
        block = np.full((n, 4), np.nan, np.float32)
        if expert_cols:
            block[routed[:, i]] = np.column_stack(expert_cols)[routed[:, i]]
        blocks.append(block)
    if lexical is not None:
        blocks.append(np.asarray(lexical, np.float32))
    blocks.append(np.column_stack([net_logit, market]).astype(np.float32))
    return np.concatenate(blocks, axis=1)


def pairset_matrix(pairs: PairSet, dense: np.ndarray, net_logit: np.ndarray) -> np.ndarray:
    """:func:`stack_matrix` of a PairSet under per-query dense gates (n_q, N)."""
    cols = []
    for i in range(len(pairs.experts)):
        dot = pairs.stats[:, i, 0] * pairs.q_raw_norm[i][pairs.qi] * pairs.d_raw_norm[i][pairs.di]
        cols.append(expert_columns(pairs.stats[:, i], dot))
    return stack_matrix(cols, dense[pairs.qi] > 0, pairs.lex, net_logit, pairs.q_market[pairs.qi])


def cross_fit_logits(spec: ModelSpec, train: PairSet, stop: PairSet, cfg: TrainConfig,
                     teacher: np.ndarray | None) -> np.ndarray:
    """(n,) out-of-fold net logits on ``train``: fold f's pairs are scored by a net trained on the other folds."""
    out = np.zeros(len(train), np.float32)
    rest = np.ones(len(train), dtype=bool)
    for fold in range(FOLDS):
        if fold < FOLDS - 1:
            part = train.subset(rest)
            _, held_in_part = carve_by_query(part, 1.0 / (FOLDS - fold), cfg.seed + 101 * fold)
            held = np.zeros(len(train), dtype=bool)
            held[np.flatnonzero(rest)[held_in_part]] = True
        else:
            held = rest.copy()
        rest &= ~held
        fit_mask = ~held
        result = train_net(spec, train.subset(fit_mask), stop, replace(cfg, seed=cfg.seed + fold + 1),
                           teacher=None if teacher is None else teacher[fit_mask])
        out[held] = net_logits(spec, result.weights, train.subset(held))
    return out


def train_stack(net: MoEModel, train: PairSet, stop: PairSet, oof_logits: np.ndarray, seed: int, threads: int) -> Any:
    """The binary booster over :func:`pairset_matrix`, market-balanced, early-stopped on ``stop`` (AUC)."""
    import lightgbm as lgb

    from hetmoe.moe.evaluate import score_net

    dense_tr = net.dense_gates(net.route(np.asarray(train.markets, dtype=object)[train.q_market], train.rvec))
    stop_scores, dense_st = score_net(net, stop)
    stop_logit = np.log(stop_scores / np.clip(1.0 - stop_scores, 1e-12, None)).astype(np.float32)
    x_tr, x_st = pairset_matrix(train, dense_tr, oof_logits), pairset_matrix(stop, dense_st, stop_logit)
    cat = [x_tr.shape[1] - 1]
    d_tr = lgb.Dataset(x_tr, train.y, weight=market_weights(train), categorical_feature=cat, free_raw_data=False)
    d_st = lgb.Dataset(x_st, stop.y, weight=market_weights(stop), categorical_feature=cat, reference=d_tr)
    params = {**PARAMS, "seed": seed, "num_threads": threads}
    booster = lgb.train(params, d_tr, MAX_ROUNDS, valid_sets=[d_st],
                        callbacks=[lgb.early_stopping(EARLY_STOP_ROUNDS, verbose=False)])
    log.info("stacked head: %d trees over %d features", booster.best_iteration, x_tr.shape[1])
    return booster


class StackedModel(MoEModel):
    """The MoE net plus the booster over its routed experts' statistics; ``logits`` are the booster's raw scores."""

    booster: Any = None

    @classmethod
    def load_stacked(cls, net: MoEModel, model_dir: Path) -> StackedModel:
        import lightgbm as lgb

        path = Path(model_dir) / STACK_FILE
        if not path.is_file():
            raise HetmoeError(f"{model_dir}: stacked model without {STACK_FILE}; retrain it with 'hetmoe fit-head'")
        model = cls(net.spec, net.weights, net.config, net.model_dir)
        model.booster = lgb.Booster(model_file=str(path))
        return model

    def logits(
        self,
        query_vecs: dict[str, np.ndarray],
        item_vecs: dict[str, np.ndarray],
        routing: tuple[np.ndarray, np.ndarray],
        groups: np.ndarray | None = None,
        reference: dict[str, np.ndarray] | None = None,
        lexical: np.ndarray | None = None,
        markets: np.ndarray | None = None,
    ) -> np.ndarray:
        net_logit = super().logits(query_vecs, item_vecs, routing, groups, reference, lexical, markets)
        n = net_logit.shape[0]
        dense = self.dense_gates(routing)
        groups = self._groups(dense.shape[0], n, groups)
        routed = dense[groups] > 0
        cols: list[list[np.ndarray]] = []
        for i, expert in enumerate(self.spec.experts):
            if not routed[:, i].any():
                cols.append([])
                continue
            q = np.atleast_2d(np.asarray(query_vecs[expert], np.float32))[groups]
            d = np.asarray(item_vecs[expert], np.float32)
            cos = pair_cosines(l2_normalize(q), l2_normalize(d))
            ref = np.atleast_2d(reference[expert])[groups] if reference is not None and expert in reference else None
            if ref is None:
                raise HetmoeError(f"expert '{expert}' is routed but its reference cosines were not passed to score()")
            dot = cos * np.linalg.norm(q, axis=1) * np.linalg.norm(d, axis=1)
            cols.append(expert_columns(reference_stats(cos, ref), dot))
        market = self.market_index(markets, dense.shape[0])[groups]
        x = stack_matrix(cols, routed, lexical, net_logit.astype(np.float32), market)
        return self.booster.predict(x, raw_score=True)
