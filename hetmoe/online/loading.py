"""What :meth:`Scorer.load <hetmoe.online.scorer.Scorer.load>` reads from disk: the model, every expert's item
vectors in one aligned catalog (with item markets), the FAISS indexes and the lexical expert."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any


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
