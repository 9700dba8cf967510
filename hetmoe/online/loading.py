"""What :meth:`Scorer.load <hetmoe.online.scorer.Scorer.load>` reads from disk: the model, every expert's item
vectors in one aligned catalog (with item markets), the FAISS indexes and the lexical expert."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.online.catalog import ItemCatalog
from hetmoe.online.retrieval import Retriever

if TYPE_CHECKING:
    from hetmoe.moe.infer import MoEModel

logger = logging.getLogger(__name__)


def load_parts(model_dir: str | Path, store_root: str | Path | None, data_dir: str | Path | None,
               with_indexes: bool | None) -> tuple[MoEModel, ItemCatalog, Retriever | None, Any]:
    """(model, catalog, retriever or None, lexical expert or None); ``with_indexes`` as in ``Scorer.load``."""
    from hetmoe.moe.artifacts import check_identity
    from hetmoe.moe.infer import MoEModel

    model = MoEModel.load(model_dir, store_root=store_root, check_stores=False)
    root = model.store_root
    if root is None:
        raise HetmoeError(f"{model_dir}: config.json records no store_root; pass store_root= (the stores the model was trained on)")
    opened = check_identity(model.config, root, Path(model_dir))  # each store part is opened once, here
    items = {expert: opened[expert].items for expert in model.experts}
    catalog = ItemCatalog.aligned({expert: (store.ids, store.load()) for expert, store in items.items()})
    _attach_markets(catalog, data_dir or model.config.get("dataset"))
    if with_indexes is None:
        with_indexes = _indexes_present(root, model.experts)
    retriever = Retriever.load(root, model.experts, catalog, items) if with_indexes else None
    lexical = None
    if model.spec.lexical_store:
        from hetmoe.lexical.store import open_lexical

        lexical = open_lexical(root, model.spec.lexical_store)
    logger.info("loaded %s: %d experts, %d items, %d markets", model_dir, len(model.experts), len(catalog), len(model.markets))
    return model, catalog, retriever, lexical


def catalog_neighbours(model: MoEModel, catalog: ItemCatalog) -> dict[str, Any]:
    """Each model expert's item-neighbourhood table over the catalog's items that have a market (the same items
    training saw), aligned to the catalog; read from the store, or built there first (once per catalog)."""
    from hetmoe.store.neighbourhood import item_neighbours
    from hetmoe.vectors import l2_normalize

    if catalog.markets is None or model.store_root is None:
        raise HetmoeError("the model reads item neighbourhoods, which are per market and kept in its store: load it "
                          "with Scorer.load(model_dir, data_dir=the dataset)")
    known = np.flatnonzero(catalog.markets != "")
    tables = {}
    for expert in model.experts:
        units = l2_normalize(catalog.take(expert, known))
        table = item_neighbours(model.store_root, expert, catalog.ids[known], catalog.markets[known], units)
        tables[expert] = table.aligned(catalog.ids)
    return tables


def lexical_rows(lexical: Any, catalog: ItemCatalog, name: str) -> np.ndarray:
    """Each catalog item's row in the lexical expert; items appended to the stores after its fit are refused here,
    at load, in one line (the lexical expert is fitted on the whole catalog and has no append)."""
    try:
        return lexical.rows(catalog.ids.tolist())
    except KeyError as err:
        raise HetmoeError(f"lexical expert '{name}': {err.args[0]} (items appended after it was fitted?); refit it "
                          f"with 'hetmoe embed --expert {name} --data D --overwrite' and the model with it") from err


def _indexes_present(store_root: str | Path, experts: Sequence[str]) -> bool:
    """Whether every expert has an index file; if not, say once that search is off."""
    from hetmoe.store.index import index_path

    missing = [e for e in experts if not index_path(store_root, e).is_file()]
    if missing:
        logger.warning("no FAISS index for %s under %s: /search is off until 'hetmoe index' builds them; /score works",
                       ", ".join(missing), store_root)
    return not missing


def _attach_markets(catalog: ItemCatalog, data_dir: str | Path | None) -> None:
    """Give the catalog each item's market from the dataset's items.parquet (only the two columns are read)."""
    import polars as pl

    path = Path(data_dir) / "items.parquet" if data_dir else None
    if path is None or not path.is_file():
        logger.warning("no items.parquet found (%s); search will rank items of every market", path)
        return
    items = pl.read_parquet(path, columns=["item_id", "market"])
    missing = catalog.set_markets(items["item_id"].cast(pl.String).to_numpy(), items["market"].cast(pl.String).to_numpy())
    if missing:
        logger.warning("%s lacks %d of the %d catalog items; search never returns those", path, missing, len(catalog))
