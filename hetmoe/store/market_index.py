"""One expert's search index over one market's items, and the item-neighbourhood table read off it.

Why an index: a query's reference row (its ``top`` best cosines over its market) and an item's neighbourhood (its
``top`` best cosines with the other items of its market) were exact scans of the market, linear per query and
quadratic per catalog. Above :data:`EXACT_MAX` items a market gets a FAISS HNSW graph over its unit vectors (stored
as float16: half the memory of the float32 vectors, the same ranking to recall 0.95+ on real catalogs); search
returns :data:`CANDIDATES` rows, whose cosines are then recomputed exactly from the stored vectors and ranked (ties by
index row), so every path reads the same bits. Small markets are searched exactly, in blocks.

Costs (n items in the market, d dims; HNSW with M links): per query O(M d log n) for the search plus CANDIDATES d for
the exact re-ranking; per catalog O(n log n) for the build (single-threaded: a multi-threaded HNSW build inserts in an
order that varies from run to run) and O(n log n) for the neighbourhood table (every item searched, in parallel, each
search independent of the others); per appended item O(log n) for the index and its own row, plus the rows it enters.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hetmoe.vectors import pair_cosines

log = logging.getLogger(__name__)
EXACT_MAX = 20_000  # markets up to this many items are searched exactly (a few ms per query at 384-d)
HNSW_M, EF_CONSTRUCTION, EF_SEARCH = 32, 64, 128  # recall@16 0.95 for real queries on Home Depot (wordllama)
EF_TABLE = 64  # an item searches for its neighbours from inside the graph: recall@16 0.99 there at 64
CANDIDATES = 32  # rows a search returns for exact re-ranking
EXPANSION = 3  # neighbours an item's expansion centre averages (the item-expansion feature's query side)
BLOCK = 2048  # rows per search / matrix-product block: bounds the float32 copies (block x CANDIDATES x d)
ORDER_MIN, ORDER_SAMPLE, ORDER_CELLS = 50_000, 65_536, 256  # searches of a big market go cell by cell (_local_order)
UnitOf = Callable[[np.ndarray], np.ndarray]  # index rows -> their unit float32 vectors


@dataclass
class Table:
    """Each item's ``top`` best cosines with the other items of its market (best first) and their index rows; NaN
    and -1 past a market smaller than top + 1; ``mean`` and ``last`` of each row; and its expansion centre, the mean
    of its EXPANSION best neighbours' unit vectors (float16; NaN with fewer neighbours): a query's mean cosine with
    those neighbours is then one dot product per pair."""

    cosines: np.ndarray  # (n, top) float32
    rows: np.ndarray  # (n, top) int64 index rows
    mean: np.ndarray  # (n,) float32
    last: np.ndarray  # (n,) float32
    centres: np.ndarray  # (n, d) float16

    @classmethod
    def empty(cls, n: int, top: int, dim: int) -> Table:
        return cls(np.full((n, top), np.nan, np.float32), np.full((n, top), -1, np.int64),
                   np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32), np.full((n, dim), np.nan, np.float16))

    def set_centres(self, at: np.ndarray, unit_of: UnitOf) -> None:
        """Rows ``at``'s expansion centres, from their current best EXPANSION neighbours."""
        first = self.rows[at, :EXPANSION]
        full = (first >= 0).all(axis=1)
        self.centres[at] = np.nan
        if full.any():
            wanted, where = np.unique(first[full], return_inverse=True)
            units = unit_of(wanted)[where.ravel()].reshape(-1, EXPANSION, self.centres.shape[1])
            self.centres[at[full]] = (units.sum(axis=1) / EXPANSION).astype(np.float16)

    def set_rows(self, at: np.ndarray, cosines: np.ndarray, rows: np.ndarray) -> None:
        """Rows ``at`` become ``cosines``/``rows`` (best first, NaN / -1 padded); their mean and last follow."""
        self.cosines[at], self.rows[at] = cosines, rows
        kept = (rows >= 0).sum(axis=1)
        total = np.where(rows >= 0, cosines, 0.0).sum(axis=1, dtype=np.float32)
        self.mean[at] = np.where(kept > 0, total / np.maximum(kept, 1), np.nan)
        self.last[at] = np.where(kept > 0, np.take_along_axis(cosines, np.maximum(kept - 1, 0)[:, None], 1)[:, 0], np.nan)

    def grow(self, n: int) -> None:
        extra = Table.empty(n - self.rows.shape[0], self.rows.shape[1], self.centres.shape[1])
        self.cosines, self.rows = np.concatenate([self.cosines, extra.cosines]), np.concatenate([self.rows, extra.rows])
        self.mean, self.last = np.concatenate([self.mean, extra.mean]), np.concatenate([self.last, extra.last])
        self.centres = np.concatenate([self.centres, extra.centres])


def rank(units: np.ndarray, candidates: np.ndarray, unit_of: UnitOf, top: int,
         exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each unit row's ``top`` best of its ``candidates`` (index rows, -1 padded) by exact cosine, best first, ties by
    row: (cosines NaN padded, rows -1 padded). ``exclude`` (m,) drops each row's own index row."""
    valid = candidates >= 0
    if exclude is not None:
        valid &= candidates != exclude[:, None]
    wanted, at = np.unique(candidates[valid], return_inverse=True)
    exact = np.full(candidates.shape, -np.inf, np.float32)
    if wanted.size:
        exact[valid] = pair_cosines(np.repeat(units, valid.sum(axis=1), axis=0), unit_of(wanted)[at.ravel()])
    order = np.lexsort((np.where(valid, candidates, np.iinfo(np.int64).max), -exact), axis=1)[:, :top]
    best, rows = np.take_along_axis(exact, order, 1), np.take_along_axis(np.where(valid, candidates, -1), order, 1)
    short = np.isneginf(best)
    best[short], rows[short] = np.nan, -1
    if best.shape[1] < top:  # fewer candidates than top
        pad = top - best.shape[1]
        best = np.pad(best, ((0, 0), (0, pad)), constant_values=np.nan)
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
    return best, rows


class MarketIndex:
    """Search over one market's items (index rows 0..n-1 in ``ids`` order) and their neighbourhood table."""

    def __init__(self, ids: np.ndarray, index: Any, units: np.ndarray | None, table: Table | None) -> None:
        self.ids = ids  # (n,) str, index order
        self.index = index  # a FAISS HNSW index, or None: exact search over ``units``
        self.units = units  # (n, d) float32 unit vectors of an exact market
        self.table = table
        self.seconds: dict[str, float] = {}  # what this process spent on it: "index", "table", "append"

    @property
    def exact(self) -> bool:
        return self.index is None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def build(cls, ids: np.ndarray, unit_of: UnitOf, dim: int, top: int, progress: str = "") -> MarketIndex:
        """Index the market's items (``unit_of`` gives their unit vectors by index row) and compute their table."""
        out = cls(np.asarray(ids).astype(str), None, None, None)
        n, began = len(out), time.perf_counter()
        if n <= EXACT_MAX:
            out.units = unit_of(np.arange(n)) if n else np.zeros((0, dim), np.float32)
        else:
            out.index = _hnsw(dim)
            out._add(np.arange(n), unit_of)
        out.seconds["index"] = time.perf_counter() - began
        out.table = Table.empty(n, top, dim)
        out._fill(np.arange(n), unit_of, top, progress)
        out.seconds["table"] = time.perf_counter() - began - out.seconds["index"]
        return out

    def candidates(self, units: np.ndarray, k: int, exclude: np.ndarray | None = None, ef: int = EF_SEARCH) -> np.ndarray:
        """(m, k) index rows near each unit row (-1 padded; the row itself excluded when ``exclude`` gives it);
        ``ef``: the HNSW search breadth."""
        extra = 0 if exclude is None else 1
        if self.index is None:
            assert self.units is not None
            sims = units @ self.units.T if units.shape[0] > 1 else (np.concatenate([units, units]) @ self.units.T)[:1]
            if exclude is not None:
                sims[np.arange(units.shape[0]), exclude] = -np.inf
            keep = min(k, sims.shape[1])
            found = np.argpartition(-sims, keep - 1, axis=1)[:, :keep] if keep else np.zeros((units.shape[0], 0), int)
            return np.pad(found, ((0, 0), (0, k - keep)), constant_values=-1).astype(np.int64)
        self.index.hnsw.efSearch = max(ef, k + extra)
        _, found = self.index.search(np.ascontiguousarray(units, np.float32), k + extra)
        found = found.astype(np.int64)
        if exclude is None:
            return found
        drop = found == exclude[:, None]  # the row itself, or the last one when the search missed it
        drop[~drop.any(axis=1), -1] = True
        return found[~drop].reshape(found.shape[0], k)

    def nearest(self, units: np.ndarray, unit_of: UnitOf, top: int) -> tuple[np.ndarray, np.ndarray]:
        """Each unit query's ``top`` best items (cosines, index rows), in blocks; the search returns CANDIDATES rows,
        or ``top`` where more are asked for."""
        width = max(CANDIDATES, top)
        parts = [rank(units[lo:lo + BLOCK], self.candidates(units[lo:lo + BLOCK], width), unit_of, top)
                 for lo in range(0, units.shape[0], BLOCK)]
        if not parts:
            return np.zeros((0, top), np.float32), np.zeros((0, top), np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def append(self, ids: np.ndarray, unit_of: UnitOf, dim: int, top: int) -> None:
        """Add items (``unit_of`` then covers the new index rows too): the index grows, the new rows are computed,
        and each old row a new item enters is updated (found from the new item's own candidates; exact markets
        check every old row)."""
        assert self.table is not None
        start, began = len(self), time.perf_counter()
        new = np.arange(start, start + len(ids))
        self.ids = np.concatenate([self.ids, np.asarray(ids).astype(str)])
        if self.index is None and len(self) > EXACT_MAX:  # the market outgrew exact search
            self.index, self.units = _hnsw(dim), None
            self._add(np.arange(len(self)), unit_of)
        elif self.index is None:
            self.units = unit_of(np.arange(len(self)))
        else:
            self._add(new, unit_of)
        self.table.grow(len(self))
        self._fill(new, unit_of, top, "")
        self._enter(new, unit_of, top)
        self.seconds["append"] = time.perf_counter() - began

    # ----- internals ------------------------------------------------------------------------------------------
    def _add(self, rows: np.ndarray, unit_of: UnitOf) -> None:
        import faiss

        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # insertion order decides the graph: one thread gives the same graph every run
        try:
            for lo in range(0, rows.shape[0], BLOCK):
                units = unit_of(rows[lo:lo + BLOCK])
                if not self.index.is_trained:
                    self.index.train(units)
                self.index.add(units)
        finally:
            faiss.omp_set_num_threads(threads)

    def _fill(self, rows: np.ndarray, unit_of: UnitOf, top: int, progress: str) -> None:
        """Compute the table rows of index ``rows`` (blocks searched in parallel; each search independent)."""
        from tqdm import tqdm

        assert self.table is not None
        rows = self._local_order(rows, unit_of)
        with tqdm(total=rows.shape[0], desc=progress, unit="item", disable=not progress, leave=False) as bar:
            for lo in range(0, rows.shape[0], BLOCK):
                at = rows[lo:lo + BLOCK]
                units = unit_of(at)
                found = self.candidates(units, CANDIDATES, exclude=at, ef=EF_TABLE)
                cosines, best = rank(units, found, unit_of, top, exclude=at)
                self.table.set_rows(at, cosines, best)
                self.table.set_centres(at, unit_of)
                bar.update(at.shape[0])

    def _local_order(self, rows: np.ndarray, unit_of: UnitOf) -> np.ndarray:
        """``rows`` grouped by a coarse k-means cell, so that consecutive searches walk the same part of the graph:
        1.9x faster on a million items (cache reuse), and the same results, each search being independent."""
        if self.index is None or rows.size < ORDER_MIN:
            return rows
        import faiss

        sample = unit_of(np.sort(np.random.default_rng(0).choice(rows, min(ORDER_SAMPLE, rows.size), replace=False)))
        kmeans = faiss.Kmeans(sample.shape[1], ORDER_CELLS, niter=8, seed=0)
        kmeans.train(sample)
        cells = np.concatenate([kmeans.index.search(unit_of(rows[lo:lo + BLOCK]), 1)[1][:, 0]
                                for lo in range(0, rows.size, BLOCK)])
        return rows[np.argsort(cells, kind="stable")]

    def _enter(self, new: np.ndarray, unit_of: UnitOf, top: int) -> None:
        """Old rows that a new item now belongs to: merge it in (rows stay best first, ties by row)."""
        assert self.table is not None
        if new.size == 0 or new[0] == 0:
            return
        pairs_old, pairs_new = self._entering(new, unit_of)
        if pairs_old.size == 0:
            return
        cos = pair_cosines(unit_of(pairs_old), unit_of(pairs_new))
        last = self.table.last[pairs_old]
        full = (self.table.rows[pairs_old] >= 0).all(axis=1)
        enters = ~full | (cos >= last)
        changed, at = np.unique(pairs_old[enters], return_inverse=True)
        if changed.size == 0:
            return
        # every changed row's held entries and the new items entering it side by side, padding sorted last
        order = np.argsort(at, kind="stable")
        at, newcomers, newcos = at[order], pairs_new[enters][order], cos[enters][order]
        slot = np.arange(at.size) - np.searchsorted(at, at)  # a newcomer's place among its row's newcomers
        width = top + int(slot.max()) + 1
        rows = np.full((changed.size, width), -1, np.int64)
        cosines = np.full((changed.size, width), -np.inf, np.float32)
        held = self.table.rows[changed]
        rows[:, :top] = held
        cosines[:, :top] = np.where(held >= 0, self.table.cosines[changed], -np.inf)
        rows[at, top + slot], cosines[at, top + slot] = newcomers, newcos
        keys = np.where(rows >= 0, rows, np.iinfo(np.int64).max)
        best = np.lexsort((keys, -cosines), axis=1)[:, :top]  # best first, ties by row
        cosines, rows = np.take_along_axis(cosines, best, 1), np.take_along_axis(rows, best, 1)
        short = np.isneginf(cosines)
        cosines[short], rows[short] = np.nan, -1
        self.table.set_rows(changed, cosines, rows)
        self.table.set_centres(changed, unit_of)

    def _entering(self, new: np.ndarray, unit_of: UnitOf) -> tuple[np.ndarray, np.ndarray]:
        """(old row, new row) pairs where the new item may enter the old row: every old row of an exact market whose
        last cosine it reaches; in an indexed market the old items among the new item's own candidates."""
        old = np.arange(new[0])
        if self.index is None:
            assert self.units is not None and self.table is not None
            found_old, found_new = [], []
            for lo in range(0, old.size, BLOCK):
                hi = min(lo + BLOCK, old.size)
                sims = self.units[lo:hi] @ self.units[new].T
                full = (self.table.rows[lo:hi] >= 0).all(axis=1)
                bar = np.where(full, self.table.last[lo:hi], -np.inf)
                i, j = np.nonzero(sims >= bar[:, None] - 1e-6)  # exact cosines decide below
                found_old.append(i + lo)
                found_new.append(new[j])
            return np.concatenate(found_old), np.concatenate(found_new)
        found = np.concatenate([self.candidates(unit_of(new[lo:lo + BLOCK]), CANDIDATES, new[lo:lo + BLOCK], EF_TABLE)
                                for lo in range(0, new.size, BLOCK)])
        keep = (found >= 0) & (found < new[0])
        return found[keep], np.repeat(new, keep.sum(axis=1))


def _hnsw(dim: int) -> Any:
    import faiss

    index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.hnsw.efSearch = EF_SEARCH
    return index
