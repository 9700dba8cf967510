"""The feature context of a judged dataset (training, ``eval``): its items' vectors from the experts' stores, checked
against the dataset row by row, and its queries' stored vectors.

Why the dataset's own items: a multi-market store may serve one market's slice, and a query's reference row and an
item's neighbourhood are taken within its market, so the slice's catalog gives the same rows as the whole store's.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.online.catalog import ItemCatalog
from hetmoe.pairs.context import FeatureContext


def _vectors(store: Any, ids: np.ndarray, what: str) -> np.ndarray:
    """The store's vectors of ``ids`` as it holds them (float16): a catalog never needs a float32 copy, nor a copy at
    all when ``ids`` are the store's rows in order (a dataset the store was built or grown from)."""
    if ids.shape == store.ids.shape and (ids == store.ids).all():
        return store.load()
    try:
        return store.load()[store.rows(ids)]
    except KeyError as err:
        raise HetmoeError(f"{what} store lacks ids the dataset judges ({err}); re-run 'hetmoe embed' for this dataset") from None


def dataset_catalog(dataset: Any, store_root: str | Path, experts: Sequence[str],
                    query_ids: np.ndarray | None = None) -> tuple[ItemCatalog, dict[str, np.ndarray]]:
    """(the dataset's items with each expert's vectors and their markets, each expert's raw (n_q, d) float32 vectors
    of ``query_ids`` when given), the stores checked against the dataset's texts first."""
    from hetmoe.store.identity import check_dataset
    from hetmoe.store.zarr_store import open_expert

    items = dataset.items.select("item_id", "market")
    ids = np.asarray(items["item_id"].to_list(), dtype=object)
    vectors, queries = {}, {}
    for expert in dict.fromkeys(experts):
        stores = open_expert(store_root, expert)
        check_dataset(stores, dataset, expert, store_root)
        if query_ids is not None:
            queries[expert] = _vectors(stores.queries, query_ids, f"'{expert}' query").astype(np.float32)
        vectors[expert] = _vectors(stores.items, ids, f"'{expert}' item")
    catalog = ItemCatalog(ids, vectors)
    catalog.set_markets(catalog.ids, items["market"].cast(str).to_numpy())
    return catalog, queries


def judged_context(dataset: Any, store_root: str | Path, experts: Sequence[str], query_ids: np.ndarray, ref_top: int,
                   lexical_store: str = "") -> tuple[FeatureContext, dict[str, np.ndarray]]:
    """(the context over the dataset's items, each expert's raw (n_q, d) float32 vectors of ``query_ids``)."""
    catalog, queries = dataset_catalog(dataset, store_root, experts, query_ids)
    lexical = None
    if lexical_store:
        from hetmoe.moe.lexical_pairs import open_checked

        lexical = open_checked(store_root, lexical_store, dataset)
    return FeatureContext(catalog, store_root, ref_top, lexical, lexical_store), queries


def index_markets(dataset: Any, store_root: str | Path, experts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each expert's index of every market of the dataset, read, grown by appended items, or built in the store
    (what the reference rows and item neighbourhoods read); returns what each took."""
    catalog, _ = dataset_catalog(dataset, store_root, experts)
    context = FeatureContext(catalog, store_root)
    context.prepare(list(experts), {"reference"})  # the indexes and tables; the catalog-wide view is for scoring
    return context.index_summary()
