"""The lexical expert's features for judged pairs: opened from its store, checked against the dataset's item texts.

Why a check: like the embedding stores, a lexical store is looked up by item id; one fitted on another version of
the catalog would score the pairs against other titles. A dataset covering part of the catalog (one market's slice
of a multi-market store) is accepted when every item it uses has the same text hash as when the store was fitted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hetmoe.errors import HetmoeError


def open_checked(store_root: str | Path, name: str, dataset: Any) -> Any:
    """The lexical model of ``STORE/<name>/``, refused in one line when it was fitted on other texts for the dataset's items."""
    from hetmoe.lexical.store import TEXT_HASHES, items_fingerprint, open_lexical
    from hetmoe.store.identity import text_hashes
    from hetmoe.store.layout import expert_dir, read_manifest

    model = open_lexical(store_root, name)
    folder = expert_dir(store_root, name)
    if (read_manifest(folder) or {}).get("items", {}).get("input_fingerprint") == items_fingerprint(dataset):
        return model
    fix = f"fit it on this dataset with 'hetmoe embed --expert {name} --data {dataset.root} --store NEW_STORE'"
    if not (folder / TEXT_HASHES).is_file():
        raise HetmoeError(f"{folder} was fitted on other items than {dataset.root} and records no per-item text hashes; {fix}")
    held = pl.read_parquet(folder / TEXT_HASHES)
    texts = dataset.item_texts().join(held, on="item_id", how="left")
    missing = texts["text_hash"].is_null()
    if missing.any():
        raise HetmoeError(f"{folder} lacks {int(missing.sum())} of the dataset's items (e.g. "
                          f"{', '.join(texts.filter(missing)['item_id'].head(3).to_list())}); {fix}")
    differ = texts["text_hash"].to_numpy().astype(np.uint64) != text_hashes(texts["text"])
    if differ.any():
        raise HetmoeError(f"{folder} was fitted on other texts for {int(differ.sum())} of the dataset's items; {fix}")
    return model

