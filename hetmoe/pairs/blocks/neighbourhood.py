"""Item-neighbourhood features of one expert, read by the stacked head and LightGBM (not by the net).

From the item's stored neighbourhood (:mod:`hetmoe.store.neighbourhood`) and the query's own best items in its market
(the rows of its reference search), per pair:

- ``cos - item mean``, ``item mean``: the cosine against the item's mean best cosine (CSLS: a hub item's high
  cosines count for less), and that mean;
- ``cos - item last``, ``cos - item first``: the cosine against the item's ``top``-th and best neighbour;
- ``closer neighbours``: how many of the item's neighbours are closer to it than the query (the query's rank in the
  item's list: reciprocity), and ``rank in query``: the item's rank among the query's best items (``top`` if absent);
- ``shared``: the share of the item's neighbours among the query's best items (shared-neighbour similarity);
- ``item expansion``: the query's mean cosine with the item's EXPANSION best neighbours (database-side augmentation),
  computed as its cosine with their stored mean (the item's expansion centre);
- ``query expansion``, ``wide query expansion``: the item's mean cosine with the query's EXPANSION and
  WIDE_EXPANSION best items (query expansion), computed as its cosine with their mean vector.

What they add is measured by bench/item_neighbourhood.py (trees over every expert, and over one pair of experts, with
and without them; bench/results/item_neighbourhood-*.json). While choosing them, on Shopee valid with LightGBM over
minilm + e5 + lexical, the six first tried (item mean, cos - mean and - last, shared neighbours, both 3-neighbour
expansions) took macro AUC from 0.921 to 0.931, and the four added after (best neighbour, both ranks, wide
expansion) to 0.935.

Every input is fixed by the query, the item and the catalog, so a pair scores the same alone or among others.
Missing neighbours (an item outside the table, a tiny market) give NaN, which the trees route natively. Costs: per
catalog the neighbour table (:mod:`hetmoe.store.neighbourhood`); per query its reference row (shared with the
expert statistics) and two expansion centres; per pair a few gathers and EXPANSION dot products.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from hetmoe.pairs.blocks.base import FeatureBlock, per_expert_rows, register
from hetmoe.store.market_index import EXPANSION
from hetmoe.store.neighbourhood import ItemNeighbours
from hetmoe.vectors import pair_cosines

if TYPE_CHECKING:
    from hetmoe.pairs.features import PairFeatures

NEIGHBOURHOOD_FEATURES = ("cos_minus_item_mean", "item_mean", "cos_minus_item_last", "cos_minus_item_first",
                          "closer_neighbours", "rank_in_query", "shared_neighbours", "item_expansion",
                          "query_expansion", "wide_query_expansion")
WIDE_EXPANSION = 8  # the query's best items the wide query expansion averages (EXPANSION: the narrow one)


def _units(rows: np.ndarray, unit_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(len(rows), dim) unit vectors of the catalog ``rows`` (1-d), each distinct row fetched once."""
    wanted, at = np.unique(rows, return_inverse=True)
    return unit_of(wanted)[at.ravel()]


def _query_centres(top: np.ndarray, groups: np.ndarray, unit_of: Callable[[np.ndarray], np.ndarray],
                   dim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each expansion width (EXPANSION, WIDE_EXPANSION): (the mean of each query row's first ``width`` best
    catalog vectors (n_q, dim), whether it has that many), from one gather of the rows the pairs' queries use."""
    n_q = top.shape[0]
    used = np.zeros(n_q, bool)
    used[groups] = True
    wide = top[:, :WIDE_EXPANSION]
    out = []
    have = used & (wide >= 0).any(axis=1)
    units = np.zeros((n_q, wide.shape[1], dim), np.float32)
    if have.any():
        rows = wide[have]
        valid = rows >= 0
        units[np.flatnonzero(have)[:, None].repeat(rows.shape[1], 1)[valid], np.nonzero(valid)[1]] = _units(rows[valid], unit_of)
    for width in (EXPANSION, WIDE_EXPANSION):
        full = have & (top[:, :width] >= 0).all(axis=1)
        out.append((units[:, :width].sum(axis=1) / min(width, top.shape[1]), full))
    return out


def _among(rows: np.ndarray, groups: np.ndarray, query_top: np.ndarray) -> np.ndarray:
    """(n, k) bool: whether each of a pair's ``rows`` is among its query's best rows ``query_top[groups]`` (-1 never
    is): one search in the sorted (query, row) keys, not a k x top comparison per pair."""
    span = int(max(rows.max(initial=0), query_top.max(initial=0))) + 2
    keys = np.unique((np.arange(query_top.shape[0])[:, None] * span + query_top + 1)[query_top >= 0])
    wanted = groups[:, None] * span + rows + 1
    if keys.size == 0:
        return np.zeros(rows.shape, bool)
    at = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    return (keys[at] == wanted) & (rows >= 0)


def neighbourhood_features(cos: np.ndarray, q_units: np.ndarray, d_units: np.ndarray, item_rows: np.ndarray,
                           query_top: np.ndarray, groups: np.ndarray, table: ItemNeighbours,
                           unit_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(n, 10) float32 :data:`NEIGHBOURHOOD_FEATURES` of n pairs.

    ``cos`` (n,) pair cosines; ``q_units`` (n_q, dim) the queries' unit vectors and ``query_top`` (n_q, top) their
    best catalog rows (-1 padded); ``groups`` (n,) each pair's query row; ``d_units`` (n, dim) the pairs' item unit
    vectors and ``item_rows`` (n,) their rows in ``table`` (aligned to the caller's catalog); ``unit_of(rows)`` the
    unit vectors of catalog rows."""
    cos = np.asarray(cos, np.float32)
    n = cos.shape[0]
    out = np.full((n, len(NEIGHBOURHOOD_FEATURES)), np.nan, np.float32)
    if n == 0:
        return out
    groups = np.asarray(groups, np.int64)
    mean, last, neighbours = table.mean[item_rows], table.last[item_rows], table.rows[item_rows]
    cosines, known = table.cosines[item_rows], ~np.isnan(mean)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = cos - mean, mean, cos - last, cos - cosines[:, 0]
    out[:, 4] = np.where(known, (cosines > cos[:, None]).sum(axis=1), np.nan)  # NaN cosines compare False
    pair_top = query_top[groups]
    at = pair_top == np.asarray(item_rows)[:, None]
    out[:, 5] = np.where(at.any(axis=1), at.argmax(axis=1), query_top.shape[1])
    width = max(neighbours.shape[1], 1)
    out[:, 6] = np.where(known, _among(neighbours, groups, query_top).sum(axis=1) / width, np.nan)
    centres = table.centres[item_rows].astype(np.float32)  # NaN rows (fewer neighbours) stay NaN
    out[:, 7] = pair_cosines(q_units[groups], centres)
    for column, (centre, full) in zip((8, 9), _query_centres(query_top, groups, unit_of, d_units.shape[1])):
        out[:, column] = np.where(full[groups], pair_cosines(d_units, centre[groups]), np.nan)
    return out


@register
class ItemNeighbourhood(FeatureBlock):
    name = "neighbourhood"
    per_expert = True
    needs = ("vectors", "reference", "neighbours")
    columns = NEIGHBOURHOOD_FEATURES

    def compute(self, feats: PairFeatures, expert: str | None) -> np.ndarray:
        assert expert is not None
        out, at = per_expert_rows(feats, expert, len(self.columns))
        if not at.any():
            return out
        ctx, qi, di = feats.context, feats.batch.qi[at], feats.batch.di[at]
        out[at] = neighbourhood_features(feats.cosines(expert)[at], feats.q_units(expert), feats.d_units(expert)[di],
                                         feats.batch.item_rows[di], feats.reference(expert)[1], qi,
                                         ctx.neighbours(expert), lambda rows: ctx.unit_items(expert, rows))
        return out
