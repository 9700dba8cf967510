"""Request-independent per-query statistics: a pair's cosine against the query's own top cosines in its market.

Why: the z-score and rank of a cosine *within the request's candidate list* make a pair's score depend on its
companions (one item scored 0.06 alone, 0.42 among 60), so paginated clients get scores they cannot compare. The
reference set here is fixed by the query alone: its ``top`` best cosines over the catalog items of its market, found
by the expert's market index (:mod:`hetmoe.pairs.reference`), the same row on every path.
Per pair and expert the statistics are ``[cosine, z-score against the reference, cosine - best reference cosine]``.
"""
from __future__ import annotations

import numpy as np

REF_TOP = 16  # reference cosines per query: about one judged candidate list (Home Depot lists hold ~9, Shopee ~20)
Z_CLIP = 10.0  # a near-constant reference (tiny spread) must not blow the z-score up
STD_FLOOR = 1e-3


def reference_stats(cos: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(n, 3) float32 ``[cos, z, gap]`` of each pair's cosine against its query's reference row (n, top)."""
    cos = np.asarray(cos, dtype=np.float32)
    ref = np.asarray(reference, dtype=np.float32)
    mean, std = ref.mean(1), np.maximum(ref.std(1), STD_FLOOR)
    out = np.empty((cos.shape[0], 3), np.float32)
    out[:, 0] = cos
    out[:, 1] = np.clip((cos - mean) / std, -Z_CLIP, Z_CLIP)
    out[:, 2] = cos - ref[:, 0]
    return out
