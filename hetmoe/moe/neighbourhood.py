"""Per-pair item-neighbourhood features of one expert, read by the stacked head and LightGBM (not by the net).

From the item's stored neighbourhood (:mod:`hetmoe.store.neighbourhood`) and the query's own best items in its market
(the rows of its reference search), per pair:

- ``cos - item mean``, ``item mean``: the cosine against the item's mean best cosine (CSLS: a hub item's high
  cosines count for less), and that mean;
- ``cos - item last``, ``cos - item first``: the cosine against the item's ``top``-th and best neighbour;
- ``closer neighbours``: how many of the item's neighbours are closer to it than the query (the query's rank in the
  item's list: reciprocity), and ``rank in query``: the item's rank among the query's best items (``top`` if absent);
- ``shared``: the share of the item's neighbours among the query's best items (shared-neighbour similarity);
- ``item expansion``: the query's mean cosine with the item's EXPANSION best neighbours (database-side augmentation);
- ``query expansion``, ``wide query expansion``: the item's mean cosine with the query's EXPANSION and
  WIDE_EXPANSION best items (query expansion).

What they add is measured by bench/item_neighbourhood.py (trees over every expert, and over one pair of experts, with
and without them; bench/results/item_neighbourhood-*.json). While choosing them, on Shopee valid with LightGBM over
minilm + e5 + lexical, the six first tried (item mean, cos - mean and - last, shared neighbours, both 3-neighbour
expansions) took macro AUC from 0.921 to 0.931, and the four added after (best neighbour, both ranks, wide
expansion) to 0.935.

Every input is fixed by the query, the item and the catalog, so a pair scores the same alone or among others.
Missing neighbours (an item outside the table, a tiny market) give NaN, which the trees route natively.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hetmoe.store.neighbourhood import ItemNeighbours
from hetmoe.vectors import pair_cosines

NEIGHBOURHOOD_FEATURES = ("cos_minus_item_mean", "item_mean", "cos_minus_item_last", "cos_minus_item_first",
                          "closer_neighbours", "rank_in_query", "shared_neighbours", "item_expansion",
                          "query_expansion", "wide_query_expansion")
EXPANSION = 3  # neighbours averaged by the expansion features
WIDE_EXPANSION = 8


def _mean_cosines(units: np.ndarray, rows: np.ndarray, unit_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(n,) mean cosine of each unit vector with the vectors at its ``rows`` (n, EXPANSION); NaN where a row is -1."""
    n, width = rows.shape
    valid = rows >= 0
    sims = np.zeros((n, width), np.float32)
    if valid.any():
        flat = np.flatnonzero(valid.ravel())
        # each distinct row fetched once (a query's best rows repeat on every pair of its list); same values
        wanted, inverse = np.unique(rows.ravel()[flat], return_inverse=True)
        sims.ravel()[flat] = pair_cosines(units[flat // width], unit_of(wanted)[inverse.ravel()])
    with np.errstate(invalid="ignore"):
        return np.where(valid.all(axis=1), sims.sum(axis=1) / width, np.nan).astype(np.float32)


def neighbourhood_features(cos: np.ndarray, q_units: np.ndarray, d_units: np.ndarray, item_rows: np.ndarray,
                           query_top: np.ndarray, table: ItemNeighbours,
                           unit_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(n, 10) float32 :data:`NEIGHBOURHOOD_FEATURES` of n pairs.

    ``cos`` (n,) pair cosines; ``q_units`` / ``d_units`` (n, dim) the pairs' unit vectors; ``item_rows`` (n,) each
    item's row in ``table`` (aligned to the caller's catalog); ``query_top`` (n, top) the pair's query's best catalog
    rows (-1 padded); ``unit_of(rows)`` the unit vectors of catalog rows."""
    cos = np.asarray(cos, np.float32)
    n = cos.shape[0]
    out = np.full((n, len(NEIGHBOURHOOD_FEATURES)), np.nan, np.float32)
    if n == 0:
        return out
    mean, last, neighbours = table.mean[item_rows], table.last[item_rows], table.rows[item_rows]
    cosines, known = table.cosines[item_rows], ~np.isnan(mean)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = cos - mean, mean, cos - last, cos - cosines[:, 0]
    out[:, 4] = np.where(known, (cosines > cos[:, None]).sum(axis=1), np.nan)  # NaN cosines compare False
    at = query_top == np.asarray(item_rows)[:, None]
    out[:, 5] = np.where(at.any(axis=1), at.argmax(axis=1), query_top.shape[1])
    width = max(neighbours.shape[1], 1)
    hits = (neighbours[:, :, None] == query_top[:, None, :]) & (neighbours[:, :, None] >= 0)
    out[:, 6] = np.where(known, hits.any(axis=2).sum(axis=1) / width, np.nan)
    out[:, 7] = _mean_cosines(q_units, neighbours[:, :EXPANSION], unit_of)
    out[:, 8] = _mean_cosines(d_units, query_top[:, :EXPANSION], unit_of)
    out[:, 9] = _mean_cosines(d_units, query_top[:, :WIDE_EXPANSION], unit_of)
    return out
