"""Candidate retrieval for search: each routed expert's FAISS index, restricted to the query's market, unioned.

Why rows, not ids: each index knows its store's row order; mapping those rows once at load time to the catalog's
order means a search never touches strings until the final top-k is named.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.online.catalog import ItemCatalog

if TYPE_CHECKING:
    from hetmoe.store.index import ItemIndex

logger = logging.getLogger(__name__)

POST_FILTER_OVERSAMPLE = 4  # for index kinds without a FAISS selector: fetch more, then keep the market's items


class Retriever:
    """Per expert: its loaded item index and the map from the index's rows to catalog rows."""

    def __init__(self, indexes: Mapping[str, ItemIndex], row_maps: Mapping[str, np.ndarray], catalog: ItemCatalog) -> None:
        self.indexes = dict(indexes)
        self.row_maps = dict(row_maps)
        self.catalog = catalog
        self._filters: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, store_root: str | Path, experts: Sequence[str], catalog: ItemCatalog) -> Retriever:
        """Load every expert's index (each refuses a store rebuilt since it was built) and align its rows."""
        from hetmoe.store.index import ItemIndex

        indexes, row_maps = {}, {}
        for expert in experts:
            index = ItemIndex.load(store_root, expert)
            rows, unknown = catalog.rows(index.ids)
            if unknown.size:
                raise HetmoeError(f"{expert}: the item index names {unknown.size} items missing from the store; "
                                  f"rebuild it with 'hetmoe index --expert {expert} --store {store_root}'")
            indexes[expert], row_maps[expert] = index, rows
        return cls(indexes, row_maps, catalog)

    def _filter(self, expert: str, market: str) -> tuple[Any, ...] | None:
        """(FAISS search parameters restricted to the market's items, or None to post-filter, keep-alive refs).

        None overall when the catalog has no markets or none for this one: then every item is a candidate.
        """
        mask = self.catalog.market_mask(market)
        if mask is None:
            return None
        key = (expert, market)
        with self._lock:
            if key not in self._filters:
                import faiss

                index = self.indexes[expert]
                in_store_order = mask[self.row_maps[expert]]
                bits = np.packbits(in_store_order, bitorder="little")
                selector = faiss.IDSelectorBitmap(in_store_order.shape[0], faiss.swig_ptr(bits))
                if index.kind == "flat":
                    params = faiss.SearchParameters(sel=selector)
                elif index.kind == "hnsw":
                    params = faiss.SearchParametersHNSW(sel=selector, efSearch=int(index.meta.get("params", {}).get("efSearch", 128)))
                else:  # IVF-PQ with refinement: nested parameters; filter the (oversampled) results instead
                    params = None
                self._filters[key] = (params, in_store_order, bits, selector)
            return self._filters[key]

    def _search(self, expert: str, vector: np.ndarray, n: int, market: str | None) -> np.ndarray:
        """Catalog rows of the expert's top-n items of ``market`` for one query vector (fewer if there are fewer)."""
        index = self.indexes[expert]
        x = np.array(vector, dtype=np.float32, ndmin=2)
        x /= max(float(np.linalg.norm(x)), 1e-12)
        filt = self._filter(expert, market) if market is not None else None
        if filt is not None and filt[0] is not None:
            _, rows = index.index.search(x, min(n, len(index)), params=filt[0])
        else:
            _, rows = index.index.search(x, min(n * (POST_FILTER_OVERSAMPLE if filt else 1), len(index)))
        rows = rows[0]
        rows = rows[rows >= 0]
        if filt is not None and filt[0] is None:
            rows = rows[filt[1][rows]][:n]
        return self.row_maps[expert][rows]

    def candidates(self, query_vecs: Mapping[str, np.ndarray], n: int, market: str | None = None,
                   pool: Executor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Union of each expert's top-n within ``market``: (catalog rows (m,), seen (m, len(query_vecs)) bool, columns
        in ``query_vecs`` order). Experts search concurrently when a pool is given (FAISS releases the GIL)."""
        experts = list(query_vecs)
        if pool is not None and len(experts) > 1:
            futures = [pool.submit(self._search, e, query_vecs[e], n, market) for e in experts[:-1]]
            found = [f.result() for f in futures] + [self._search(experts[-1], query_vecs[experts[-1]], n, market)]
        else:
            found = [self._search(e, query_vecs[e], n, market) for e in experts]
        if not found:
            return np.zeros(0, np.int64), np.zeros((0, 0), bool)
        rows, inverse = np.unique(np.concatenate(found), return_inverse=True)
        seen = np.zeros((rows.shape[0], len(experts)), dtype=bool)
        column = np.repeat(np.arange(len(experts)), [f.shape[0] for f in found])
        seen[inverse.ravel(), column] = True
        return rows, seen
