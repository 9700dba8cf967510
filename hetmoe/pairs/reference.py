"""Reference rows: a query's ``top`` best cosines among its market's catalog items, per expert, and those items' rows.

The expert statistics compare a pair's cosine with this row (:func:`hetmoe.moe.reference.reference_stats`) and the
item-neighbourhood features compare the item with the query's best items, so every path must read the same row:
training, ``eval``, bulk scoring and the Scorer all ask this one object. Rows are cached per (expert, query text,
market); the uncached queries of a market are searched in one matrix product, with the same bits as one at a time
(:func:`hetmoe.moe.reference.top_matches`).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from hetmoe.moe.reference import top_matches
from hetmoe.online.cache import LRUCache
from hetmoe.online.catalog import ItemCatalog
from hetmoe.vectors import l2_normalize


class ReferenceSearch:
    """Per expert and query, the (top,) reference cosines of the query's market and their catalog rows, cached."""

    def __init__(self, catalog: ItemCatalog, top: int, cache_size: int) -> None:
        self.catalog, self.top = catalog, top
        self._cache: LRUCache[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = LRUCache(cache_size)
        self._pools: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def rows(self, expert: str, keys: Sequence[tuple[str, str]], units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, top) cosines and catalog rows of n queries ((text, market) keys, unit vectors (n, d))."""
        out = np.empty((len(keys), self.top), np.float32)
        out_rows = np.empty((len(keys), self.top), np.int64)
        missing: dict[str, list[int]] = {}
        for i, (text, market) in enumerate(keys):
            hit = self._cache.get((expert, text, market))
            if hit is None:
                missing.setdefault(market, []).append(i)
            else:
                out[i], out_rows[i] = hit
        for market, at in missing.items():
            catalog_rows, pool = self._pool(expert, market)
            found, local = top_matches(units[at], pool, self.top)
            where = _catalog_rows(catalog_rows, local)
            out[at], out_rows[at] = found, where
            for i in at:
                self._cache.put((expert, keys[i][0], market), (out[i].copy(), out_rows[i].copy()))
        return out, out_rows

    def _pool(self, expert: str, market: str) -> tuple[np.ndarray, np.ndarray]:
        """The market's catalog rows and unit item vectors in float32 (all items when the catalog has no markets or
        none of this one)."""
        key = (expert, market)
        with self._lock:
            if key not in self._pools:
                mask = self.catalog.market_mask(market)
                rows = np.flatnonzero(mask) if mask is not None else np.arange(len(self.catalog))
                self._pools[key] = (rows, l2_normalize(self.catalog.take(expert, rows)))
            return self._pools[key]

    def clear(self) -> None:
        self._cache.clear()


def _catalog_rows(pool_rows: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Rows of a searched pool (``local``, -1 padded) as catalog rows (``pool_rows`` maps one to the other)."""
    if pool_rows.size == 0:
        return np.full(local.shape, -1, np.int64)
    return np.where(local >= 0, pool_rows[np.maximum(local, 0)], -1)
