"""The tree heads' shared input: per expert its statistics and item-neighbourhood columns, the lexical block, then
head-specific columns (the stacked head's net logit) and the market index (categorical, last).

Why one assembly: training (:mod:`hetmoe.moe.stack`, :mod:`hetmoe.moe.lgbm`) and serving used to build these matrices
in three places, and the dot product column was computed in three ways.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np


if TYPE_CHECKING:
    from hetmoe.pairs.blocks.base import FeatureBlock
    from hetmoe.pairs.features import PairFeatures

# Below this many pairs the booster predicts on the calling thread: starting LightGBM's OpenMP team cost 1-8 ms per
# call of 100 pairs (8 ms while other work held the cores) against 0.17 ms on one thread, with the same scores.
SERIAL_PREDICT_PAIRS = 4096


def tree_blocks(pair_stats: str, lexical_store: str, neighbourhood: bool,
                extra: Sequence[str] = ()) -> dict[str, FeatureBlock]:
    """The blocks the tree heads read, in column order: the expert statistics, the item neighbourhoods, the lexical
    block, then ``extra`` registered blocks by name (``ModelSpec.extra_blocks``: a new block needs no other code)."""
    from hetmoe.pairs.blocks import make_block

    blocks = {"stats": make_block("stats", {"pair_stats": pair_stats})}
    if neighbourhood:
        blocks["neighbourhood"] = make_block("neighbourhood")
    if lexical_store:
        blocks["lexical"] = make_block("lexical", {"store": lexical_store})
    blocks.update({name: make_block(name) for name in extra})
    return blocks


def tree_matrix(feats: PairFeatures, experts: list[str], read: np.ndarray | None, blocks: Sequence[str],
                extra: list[np.ndarray], market: np.ndarray) -> np.ndarray:
    """(n, columns) float32: per expert the columns of every per-expert block in ``blocks`` (NaN where ``read``
    (n, N) is False or the query lacks its vector), then every per-pair block's, ``extra`` columns and the market
    index (categorical, last)."""
    per = [b for b in blocks if feats.blocks[b].per_expert]
    n, width = len(feats), sum(len(feats.blocks[b].columns) for b in per)
    out = []
    for i, expert in enumerate(experts):
        block = np.full((n, width), np.nan, np.float32)
        rows = slice(None) if read is None else read[:, i]
        if read is None or rows.any():
            block[rows] = np.concatenate([feats.block(b, expert) for b in per], axis=1)[rows]
        out.append(block)
    out += [feats.block(b) for b in blocks if b not in per]
    out.append(np.column_stack([*extra, market]).astype(np.float32))
    return np.concatenate(out, axis=1)


def predict_raw(booster: Any, x: np.ndarray) -> np.ndarray:
    """The booster's raw scores, on one thread for small inputs (same scores either way)."""
    threads = {"num_threads": 1} if x.shape[0] < SERIAL_PREDICT_PAIRS else {}
    return booster.predict(x, raw_score=True, **threads)
