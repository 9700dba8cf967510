"""Each expert's market indexes and item-neighbourhood tables, kept in its store: built once per catalog, grown by
appends, read by every path.

Why: the pair statistics compare a cosine with the *query's* best cosines in its market; the item side has the same
problem the other way round (hubness: in an anisotropic space some items sit close to everything, and items of one
product group sit close to each other). CSLS-style retrieval corrects it with the item's neighbourhood, and product
matching leans on shared neighbours and neighbourhood expansion (:mod:`hetmoe.pairs.blocks.neighbourhood`). Both
rows come from one :class:`~hetmoe.store.market_index.MarketIndex` per (expert, market), so training, ``eval``,
bulk scoring and the Scorer read the same bits.

Layout: ``STORE/<expert>/neighbours/<market>/`` holds ``meta.json`` (the store identity and parameters it was built
from), ``table.npz`` (the market's ids in index order, each item's best cosines and rows, their mean and last), for an
indexed market ``index.faiss``, and the digests of both, checked on load. A store that grew by ``hetmoe embed --append`` gets its new items added to
the index and the rows they change updated; a store rebuilt since, or a market whose items changed otherwise, is
indexed again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.files import publish, write_json_atomic
from hetmoe.integrity import verify_digests, write_digests
from hetmoe.store.identity import StoreIdentity
from hetmoe.store.layout import expert_dir
from hetmoe.store.market_index import MarketIndex, Table

log = logging.getLogger(__name__)
NEIGHBOURS_DIR = "neighbours"
NEIGHBOUR_TOP = 16  # neighbours kept per item: as many as the query-side reference row (hetmoe.moe.reference)
FORMAT = 2  # 2: each item's expansion centre beside its row
META, TABLE, INDEX = "meta.json", "table.npz", "index.faiss"
UnitsOf = Callable[[np.ndarray], np.ndarray]  # ids -> their unit float32 vectors


@dataclass(frozen=True)
class ItemNeighbours:
    """Per catalog item (rows in the catalog's order): its best cosines with the other items of its market and those
    items' catalog rows (best first; NaN and -1 past a market smaller than top + 1, and for items of no market), and
    their mean and last."""

    cosines: np.ndarray  # (n, top) float32
    rows: np.ndarray  # (n, top) int64 catalog rows
    mean: np.ndarray  # (n,) float32
    last: np.ndarray  # (n,) float32
    centres: np.ndarray  # (n, d) float16 expansion centres (:class:`~hetmoe.store.market_index.Table`)

    @classmethod
    def of_markets(cls, n: int, dim: int, parts: list[tuple[MarketIndex, np.ndarray]],
                   top: int = NEIGHBOUR_TOP) -> ItemNeighbours:
        """The catalog's table from each market's index and its index-row -> catalog-row map."""
        out = Table.empty(n, top, dim)
        for index, catalog_rows in parts:
            table = index.table
            assert table is not None
            out.cosines[catalog_rows], out.mean[catalog_rows], out.last[catalog_rows] = table.cosines, table.mean, table.last
            out.rows[catalog_rows] = np.where(table.rows >= 0, catalog_rows[np.maximum(table.rows, 0)], -1)
            out.centres[catalog_rows] = table.centres
        return cls(out.cosines, out.rows, out.mean, out.last, out.centres)


def market_dir(store_root: str | Path, expert: str, market: str) -> Path:
    """``STORE/<expert>/neighbours/<market>``: the name made safe for a path, with a hash against collisions."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", market)[:40] or "_"
    return expert_dir(store_root, expert) / NEIGHBOURS_DIR / f"{safe}-{hashlib.sha256(market.encode()).hexdigest()[:8]}"


def market_index(store_root: str | Path | None, expert: str, market: str, ids: np.ndarray, units_of: UnitsOf,
                 dim: int, store_view: Mapping[str, Any] | None, top: int = NEIGHBOUR_TOP) -> MarketIndex:
    """The index of ``market``'s items ``ids`` (any order): read from the store, grown there by the ids a store append
    added, or built there first; without a store, built in memory. ``store_view``: the expert's item store manifest
    view (``EmbeddingStore.manifest``), whose identity the saved index must match or have grown into."""
    ids = np.sort(np.asarray(ids).astype(str))
    desc = f"{expert} {market} neighbourhoods" if ids.shape[0] > 10_000 else ""
    if store_root is None:
        return MarketIndex.build(ids, lambda rows: units_of(ids[rows]), dim, top, desc)
    folder = market_dir(store_root, expert, market)
    rebuild = f"'hetmoe neighbours --expert {expert} --data DATA --store {store_root}' after removing {folder}"
    saved = _load(folder, store_view, top, rebuild)
    identity = None if store_view is None else StoreIdentity.of(store_view)
    if saved is not None:
        if saved.exact:
            saved.units = units_of(saved.ids)
        held = np.sort(saved.ids)
        if np.array_equal(held, ids):
            return saved
        if held.shape[0] < ids.shape[0] and np.isin(held, ids, assume_unique=True).all():
            new = ids[~np.isin(ids, held, assume_unique=True)]
            log.info("%s %s: %d appended items enter the index and their neighbourhoods", expert, market, new.shape[0])
            saved.append(new, lambda rows: units_of(saved.ids[rows]), dim, top)
            _save(folder, saved, identity, expert, market, top)
            return saved
    log.info("%s %s: indexing %d items and their neighbourhoods (once per catalog; kept in %s)", expert, market,
             ids.shape[0], folder)
    built = MarketIndex.build(ids, lambda rows: units_of(ids[rows]), dim, top, desc)
    _save(folder, built, identity, expert, market, top)
    return built


def _load(folder: Path, store_view: Mapping[str, Any] | None, top: int, rebuild: str) -> MarketIndex | None:
    """The saved index when the store built it or grew from the store that did (appends), else None (an index
    written before digests counts as absent: it is rebuilt); a damaged file is refused in one line (``rebuild``)."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("format") != FORMAT or meta.get("top") != top or store_view is None or not meta.get("store") \
            or not meta.get("digests"):
        return None
    if StoreIdentity(meta["store"]["card_hash"], meta["store"]["fingerprint"], meta["store"]["count"]).grown_from(
            store_view) is None:
        return None
    files = [TABLE] + ([] if meta["exact"] else [INDEX])
    verify_digests(folder, files, rebuild, required=True)
    with np.load(folder / TABLE, allow_pickle=False) as saved:
        table = Table(saved["cosines"], saved["rows"].astype(np.int64), saved["mean"], saved["last"], saved["centres"])
        ids = saved["ids"]
    index = None
    if not meta["exact"]:
        import faiss

        index = faiss.read_index(str(folder / INDEX))
    return MarketIndex(ids, index, None, table)


def _save(folder: Path, index: MarketIndex, identity: StoreIdentity | None, expert: str, market: str, top: int) -> None:
    """Write the index files and their digests, then meta.json last (its presence marks a complete index)."""
    assert index.table is not None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META).unlink(missing_ok=True)
    table = index.table
    _atomic(folder / TABLE, lambda handle: np.savez(handle, ids=index.ids, cosines=table.cosines,
                                                     rows=table.rows.astype(np.int32), mean=table.mean, last=table.last,
                                                     centres=table.centres))
    if index.index is not None:
        import faiss

        _atomic(folder / INDEX, lambda handle: faiss.write_index(index.index, faiss.PyCallbackIOWriter(handle.write)))
    write_digests(folder, [TABLE] + ([] if index.exact else [INDEX]))
    store = None if identity is None else {"card_hash": identity.card_hash, "fingerprint": identity.fingerprint,
                                           "count": identity.count}
    write_json_atomic(folder / META, {"format": FORMAT, "expert": expert, "market": market, "n": len(index),
                                      "top": top, "exact": index.exact, "store": store, "digests": True})


def _atomic(path: Path, write: Callable[[Any], Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
