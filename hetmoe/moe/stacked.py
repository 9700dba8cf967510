"""The stacked head at serving time: the booster over the routed experts' pair statistics (and, for models fitted
with them, their item-neighbourhood features), the lexical features and the MoE net's logit (trained by
:mod:`hetmoe.moe.stack`).

Why a part of the MoE model and not a subclass: :class:`hetmoe.moe.infer.MoEModel` owns loading and saving every
model kind, so it holds this head (None for a plain net) and its ``logits`` become the booster's raw scores; the
Scorer, ``eval`` and bulk scoring serve it unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.moe.artifacts import STACK_FILE, load_booster, read_config
from hetmoe.moe.neighbourhood import NEIGHBOURHOOD_FEATURES
from hetmoe.moe.reference import reference_stats
from hetmoe.vectors import l2_normalize, pair_cosines

# Below this many pairs the booster predicts on the calling thread: starting LightGBM's OpenMP team cost 1-8 ms per
# call of 100 pairs (8 ms while other work held the cores) against 0.17 ms on one thread, with the same scores.
SERIAL_PREDICT_PAIRS = 4096


BASE_COLUMNS = 4  # cos, dot, z, gap


def expert_columns(stats: np.ndarray, dot: np.ndarray, neighbourhood: np.ndarray | None = None) -> list[np.ndarray]:
    """One expert's tree features from its (n, 3) pair statistics and raw dot products: cos, dot, z, gap, then its
    (n, 10) item-neighbourhood features when given."""
    cols = [stats[:, 0], dot, stats[:, 1], stats[:, 2]]
    return cols if neighbourhood is None else cols + list(np.asarray(neighbourhood).T)


def head_experts(spec: Any, dense: np.ndarray) -> np.ndarray:
    """(n_q, N) bool: the experts whose columns the booster reads per query row: the routed ones (gate > 0), and the
    router expert on every row when ``spec.stack_router`` (its query vector exists for routing anyway)."""
    read = dense > 0
    if reads_router_expert(spec):
        read[:, spec.experts.index(spec.router_expert)] = True
    return read


def reads_router_expert(spec: Any) -> bool:
    """Whether the booster reads the router expert's columns on every query: asked for (``stack_router``), and a
    learned router whose expert is one of the model's (rule routing encodes no router vector)."""
    return bool(spec.stack_router and spec.learned_router and spec.router_expert in spec.experts)


def columns_per_expert(spec: Any) -> int:
    """How many tree columns one expert has under ``spec`` (a :class:`hetmoe.moe.spec.ModelSpec`)."""
    return BASE_COLUMNS + (len(NEIGHBOURHOOD_FEATURES) if spec.item_neighbourhood else 0)


def stack_matrix(cols: list[list[np.ndarray]], routed: np.ndarray, lexical: np.ndarray | None, net_logit: np.ndarray,
                 market: np.ndarray, width: int = BASE_COLUMNS) -> np.ndarray:
    """(n, width N + F + 2) float32: per expert its ``width`` columns (NaN where not routed), lexical features, the
    net's logit and the market index (categorical, last)."""
    n = net_logit.shape[0]
    blocks = []
    for i, expert_cols in enumerate(cols):
        block = np.full((n, width), np.nan, np.float32)
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
        """The booster of a stacked model folder, checked before LightGBM reads it (:func:`load_booster`)."""
        return cls(load_booster(model_dir, STACK_FILE, read_config(model_dir)))

    def logits(self, model: Any, net_logit: np.ndarray, query_vecs: dict[str, np.ndarray],
               item_vecs: dict[str, np.ndarray], routing: tuple[np.ndarray, np.ndarray], groups: np.ndarray | None,
               reference: dict[str, np.ndarray] | None, lexical: np.ndarray | None,
               markets: np.ndarray | None, neighbourhood: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The booster's raw scores (n,) for pairs ``model`` (the MoE net) scored as ``net_logit``; ``neighbourhood``
        gives each routed expert's (n, 10) item-neighbourhood features when the model reads them."""
        n = net_logit.shape[0]
        dense = model.dense_gates(routing)
        groups = model._groups(dense.shape[0], n, groups)
        routed = head_experts(model.spec, dense)[groups]
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
            nbr = None
            if model.spec.item_neighbourhood:
                if neighbourhood is None or expert not in neighbourhood:
                    raise HetmoeError(f"expert '{expert}' is routed but its item-neighbourhood features were not passed to score()")
                nbr = neighbourhood[expert]
            cols.append(expert_columns(reference_stats(cos, ref), dot, nbr))
        market = model.market_index(markets, dense.shape[0])[groups]
        x = stack_matrix(cols, routed, lexical, net_logit.astype(np.float32), market, columns_per_expert(model.spec))
        return predict_raw(self.booster, x)
