"""Sparse pair joins: which entries of each pair's item row are also in its query's set, for many pairs at once.

Item rows are CSR (``indptr``, ``indices``). Every pair's item entries are gathered and looked up in their query's
set: with one query (the online call) through a thread-local dense table over the index space (set, gather, reset:
no search at all); with many (bulk training pairs) first through a dense table of the indices any query holds (most
entries drop out there), then in one sorted key array, key = query * width + index, with one ``searchsorted``. Either way a call is a handful of numpy passes over the gathered entries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np

TABLE_MAX = np.iinfo(np.int16).max  # a query with more distinct indices than this takes the searchsorted path


class _Tables(threading.local):
    """Per-thread zeroed int16 tables by width, reused across calls (each call resets what it set)."""

    def __init__(self) -> None:
        self.by_width: dict[int, np.ndarray] = {}

    def get(self, width: int) -> np.ndarray:
        table = self.by_width.get(width)
        if table is None:
            table = self.by_width.setdefault(width, np.zeros(width, dtype=np.int16))
        return table


_TABLES = _Tables()


@dataclass(frozen=True)
class QuerySets:
    """Sorted distinct keys, key = query * width + index; ``n_queries`` queries."""

    keys: np.ndarray
    width: int
    n_queries: int

    @classmethod
    def build(cls, owner: np.ndarray, indices: np.ndarray, width: int, n_queries: int) -> QuerySets:
        """From (query, index) entries; repeats are merged."""
        return cls(np.unique(owner.astype(np.int64) * width + indices), width, n_queries)

    def lookup(self, groups: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Position in ``keys`` of (groups[j], indices[j]), or -1 where that query lacks the index."""
        if self.keys.size == 0 or indices.size == 0:
            return np.full(indices.size, -1, dtype=np.int64)
        if self.tabled:
            return self._table_lookup(indices).astype(np.int64) - 1
        out = np.full(indices.size, -1, dtype=np.int64)
        maybe = np.flatnonzero(self.present[indices])  # most entries are in no query at all: one gather drops them
        keys = groups[maybe] * self.width + indices[maybe].astype(np.int64)
        loc = np.searchsorted(self.keys, keys)
        loc[loc == self.keys.size] = 0
        out[maybe] = np.where(self.keys[loc] == keys, loc, -1)
        return out

    @cached_property
    def present(self) -> np.ndarray:
        """(width,) bool: the indices any of the queries holds."""
        table = np.zeros(self.width, dtype=bool)
        table[self.keys % self.width] = True
        return table

    @property
    def tabled(self) -> bool:
        """One query with few enough indices for the int16 table path."""
        return self.n_queries == 1 and 0 < self.keys.size <= TABLE_MAX

    def _table_lookup(self, indices: np.ndarray) -> np.ndarray:
        """1 + position of each index among the keys, 0 when absent (single query: keys are the indices)."""
        table = _TABLES.get(self.width)
        table[self.keys] = np.arange(1, self.keys.size + 1, dtype=np.int16)
        try:
            return table[indices]
        finally:
            table[self.keys] = 0


def gather(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ends, position): every CSR entry of rows[0], rows[1], ... in order, and where each pair's run ends."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    ends = np.cumsum(lengths)
    position = np.arange(int(ends[-1]) if ends.size else 0, dtype=np.int64) + np.repeat(
        starts - ends + lengths, lengths
    )
    return ends, position


def hits(
    indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray, groups: np.ndarray, queries: QuerySets
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pair, item position, query key position) of every item entry its pair's query also holds."""
    ends, position = gather(indptr, rows)
    if queries.tabled:  # the online call: no per-entry pair index needed, only for the hits
        found = queries._table_lookup(indices[position])
        hit = np.flatnonzero(found)
        loc = found[hit].astype(np.int64) - 1
    else:
        pair = np.repeat(np.arange(rows.size), np.diff(ends, prepend=0))
        loc = queries.lookup(groups[pair], indices[position]) if queries.keys.size else np.full(position.size, -1)
        hit = np.flatnonzero(loc >= 0)
        loc = loc[hit]
    return np.searchsorted(ends, hit, side="right"), position[hit], loc
