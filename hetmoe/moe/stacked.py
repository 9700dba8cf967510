"""The stacked head at serving time: the booster over the routed experts' pair statistics, the lexical features and
the MoE net's logit (trained by :mod:`hetmoe.moe.stack`).

Why a part of the MoE model and not a subclass: :class:`hetmoe.moe.infer.MoEModel` owns loading and saving every
model kind, so it holds this head (None for a plain net) and its ``logits`` become the booster's raw scores; the
Scorer, ``eval`` and bulk scoring serve it unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.moe.artifacts import STACK_FILE
from hetmoe.moe.pairstats import pair_cosines
from hetmoe.moe.reference import reference_stats
from hetmoe.vectors import l2_normalize

# Below this many pairs the booster predicts on the calling thread: starting LightGBM's OpenMP team cost 1-8 ms per
# call of 100 pairs (8 ms while other work held the cores) against 0.17 ms on one thread, with the same scores.
SERIAL_PREDICT_PAIRS = 4096


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


def predict_raw(booster: Any, x: np.ndarray) -> np.ndarray:
    """The booster's raw scores, on one thread for small inputs (same scores either way)."""
    threads = {"num_threads": 1} if x.shape[0] < SERIAL_PREDICT_PAIRS else {}
    return booster.predict(x, raw_score=True, **threads)


class StackHead:
    """A trained booster and how it scores pairs the net has already scored."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    @classmethod
    def load(cls, model_dir: Path) -> StackHead:
        import lightgbm as lgb

        path = Path(model_dir) / STACK_FILE
        if not path.is_file():
            raise HetmoeError(f"{model_dir}: stacked model without {STACK_FILE}; retrain it with 'hetmoe fit-head'")
        return cls(lgb.Booster(model_file=str(path)))

    def logits(self, model: Any, net_logit: np.ndarray, query_vecs: dict[str, np.ndarray],
               item_vecs: dict[str, np.ndarray], routing: tuple[np.ndarray, np.ndarray], groups: np.ndarray | None,
               reference: dict[str, np.ndarray] | None, lexical: np.ndarray | None,
               markets: np.ndarray | None) -> np.ndarray:
        """The booster's raw scores (n,) for pairs ``model`` (the MoE net) scored as ``net_logit``."""
        n = net_logit.shape[0]
        dense = model.dense_gates(routing)
        groups = model._groups(dense.shape[0], n, groups)
        routed = dense[groups] > 0
        cols: list[list[np.ndarray]] = []
        for i, expert in enumerate(model.spec.experts):
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
        market = model.market_index(markets, dense.shape[0])[groups]
        x = stack_matrix(cols, routed, lexical, net_logit.astype(np.float32), market)
        return predict_raw(self.booster, x)
