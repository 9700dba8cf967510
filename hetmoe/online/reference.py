"""Online reference cosines: a query's ``top`` best cosines among its market's items, per routed expert.

The model's per-pair statistics compare a cosine with this reference row (:mod:`hetmoe.moe.reference`), so it must
be the same row training used: exact search over the market's items, whose unit vectors are kept in float32 once
per (expert, market) (about 10 ms per expert and uncached query for 55k 384-d items on one core here). With
``reference="index"`` the candidates come from the expert's FAISS index instead and their cosines are recomputed
exactly from the stored vectors: approximate (see REFERENCE_MODES). Rows are cached per (expert, query text, market),
with the catalog rows of the items they belong to (the item-neighbourhood features compare them with an item's own).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from hetmoe.moe.reference import top_matches
from hetmoe.online.cache import LRUCache
from hetmoe.online.catalog import ItemCatalog
from hetmoe.online.retrieval import Retriever
from hetmoe.vectors import l2_normalize

logger = logging.getLogger(__name__)
EXACT_WARN_ITEMS = 500_000  # beyond this an exact market scan per uncached query costs tens of ms: build an index
# Where a query's reference row comes from. "exact" (default): every item of its market, as in training, so served
# scores equal eval's. "index": the expert's FAISS index (OVERSAMPLE x top candidates, cosines recomputed exactly):
# faster on big catalogs but approximate; on multimarket's Home Depot queries a recall-tuned HNSW missed part of the
# true top-16 for 12-14% of queries (their scores moved by up to 0.07), real queries lying far from every item.
REFERENCE_MODES = ("exact", "index")
OVERSAMPLE = 4


class ReferenceCosines:
    """Per expert and query, the (top,) reference cosines of the query's market, cached."""

    def __init__(self, catalog: ItemCatalog, retriever: Retriever | None, top: int, cache_size: int) -> None:
        self.catalog, self.retriever, self.top = catalog, retriever, top
        self._cache: LRUCache[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = LRUCache(cache_size)
        self._pools: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def many(self, expert: str, keys: Sequence[tuple[str, str]], query_vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, top) cosines and catalog rows of n queries ((text, market) keys, raw vectors), cached; the uncached ones
        of a market are searched in one matrix product (bulk scoring), with the same bits as one at a time
        (:func:`top_matches`)."""
        out = np.empty((len(keys), self.top), np.float32)
        out_rows = np.empty((len(keys), self.top), np.int64)
        missing: dict[str, list[int]] = {}
        for i, (text, market) in enumerate(keys):
            hit = self._cache.get((expert, text, market))
            if hit is None:
                missing.setdefault(market, []).append(i)
            else:
                out[i], out_rows[i] = hit
        indexed = self.retriever is not None and expert in self.retriever.indexes
        for market, rows in missing.items():
            units = l2_normalize(np.asarray(query_vecs[rows], np.float32))
            if indexed:
                found, where = (np.stack(parts) for parts in zip(*(self._from_index(expert, u, market) for u in units)))
            else:
                catalog_rows, pool = self._pool(expert, market)
                found, local = top_matches(units, pool, self.top)
                where = _catalog_rows(catalog_rows, local)
            found.setflags(write=False)
            where.setflags(write=False)
            for i, row, row_where in zip(rows, found, where):
                self._cache.put((expert, keys[i][0], market), (row, row_where))
                out[i], out_rows[i] = row, row_where
        return out, out_rows

    def _from_index(self, expert: str, unit: np.ndarray, market: str) -> tuple[np.ndarray, np.ndarray]:
        """One unit query's row from the index's OVERSAMPLE x top candidates, their cosines recomputed exactly."""
        assert self.retriever is not None
        rows = self.retriever.top_rows(expert, unit, self.top * OVERSAMPLE, market)
        found, local = top_matches(unit[None], l2_normalize(self.catalog.take(expert, rows)), self.top)
        return found[0], _catalog_rows(rows, local)[0]

    def _pool(self, expert: str, market: str) -> tuple[np.ndarray, np.ndarray]:
        """The market's catalog rows and unit item vectors in float32 (all items when the catalog has no markets or
        none of this one)."""
        key = (expert, market)
        with self._lock:
            if key not in self._pools:
                mask = self.catalog.market_mask(market)
                rows = np.flatnonzero(mask) if mask is not None else np.arange(len(self.catalog))
                if rows.shape[0] > EXACT_WARN_ITEMS:
                    logger.warning("%s: exact reference search over %d items per query; build its index with "
                                   "'hetmoe index --expert %s'", expert, rows.shape[0], expert)
                self._pools[key] = (rows, l2_normalize(self.catalog.take(expert, rows)))
            return self._pools[key]

    def clear(self) -> None:
        self._cache.clear()


def _catalog_rows(pool_rows: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Rows of a searched pool (``local``, -1 padded) as catalog rows (``pool_rows`` maps one to the other)."""
    if pool_rows.size == 0:
        return np.full(local.shape, -1, np.int64)
    return np.where(local >= 0, pool_rows[np.maximum(local, 0)], -1)
