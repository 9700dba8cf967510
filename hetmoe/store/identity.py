"""Is this store's vector for an id the vector of the text the dataset now gives that id?

Why: every reader looks vectors up by id. A store built from another dataset (or another version of it) has the
same ids for other texts, and training or evaluating on it silently scores garbage. Each store part keeps one 64-bit
hash per row of the text it encoded (``text_hash``); a dataset is accepted when the hash of its text for every id it
uses matches the row the store holds for that id. That also lets one store serve any dataset whose texts it covers
(a market's slice of a multi-market catalog) without re-embedding.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import polars as pl

from hetmoe.errors import HetmoeError

TEXT_HASH = "text_hash"  # zarr array name in each store part: uint64 per row
MAX_NAMED = 3


def text_hashes(texts: pl.Series | list[str]) -> np.ndarray:
    """(n,) uint64: the first 8 bytes of blake2b over each text's UTF-8 bytes (collisions need ~4e9 texts)."""
    values = texts.to_list() if isinstance(texts, pl.Series) else list(texts)
    out = np.empty(len(values), dtype=np.uint64)
    for i, text in enumerate(values):
        out[i] = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    return out


def check_texts(store: Any, ids: np.ndarray, texts: pl.Series | list[str], fix: str) -> None:
    """Refuse when ``store`` (an EmbeddingStore) lacks one of ``ids`` or holds another text's vector for it."""
    try:
        rows = store.rows(ids)
    except KeyError as err:
        raise HetmoeError(f"{store.path} lacks ids the dataset uses ({err.args[0]}); {fix}") from None
    held = store.text_hashes()
    if held is None:
        raise HetmoeError(f"{store.path} records no per-row text hashes (built by an older hetmoe) and was built "
                          f"from other input than this dataset; {fix}")
    differ = np.flatnonzero(held[rows] != text_hashes(texts))
    if differ.size:
        named = ", ".join(str(ids[i]) for i in differ[:MAX_NAMED])
        raise HetmoeError(f"{store.path} holds vectors of other texts for {differ.size} of the dataset's {len(ids)} ids "
                          f"(e.g. {named}): it was built from another dataset; {fix}")


def check_dataset(stores: Any, dataset: Any, expert: str, store_root: Any) -> None:
    """Both parts of an expert's store (ExpertStores) against the dataset's item and query texts."""
    fix = (f"embed this dataset with 'hetmoe embed --expert {expert} --data {dataset.root} --store NEW_STORE' "
           f"or point --store at stores built from it")
    for part, frame, id_col in (("items", dataset.item_texts(), "item_id"), ("queries", dataset.query_texts(), "query_id")):
        store = getattr(stores, part)
        if store.manifest.get("input_fingerprint") == _fingerprint(part, frame, id_col):
            continue  # built from exactly this input: every row matches
        check_texts(store, np.asarray(frame[id_col].to_list(), dtype=object), frame["text"], fix)


def _fingerprint(part: str, frame: pl.DataFrame, id_col: str) -> str:
    from hetmoe.store.manifest import PartInput

    return PartInput(part, frame[id_col], frame["text"]).fingerprint()
