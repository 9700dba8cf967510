"""``FeatureContext``: everything the feature blocks read from the catalog, loaded once per process and shared by
every batch: item vectors and markets (:class:`~hetmoe.online.catalog.ItemCatalog`), the reference search, the item
neighbourhood tables and the lexical expert, with the per-query caches the online path needs.

Why one object: training, ``eval``, bulk scoring and the Scorer used to assemble these four sources in three
different ways (a reference row in float32 per market here, a neighbourhood table aligned there); built once, the same
bits feed every path.
"""
from __future__ import annotations

import logging
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
    from hetmoe.store.neighbourhood import ItemNeighbours

log = logging.getLogger(__name__)


class FeatureContext:
    """The catalog side of every pair feature, with bounded per-query caches (``cache_size`` 0: none)."""

    def __init__(self, catalog: ItemCatalog, store_root: str | Path | None, ref_top: int = 16,
                 lexical: LexicalModel | None = None, lexical_name: str = "", cache_size: int = 0,
                 reference: ReferenceSearch | None = None) -> None:
        self.catalog = catalog
        self.store_root = Path(store_root) if store_root is not None else None
        self.reference = reference or ReferenceSearch(catalog, ref_top, cache_size)
        self.lexical = lexical
        self.lexical_name = lexical_name
        self._lexical_rows = _lexical_rows(lexical, catalog, lexical_name) if lexical is not None else None
        self.lexical_cache: LRUCache[str, QueryBatch] = LRUCache(cache_size)  # query text -> its lexical side
        self._neighbours: dict[str, ItemNeighbours] = {}

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
        """``expert``'s item-neighbourhood table over the catalog items that have a market, aligned to the catalog;
        read from the store, or built there first (once per catalog); built in memory without a store."""
        table = self._neighbours.get(expert)
        if table is None:
            table = self._neighbours[expert] = _catalog_neighbours(self.catalog, self.store_root, expert)
        return table

    def unit_items(self, expert: str, rows: np.ndarray) -> np.ndarray:
        """Unit float32 vectors of catalog ``rows`` (the stored float16 vectors, normalised)."""
        from hetmoe.vectors import l2_normalize

        return l2_normalize(self.catalog.take(expert, rows))

    def clear_caches(self) -> None:
        self.reference.clear()
        self.lexical_cache.clear()


def _catalog_neighbours(catalog: ItemCatalog, store_root: Path | None, expert: str) -> ItemNeighbours:
    from hetmoe.store.neighbourhood import build_neighbours, item_neighbours
    from hetmoe.vectors import l2_normalize

    if catalog.markets is None:
        raise HetmoeError("the model reads item neighbourhoods, which are per market: load it with its dataset "
                          "(Scorer.load(model_dir, data_dir=...))")
    known = np.flatnonzero(catalog.markets != "")
    ids, markets, units = catalog.ids[known], catalog.markets[known], l2_normalize(catalog.take(expert, known))
    if store_root is None:  # an in-memory catalog: built here, kept by the context only
        order = np.argsort(ids, kind="stable")
        return build_neighbours(ids[order], markets[order], units[order]).aligned(catalog.ids)
    return item_neighbours(store_root, expert, ids, markets, units).aligned(catalog.ids)


def _lexical_rows(lexical: Any, catalog: ItemCatalog, name: str) -> np.ndarray:
    """Each catalog item's row in the lexical expert; items appended to the stores after its fit are refused here,
    at load, in one line (the lexical expert is fitted on the whole catalog and has no append)."""
    try:
        return lexical.rows(catalog.ids.tolist())
    except KeyError as err:
        raise HetmoeError(f"lexical expert '{name}': {err.args[0]} (items appended after it was fitted?); refit it "
                          f"with 'hetmoe embed --expert {name} --data D --overwrite' and the model with it") from err
