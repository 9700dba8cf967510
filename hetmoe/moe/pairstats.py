"""Per-query statistics of an expert's cosine: the same vectorised code for training features and online scoring.

Why: an expert's raw cosine is not comparable across queries (short queries score everything high); its z-score and
rank within the query's candidate list are. Groups are integer query ids; no Python loop over groups.
"""
from __future__ import annotations

import numpy as np

from hetmoe.moe.spec import N_STATS


def group_stats(cos: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(n, 3) float32: cosine, z-score of the cosine within its group, average-rank fraction in [0, 1] within its group.

    A group of one item gets z = 0 and rank 0.5; tied cosines share their average rank.
    """
    cos = np.asarray(cos, dtype=np.float64)
    n = cos.shape[0]
    out = np.empty((n, N_STATS), dtype=np.float32)
    if n == 0:
        return out
    _, inv = np.unique(np.asarray(groups), return_inverse=True)
    inv = inv.ravel()
    size = np.bincount(inv).astype(np.float64)
    mean = np.bincount(inv, weights=cos) / size
    var = np.maximum(np.bincount(inv, weights=cos * cos) / size - mean * mean, 0.0)
    std = np.sqrt(var)
    z = np.where(std[inv] > 1e-6, (cos - mean[inv]) / np.maximum(std[inv], 1e-6), 0.0)
    # Cosines lie in [-1, 1]; shifting each group by 4 keeps groups apart in one sorted key.
    key = inv * 4.0 + cos
    sorted_key = np.sort(key)
    lo = np.searchsorted(sorted_key, key, side="left")
    hi = np.searchsorted(sorted_key, key, side="right")
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    rank = (lo + hi - 1) / 2.0 - start[inv]
    frac = np.where(size[inv] > 1, rank / np.maximum(size[inv] - 1, 1), 0.5)
    out[:, 0] = cos
    out[:, 1] = z
    out[:, 2] = frac
    return out
