"""Request-independent per-query statistics: a pair's cosine against the query's own top cosines in its market.

Why: the z-score and rank of a cosine *within the request's candidate list* make a pair's score depend on its
companions (one item scored 0.06 alone, 0.42 among 60), so paginated clients get scores they cannot compare. The
reference set here is fixed by the query alone: its ``top`` best cosines over every catalog item of its market, the
same set in training (exact search over the store) and online (the expert's index, or exact search without one).
Per pair and expert the statistics are ``[cosine, z-score against the reference, cosine - best reference cosine]``.
"""
from __future__ import annotations

import numpy as np

from hetmoe.vectors import pair_cosines

REF_TOP = 16  # reference cosines per query: about one judged candidate list (Home Depot lists hold ~9, Shopee ~20)
Z_CLIP = 10.0  # a near-constant reference (tiny spread) must not blow the z-score up
STD_FLOOR = 1e-3
QUERY_BLOCK = 2048  # queries per matrix product: bounds the (block, items) cosine matrix to a few hundred MB


def top_cosines(queries: np.ndarray, items: np.ndarray, top: int = REF_TOP) -> np.ndarray:
    """(n_q, top) float32: each unit query's ``top`` highest cosines with the unit ``items``, best first.

    A catalog with fewer than ``top`` items repeats its lowest cosine, so every query has a full reference row.
    """
    return top_matches(queries, items, top)[0]


def top_matches(queries: np.ndarray, items: np.ndarray, top: int = REF_TOP) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_cosines` and the rows of ``items`` they belong to ((n_q, top) int64, -1 past a short catalog)."""
    n_q = queries.shape[0]
    out = np.empty((n_q, top), np.float32)
    found = np.full((n_q, top), -1, np.int64)
    if items.shape[0] == 0:
        out.fill(0.0)
        return out, found
    keep = min(top, items.shape[0])
    for lo in range(0, n_q, QUERY_BLOCK):
        block = queries[lo : lo + QUERY_BLOCK]
        sims = block @ items.T
        if keep < sims.shape[1]:
            rows = np.argpartition(sims, sims.shape[1] - keep, axis=1)[:, -keep:]
        else:
            rows = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
        # The chosen items' cosines again, pair by pair: a matrix product rounds differently with the number of
        # queries in it (training searches blocks, the Scorer one query), and a judged pair's cosine is computed
        # pair by pair too, so the query's best item gets a gap of exactly 0 on every path.
        exact = pair_cosines(np.repeat(block, keep, axis=0), items[rows.ravel()]).reshape(rows.shape)
        order = np.lexsort((rows, -exact), axis=1)  # best first; equal cosines by row, the same on every path
        best = np.take_along_axis(exact, order, axis=1)
        out[lo : lo + best.shape[0], :keep] = best
        found[lo : lo + best.shape[0], :keep] = np.take_along_axis(rows, order, axis=1)
        if keep < top:
            out[lo : lo + best.shape[0], keep:] = best[:, -1:]
    return out, found


def market_top_cosines(
    queries: np.ndarray, q_market: np.ndarray, items: np.ndarray, i_market: np.ndarray, top: int = REF_TOP
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_matches` with each query searched only among items of its own market (labels compared as str),
    rows indexing ``items``; a query whose market has no items is searched over the whole catalog."""
    q_market, i_market = np.asarray(q_market).astype(str), np.asarray(i_market).astype(str)
    out = np.empty((queries.shape[0], top), np.float32)
    found = np.empty((queries.shape[0], top), np.int64)
    for market in np.unique(q_market):
        rows = np.flatnonzero(q_market == market)
        pool = np.flatnonzero(i_market == market)
        pool = pool if pool.size else np.arange(items.shape[0])
        out[rows], local = top_matches(queries[rows], items[pool], top)
        found[rows] = np.where(local >= 0, pool[np.maximum(local, 0)], -1)
    return out, found


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
