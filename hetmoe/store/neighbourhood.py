"""Each catalog item's own neighbourhood in one expert's space: its best cosines with the other items of its market.

Why: the pair statistics compare a cosine with the *query's* best cosines in its market; the item side has the same
problem the other way round (hubness: in an anisotropic space some items sit close to everything, and items of one
product group sit close to each other). CSLS-style retrieval corrects it with the item's neighbourhood, and product
matching leans on shared neighbours and neighbourhood expansion. On Shopee valid the features built from this table
(:mod:`hetmoe.pairs.blocks.neighbourhood`) lifted LightGBM over five experts + lexical from 0.925 to 0.937-0.938 macro AUC
(bench/results/quality-shopee-e5.json; bench/item_neighbourhood.py measures them alone).

Each item costs one pass over its market, so the table is computed once per (expert, catalog) and kept beside the
vectors: ``STORE/<expert>/neighbours/<key>.npz``, the key hashing the top, the item ids, their markets and their unit
vectors. Training, ``eval``, bulk scoring and the Scorer all read that file, so they read the same bits; a catalog
that changed (appended items, another market map, re-embedded vectors) gets a new key and a new table.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hetmoe.files import publish
from hetmoe.store.layout import expert_dir
from hetmoe.vectors import pair_cosines

log = logging.getLogger(__name__)
NEIGHBOURS_DIR = "neighbours"
NEIGHBOUR_TOP = 16  # neighbours kept per item: as many as the query-side reference row (hetmoe.moe.reference)
BLOCK_CELLS = 1 << 25  # cosines per matrix product (block x market): ~128 MB, and twice that for argpartition's rows


@dataclass(frozen=True)
class ItemNeighbours:
    """Per item (rows in ``ids`` order): its ``top`` best cosines with the other items of its market and those
    items' rows (best first; NaN and -1 past a market smaller than top + 1), and their mean and last."""

    ids: np.ndarray  # (n,) str, sorted (the table's canonical order)
    cosines: np.ndarray  # (n, top) float32
    rows: np.ndarray  # (n, top) int64 rows of ``ids``
    mean: np.ndarray  # (n,) float32
    last: np.ndarray  # (n,) float32

    def aligned(self, host_ids: np.ndarray) -> ItemNeighbours:
        """The same table in another id order (a training catalog, the Scorer's): rows follow ``host_ids`` and
        neighbour rows point into it; an item the table lacks gets NaN statistics and no neighbours."""
        host_ids = np.asarray(host_ids).astype(str)
        pos = np.searchsorted(self.ids, host_ids)
        found = (pos < self.ids.shape[0]) & (self.ids[np.minimum(pos, self.ids.shape[0] - 1)] == host_ids)
        to_host = np.full(self.ids.shape[0] + 1, -1, np.int64)  # last slot: the table's -1
        to_host[pos[found]] = np.flatnonzero(found)
        pos = np.where(found, pos, 0)
        cosines = np.where(found[:, None], self.cosines[pos], np.nan).astype(np.float32)
        rows = np.where(found[:, None], to_host[self.rows[pos]], -1)
        mean = np.where(found, self.mean[pos], np.nan).astype(np.float32)
        last = np.where(found, self.last[pos], np.nan).astype(np.float32)
        return ItemNeighbours(host_ids, cosines, rows, mean, last)


def table_key(ids: np.ndarray, markets: np.ndarray, units: np.ndarray, top: int) -> str:
    """A hash of everything the table depends on (ids, markets and vectors in sorted id order, top)."""
    digest = hashlib.sha256(f"neighbours v2 top={top} n={ids.shape[0]} dim={units.shape[1]}\n".encode())
    for column in (ids, markets):
        digest.update("\x1f".join(column.tolist()).encode("utf-8"))
        digest.update(b"\x1e")
    digest.update(np.ascontiguousarray(units, np.float32).tobytes())
    return digest.hexdigest()[:20]


def build_neighbours(ids: np.ndarray, markets: np.ndarray, units: np.ndarray, top: int = NEIGHBOUR_TOP,
                     desc: str = "") -> ItemNeighbours:
    """The table over sorted ``ids`` (unit ``units`` and ``markets`` in the same order), market by market; ``desc``
    names a progress bar (none when empty)."""
    from tqdm import tqdm

    n = ids.shape[0]
    bar = tqdm(total=n, desc=desc, unit="item", disable=not desc, leave=False)
    mean, last = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
    cosines, rows = np.full((n, top), np.nan, np.float32), np.full((n, top), -1, np.int64)
    for market in np.unique(markets):
        pool = np.flatnonzero(markets == market)
        keep = min(top, pool.size - 1)
        if keep < 1:
            continue  # an item alone in its market has no neighbourhood
        vectors, step = units[pool], max(1, BLOCK_CELLS // pool.size)
        for lo in range(0, pool.size, step):
            block = np.arange(lo, min(lo + step, pool.size))
            sims = vectors[block] @ vectors.T
            sims[np.arange(block.size), block] = -np.inf  # not itself
            best = np.argpartition(sims, sims.shape[1] - keep, axis=1)[:, -keep:]
            # Cosines recomputed pair by pair (independent of the block), then ordered best first, ties by row.
            exact = pair_cosines(np.repeat(vectors[block], keep, axis=0), vectors[best.ravel()]).reshape(best.shape)
            order = np.lexsort((best, -exact), axis=1)
            exact, best = np.take_along_axis(exact, order, 1), np.take_along_axis(best, order, 1)
            mean[pool[block]], last[pool[block]] = exact.mean(axis=1), exact[:, -1]
            cosines[pool[block], :keep], rows[pool[block], :keep] = exact, pool[best]
            bar.update(block.size)
    bar.close()
    return ItemNeighbours(ids, cosines, rows, mean, last)


def item_neighbours(store_root: str | Path, expert: str, ids: np.ndarray, markets: np.ndarray, units: np.ndarray,
                    top: int = NEIGHBOUR_TOP) -> ItemNeighbours:
    """The table of these items (any order; rows of ``units`` follow ``ids``) from the expert's store, built and
    saved there first when no table has this key. Returned in sorted id order (see :meth:`ItemNeighbours.aligned`)."""
    ids, markets = np.asarray(ids).astype(str), np.asarray(markets).astype(str)
    if units.shape[0] != ids.shape[0]:
        raise ValueError(f"{units.shape[0]} vectors for {ids.shape[0]} ids")
    order = np.argsort(ids, kind="stable")
    ids, markets, units = ids[order], markets[order], np.ascontiguousarray(units[order], np.float32)
    key = table_key(ids, markets, units, top)
    path = expert_dir(store_root, expert) / NEIGHBOURS_DIR / f"{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            return ItemNeighbours(ids, saved["cosines"], saved["rows"].astype(np.int64), saved["mean"], saved["last"])
    log.info("%s: item neighbourhoods of %d items (once per catalog; kept in %s)", expert, ids.shape[0], path.parent)
    table = build_neighbours(ids, markets, units, top, desc=f"{expert} item neighbourhoods")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, cosines=table.cosines, rows=table.rows.astype(np.int32), mean=table.mean, last=table.last)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return table
