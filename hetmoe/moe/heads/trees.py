"""The tree heads' shared input: per expert its statistics and item-neighbourhood columns, the lexical block, then
head-specific columns (the stacked head's net logit) and the market index (categorical, last).

Why one assembly: training (:mod:`hetmoe.moe.stack`, :mod:`hetmoe.moe.lgbm`) and serving used to build these matrices
in three places, and the dot product column was computed in three ways.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.pairs.blocks.neighbourhood import NEIGHBOURHOOD_FEATURES
from hetmoe.pairs.blocks.stats import STATS_COLUMNS

if TYPE_CHECKING:
    from hetmoe.pairs.blocks.base import FeatureBlock
    from hetmoe.pairs.features import PairFeatures

# Below this many pairs the booster predicts on the calling thread: starting LightGBM's OpenMP team cost 1-8 ms per
# call of 100 pairs (8 ms while other work held the cores) against 0.17 ms on one thread, with the same scores.
SERIAL_PREDICT_PAIRS = 4096


def tree_blocks(pair_stats: str, lexical_store: str, neighbourhood: bool) -> dict[str, FeatureBlock]:
    from hetmoe.pairs.blocks import make_block

    blocks = {"stats": make_block("stats", {"pair_stats": pair_stats})}
    if neighbourhood:
        blocks["neighbourhood"] = make_block("neighbourhood")
    if lexical_store:
        blocks["lexical"] = make_block("lexical", {"store": lexical_store})
    return blocks


def expert_width(neighbourhood: bool) -> int:
    """Tree columns per expert."""
    return len(STATS_COLUMNS) + (len(NEIGHBOURHOOD_FEATURES) if neighbourhood else 0)


def tree_matrix(feats: PairFeatures, experts: list[str], read: np.ndarray | None, neighbourhood: bool,
                lexical: bool, extra: list[np.ndarray], market: np.ndarray) -> np.ndarray:
    """(n, width N + F + len(extra) + 1) float32: per expert its columns (NaN where ``read`` (n, N) is False or the
    query lacks its vector), the lexical block, ``extra`` columns and the market index."""
    n, width = len(feats), expert_width(neighbourhood)
    blocks = []
    for i, expert in enumerate(experts):
        block = np.full((n, width), np.nan, np.float32)
        rows = slice(None) if read is None else read[:, i]
        if read is None or rows.any():
            cols = [feats.block("stats", expert)] + ([feats.block("neighbourhood", expert)] if neighbourhood else [])
            block[rows] = np.concatenate(cols, axis=1)[rows]
        blocks.append(block)
    if lexical:
        blocks.append(feats.block("lexical"))
    blocks.append(np.column_stack([*extra, market]).astype(np.float32))
    return np.concatenate(blocks, axis=1)


def predict_raw(booster: Any, x: np.ndarray) -> np.ndarray:
    """The booster's raw scores, on one thread for small inputs (same scores either way)."""
    threads = {"num_threads": 1} if x.shape[0] < SERIAL_PREDICT_PAIRS else {}
    return booster.predict(x, raw_score=True, **threads)
