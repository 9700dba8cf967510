"""Reference rows: a query's ``top`` best cosines among its market's catalog items, per expert, and those items' rows.

The expert statistics compare a pair's cosine with this row (:func:`hetmoe.moe.reference.reference_stats`) and the
item-neighbourhood features compare the item with the query's best items, so every path must read the same row:
training, ``eval``, bulk scoring and the Scorer all ask this one object, which searches the expert's index of the
market (:mod:`hetmoe.store.market_index`: exact for small markets, HNSW above) and re-ranks the candidates by their
exact cosines. A query's row depends on its vector and the index alone, never on the other queries searched with it.
Rows are cached per (expert, query text, market).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hetmoe.online.cache import LRUCache

if TYPE_CHECKING:
    from hetmoe.pairs.context import FeatureContext


class ReferenceSearch:
    """Per expert and query, the (top,) reference cosines of the query's market and their catalog rows, cached."""

    def __init__(self, context: FeatureContext, top: int, cache_size: int) -> None:
        self.context, self.top = context, top
        self._cache: LRUCache[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = LRUCache(cache_size)

    def rows(self, expert: str, keys: Sequence[tuple[str, str]], units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, top) cosines and catalog rows of n queries ((text, market) keys, unit vectors (n, d)). A market with
        fewer than ``top`` items repeats its lowest cosine (rows -1), so every query has a full row."""
        out = np.empty((len(keys), self.top), np.float32)
        out_rows = np.empty((len(keys), self.top), np.int64)
        missing: dict[str, list[int]] = {}
        if self._cache.maxsize == 0:  # bulk: no per-query lookups, each market's queries searched together
            markets = np.array([m for _, m in keys], dtype=object)
            missing = {m: np.flatnonzero(markets == m).tolist() for m in np.unique(markets).tolist()}
        for i, (text, market) in enumerate(keys if self._cache.maxsize else ()):
            hit = self._cache.get((expert, text, market))
            if hit is None:
                missing.setdefault(market, []).append(i)
            else:
                out[i], out_rows[i] = hit
        for market, at in missing.items():
            index, catalog_rows = self.context.market_index(expert, "" if self.context.catalog.markets is None else market)
            found, local = index.nearest(units[at], lambda rows: self.context.unit_items(expert, catalog_rows[rows]),
                                         self.top)
            if np.isnan(found).any():  # a short market: its lowest cosine repeats (an empty one gives zeros)
                lowest = np.nan_to_num(found[np.arange(found.shape[0]), np.maximum((local >= 0).sum(1) - 1, 0)])
                found = np.where(np.isnan(found), lowest[:, None], found)
            out[at] = found
            out_rows[at] = np.where(local >= 0, catalog_rows[np.maximum(local, 0)] if catalog_rows.size else -1, -1)
            for i in at if self._cache.maxsize else ():
                self._cache.put((expert, keys[i][0], market), (out[i].copy(), out_rows[i].copy()))
        return out, out_rows

    def clear(self) -> None:
        self._cache.clear()
