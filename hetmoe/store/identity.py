"""Store identity: which vectors a store part holds (:class:`StoreIdentity`), and whether its vector for an id is the
vector of the text the dataset now gives that id (per-row text hashes).

Why one identity: an embed run, a reader, an index and a model each record or expect a store's identity; comparing
them through one class keeps the keys and the append rule (a store that only grew by ``embed --append`` is still the
store it was) the same everywhere.

Why text hashes: every reader looks vectors up by id. A store built from another dataset (or another version of it) has the
same ids for other texts, and training or evaluating on it silently scores garbage. Each store part keeps one 64-bit
hash per row of the text it encoded (``text_hash``); a dataset is accepted when the hash of its text for every id it
uses matches the row the store holds for that id. That also lets one store serve any dataset whose texts it covers
(a market's slice of a multi-market catalog) without re-embedding.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from hetmoe.errors import HetmoeError

TEXT_HASH = "text_hash"  # zarr array name in each store part: uint64 per row
MAX_NAMED = 3
# A part's manifest key: the input fingerprint of the dataset an append last checked every row against (after an
# append the part's own fingerprint is chained, so without it every later reader would check each row again).
VERIFIED = "verified_input_fingerprint"


@dataclass(frozen=True)
class StoreIdentity:
    """One store part as a consumer recorded it: the expert card that encoded it, its input fingerprint (sha256 over
    every id and text in row order, so the ids are covered: no separate ids digest) and its row count.

    ``None`` fields are not compared (a model records no count; the embed run compares parts, whose card is shared).
    """

    card_hash: str | None
    fingerprint: str | None
    count: int | None = None

    @classmethod
    def of(cls, part: Mapping[str, Any]) -> StoreIdentity:
        """The identity a part's manifest view (``EmbeddingStore.manifest``) or manifest entry states now."""
        count = part.get("count")
        return cls(part.get("card_hash"), part.get("input_fingerprint"), None if count is None else int(count))

    def grown_from(self, part: Mapping[str, Any]) -> int | None:
        """Rows the part (its manifest view) gained by appends since it was this identity: 0 when it still is; None
        when it never was (another card, other input, or rebuilt since)."""
        if self.card_hash is not None and self.card_hash != part.get("card_hash"):
            return None
        before = rows_at(part, self.fingerprint)
        if before is None or (self.count is not None and before != self.count):
            return None
        return int(part["count"]) - before


def rows_at(part: Mapping[str, Any], fingerprint: str | None) -> int | None:
    """How many rows a part (``manifest["parts"][name]`` or a store's manifest view) had when its input fingerprint was
    ``fingerprint``; None when that was never a state of this store (built from other input, or rebuilt since)."""
    if fingerprint is not None and fingerprint == part.get("input_fingerprint"):
        return int(part["count"])
    return next((int(h["from"]) for h in part.get("history", []) if h["previous_fingerprint"] == fingerprint), None)


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
        fingerprint = input_fingerprint(frame[id_col], frame["text"])
        if fingerprint in (store.manifest.get("input_fingerprint"), store.manifest.get(VERIFIED)):
            continue  # built from, or last grown and checked row by row against, exactly this input: every row matches
        check_texts(store, np.asarray(frame[id_col].to_list(), dtype=object), frame["text"], fix)


def input_fingerprint(ids: pl.Series, texts: pl.Series) -> str:
    """sha256 over the byte lengths, then the bytes, of ids and texts in row order: unambiguous and in C speed."""
    digest = hashlib.sha256()
    for start in range(0, len(ids), 65536):
        for column in (ids.slice(start, 65536), texts.slice(start, 65536)):
            digest.update(column.str.len_bytes().to_numpy().astype("<i8").tobytes())
            digest.update("".join(column.to_list()).encode("utf-8"))
    return digest.hexdigest()
