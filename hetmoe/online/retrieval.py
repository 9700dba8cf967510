"""Candidate retrieval for search: each routed expert's FAISS index, restricted to the query's market, unioned.

Why rows, not ids: each index knows its store's row order; mapping those rows once at load time to the catalog's
order means a search never touches strings until the final top-k is named. Why the market filter: no judgment ever
pairs a query with another market's item, so those items only crowd out candidates (a FAISS ID selector keeps
exact/HNSW search inside the market instead of filtering afterwards).
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.online.catalog import ItemCatalog
from hetmoe.vectors import l2_normalize

if TYPE_CHECKING:
    from hetmoe.store.index import ItemIndex

POST_FILTER_OVERSAMPLE = 4  # for index kinds without a FAISS selector: fetch more, then keep the market's items


class Retriever:
    """Per expert: its loaded item index and the map from the index's rows to catalog rows."""

    def __init__(self, indexes: Mapping[str, ItemIndex], row_maps: Mapping[str, np.ndarray], catalog: ItemCatalog) -> None:
        self.indexes = dict(indexes)
        self.row_maps = dict(row_maps)
        self.catalog = catalog
        self._filters: dict[tuple[str, str], _MarketFilter] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, store_root: str | Path, experts: Sequence[str], catalog: ItemCatalog,
             items: Mapping[str, Any] | None = None) -> Retriever:
        """Load every expert's index (each refuses a store rebuilt since it was built) and align its rows; ``items``:
        the experts' item stores when the caller has them open already."""
        from hetmoe.store.index import ItemIndex

        indexes, row_maps = {}, {}
        for expert in experts:
            index = ItemIndex.load(store_root, expert, (items or {}).get(expert))
            rows, unknown = catalog.rows(index.ids)
            if unknown.size:
                raise HetmoeError(f"{expert}: the item index names {unknown.size} items missing from the store; "
                                  f"rebuild it with 'hetmoe index --expert {expert} --store {store_root}'")
            indexes[expert], row_maps[expert] = index, rows
        return cls(indexes, row_maps, catalog)

    def _filter(self, expert: str, market: str) -> _MarketFilter | None:
        """The expert's search restricted to ``market`` (built once per pair); None when the catalog has no markets
        or none for this one: then every item is a candidate."""
        mask = self.catalog.market_mask(market)
        if mask is None:
            return None
        key = (expert, market)
        with self._lock:
            if key not in self._filters:
                self._filters[key] = _MarketFilter.build(self.indexes[expert], mask[self.row_maps[expert]])
            return self._filters[key]

    def top_rows(self, expert: str, vector: np.ndarray, n: int, market: str | None) -> np.ndarray:
        """Catalog rows of the expert's top-n items of ``market`` for one query vector (fewer if there are fewer)."""
        index = self.indexes[expert]
        x = l2_normalize(np.array(vector, dtype=np.float32, ndmin=2), inplace=True)
        filt = self._filter(expert, market) if market is not None else None
        if filt is None:
            _, rows = index.index.search(x, min(n, len(index)))
            rows = rows[0][rows[0] >= 0]
        else:
            rows = filt.search(index.index, x, n)
        return self.row_maps[expert][rows]

    def candidates(self, query_vecs: Mapping[str, np.ndarray], n: int, market: str | None = None,
                   pool: Executor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Union of each expert's top-n within ``market``: (catalog rows (m,), seen (m, len(query_vecs)) bool, columns
        in ``query_vecs`` order). Experts search concurrently when a pool is given (FAISS releases the GIL)."""
        experts = list(query_vecs)
        if pool is not None and len(experts) > 1:
            futures = [pool.submit(self.top_rows, e, query_vecs[e], n, market) for e in experts[:-1]]
            found = [f.result() for f in futures] + [self.top_rows(experts[-1], query_vecs[experts[-1]], n, market)]
        else:
            found = [self.top_rows(e, query_vecs[e], n, market) for e in experts]
        if not found:
            return np.zeros(0, np.int64), np.zeros((0, 0), bool)
        rows, inverse = np.unique(np.concatenate(found), return_inverse=True)
        seen = np.zeros((rows.shape[0], len(experts)), dtype=bool)
        column = np.repeat(np.arange(len(experts)), [f.shape[0] for f in found])
        seen[inverse.ravel(), column] = True
        return rows, seen


class _MarketFilter:
    """One expert's search inside one market: a FAISS ID selector over the market's rows (in store order).

    Flat indexes search exactly within the selector. HNSW with a selector only sees the market's items among the
    nodes it visits, so a query whose neighbourhood belongs to other markets can come back short; IVF-PQ is
    searched unfiltered (oversampled) and filtered afterwards. Either way a short answer is completed by exact
    search over the index's own flat storage with the selector: correct, and O(n) only for those few queries.
    """

    def __init__(self, params: Any, exact: Any, exact_params: Any, mask: np.ndarray, keep_alive: tuple[Any, ...]) -> None:
        self.params, self.exact, self.exact_params = params, exact, exact_params
        self.mask, self.size = mask, int(mask.sum())
        self._keep_alive = keep_alive  # FAISS holds raw pointers to the bitmap and selector

    @classmethod
    def build(cls, index: ItemIndex, mask: np.ndarray) -> _MarketFilter:
        import faiss

        bits = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(mask.shape[0], faiss.swig_ptr(bits))
        exact_params = faiss.SearchParameters(sel=selector)
        raw = faiss.downcast_index(index.index)
        if index.kind == "flat":
            return cls(exact_params, None, None, mask, (bits, selector))
        if index.kind == "hnsw":
            ef = int(index.meta.get("params", {}).get("efSearch", 128))
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
            return cls(params, faiss.downcast_index(raw.storage), exact_params, mask, (bits, selector))
        refine = getattr(raw, "refine_index", None)
        exact = faiss.downcast_index(refine) if refine is not None else None
        return cls(None, exact, exact_params, mask, (bits, selector))

    def search(self, index: Any, x: np.ndarray, n: int) -> np.ndarray:
        """Store rows of the top-n items of the market (all of them if the market has fewer)."""
        wanted = min(n, self.size)
        if self.params is not None:
            _, rows = index.search(x, wanted, params=self.params)
            rows = rows[0][rows[0] >= 0]
        else:
            _, rows = index.search(x, min(n * POST_FILTER_OVERSAMPLE, index.ntotal))
            rows = rows[0][rows[0] >= 0]
            rows = rows[self.mask[rows]][:n]
        if rows.shape[0] < wanted and self.exact is not None:
            _, rows = self.exact.search(x, wanted, params=self.exact_params)
            rows = rows[0][rows[0] >= 0]
        return rows
