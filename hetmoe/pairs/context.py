"""``FeatureContext``: everything the feature blocks read from the catalog, loaded once per process and shared by
every batch: item vectors and markets (:class:`~hetmoe.online.catalog.ItemCatalog`), the reference search, the item
neighbourhood tables and the lexical expert, with the per-query caches the online path needs.

Why one object: training, ``eval``, bulk scoring and the Scorer used to assemble these four sources in three
different ways (a reference row in float32 per market here, a neighbourhood table aligned there); built once, the same
bits feed every path.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.online.cache import LRUCache
from hetmoe.online.catalog import ItemCatalog
from hetmoe.pairs.reference import ReferenceSearch

if TYPE_CHECKING:
    from hetmoe.lexical.model import LexicalModel
    from hetmoe.lexical.query import QueryBatch
    from hetmoe.store.market_index import MarketIndex
    from hetmoe.store.neighbourhood import ItemNeighbours

log = logging.getLogger(__name__)


class FeatureContext:
    """The catalog side of every pair feature, with bounded per-query caches (``cache_size`` 0: none)."""

    def __init__(self, catalog: ItemCatalog, store_root: str | Path | None, ref_top: int = 16,
                 lexical: LexicalModel | None = None, lexical_name: str = "", cache_size: int = 0) -> None:
        self.catalog = catalog
        self.store_root = Path(store_root) if store_root is not None else None
        self.reference = ReferenceSearch(self, ref_top, cache_size)
        self.lexical = lexical
        self.lexical_name = lexical_name
        self._lexical_rows = _lexical_rows(lexical, catalog, lexical_name) if lexical is not None else None
        self.lexical_cache: LRUCache[str, QueryBatch] = LRUCache(cache_size)  # query text -> its lexical side
        self._neighbours: dict[str, ItemNeighbours] = {}
        self._indexes: dict[tuple[str, str], tuple[MarketIndex, np.ndarray]] = {}
        self._lock = threading.RLock()  # one build per (expert, market), whichever thread asks first

    def lexical_rows(self, rows: np.ndarray) -> np.ndarray:
        """The lexical expert's rows of catalog ``rows``."""
        if self._lexical_rows is None:
            raise HetmoeError("the model reads lexical features, but no lexical expert was loaded with the catalog")
        return self._lexical_rows[rows]

    def lexical_queries(self, texts: list[str]) -> QueryBatch:
        """The lexical expert's query side of ``texts``; one text is kept in the LRU (a served query repeats), a
        batch of several is prepared in one pass."""
        assert self.lexical is not None
        if len(texts) != 1:
            return self.lexical.prepare_queries(texts)
        batch = self.lexical_cache.get(texts[0])
        if batch is None:
            batch = self.lexical.prepare_queries(texts)
            self.lexical_cache.put(texts[0], batch)
        return batch

    def neighbours(self, expert: str) -> ItemNeighbours:
        """``expert``'s item-neighbourhood table over the catalog (items of no market have none), from each market's
        index (read from the store, grown or built there; built in memory without a store)."""
        from hetmoe.store.neighbourhood import ItemNeighbours

        table = self._neighbours.get(expert)
        if table is None:
            if self.catalog.markets is None:
                raise HetmoeError("the model reads item neighbourhoods, which are per market: load it with its dataset "
                                  "(Scorer.load(model_dir, data_dir=...))")
            markets = sorted(set(self.catalog.markets.tolist()) - {""})
            parts = [self.market_index(expert, m) for m in markets]
            dim = self.catalog.vectors[expert].shape[1]
            table = self._neighbours[expert] = ItemNeighbours.of_markets(len(self.catalog), dim, parts)
        return table

    def market_index(self, expert: str, market: str) -> tuple[MarketIndex, np.ndarray]:
        """``expert``'s index over ``market``'s items and the catalog row of each index row (a catalog without
        markets is one market, "")."""
        key = (expert, market)
        with self._lock:
            if key not in self._indexes:
                self._indexes[key] = self._load_index(expert, market)
            return self._indexes[key]

    def _load_index(self, expert: str, market: str) -> tuple[MarketIndex, np.ndarray]:
        from hetmoe.store.neighbourhood import market_index

        if self.catalog.markets is None:
            rows = np.arange(len(self.catalog))
        else:
            mask = self.catalog.market_mask(market)
            if mask is None:
                raise HetmoeError(f"market '{market}' has no items in the catalog: a query of it has nothing to be "
                                  "compared with; embed its items (hetmoe embed --append) and load the dataset naming them")
            rows = np.flatnonzero(mask)
        view = None
        if self.store_root is not None:
            from hetmoe.store.zarr_store import open_expert

            view = open_expert(self.store_root, expert).items.manifest
        index = market_index(self.store_root, expert, market, self.catalog.ids[rows],
                             lambda ids: self.unit_items(expert, self.catalog.rows(ids)[0]),
                             self.catalog.vectors[expert].shape[1], view)
        return index, self.catalog.rows(index.ids)[0]

    def prepare(self, experts: list[str], needs: set[str]) -> None:
        """Read (or build) now what blocks needing ``needs`` will search, so that no request pays for it: every
        market's index of each expert, and its neighbourhood table."""
        if needs & {"reference", "neighbours"}:
            markets = [""] if self.catalog.markets is None else sorted(set(self.catalog.markets.tolist()) - {""})
            for expert in experts:
                for market in markets:
                    self.market_index(expert, market)
                if "neighbours" in needs:
                    self.neighbours(expert)

    def index_summary(self) -> dict[str, dict[str, Any]]:
        """Per loaded (expert, market) index: its size, kind and the seconds this process spent building it."""
        return {f"{e}/{m}": {"items": len(index), "kind": "exact" if index.exact else "hnsw",
                             **{f"{k}_seconds": round(v, 3) for k, v in index.seconds.items()}}
                for (e, m), (index, _) in self._indexes.items()}

    def unit_items(self, expert: str, rows: np.ndarray) -> np.ndarray:
        """Unit float32 vectors of catalog ``rows`` (the stored float16 vectors, normalised)."""
        from hetmoe.vectors import l2_normalize

        return l2_normalize(self.catalog.take(expert, rows))

    def clear_caches(self) -> None:
        self.reference.clear()
        self.lexical_cache.clear()


def _lexical_rows(lexical: Any, catalog: ItemCatalog, name: str) -> np.ndarray:
    """Each catalog item's row in the lexical expert; items appended to the stores after its fit are refused here,
    at load, in one line (the lexical expert is fitted on the whole catalog and has no append)."""
    try:
        return lexical.rows(catalog.ids.tolist())
    except KeyError as err:
        raise HetmoeError(f"lexical expert '{name}': {err.args[0]} (items appended after it was fitted?); refit it "
                          f"with 'hetmoe embed --expert {name} --data D --overwrite' and the model with it") from err
