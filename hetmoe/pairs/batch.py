"""``PairBatch``: the pairs to score, in the one shape training, ``eval``, bulk ``score`` and the Scorer all build.

Why query rows and item rows with two index arrays: a query's vectors, reference row and lexical side are computed
once per query row, an item's vectors once per item row, and a pair only indexes both (judged lists share queries,
and a training batch shares items across queries), so memory is (queries + items) x dims, not pairs x dims.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from hetmoe.errors import HetmoeError


@dataclass(frozen=True)
class PairBatch:
    """Pairs ``(qi[j], di[j])`` over query rows (text, market, raw vectors) and catalog item rows.

    ``query_vecs`` holds each expert's raw query vectors (n_q, d) as the store or the encoder gave them; ``has`` marks
    the query rows that carry a vector of that expert (online, only routed experts encode a query; a row without
    one gets no features of that expert). ``item_rows`` index the :class:`~hetmoe.online.catalog.ItemCatalog` the
    features are computed over.
    """

    texts: Sequence[str]  # (n_q,) query texts (the lexical expert reads them; keys of the query caches)
    markets: np.ndarray  # (n_q,) str market of each query row
    query_vecs: Mapping[str, np.ndarray]  # expert -> (n_q, d) float32 raw
    item_rows: np.ndarray  # (n_i,) int64 catalog rows
    qi: np.ndarray  # (n,) int64 query row of each pair
    di: np.ndarray  # (n,) int64 item row (into item_rows) of each pair
    has: Mapping[str, np.ndarray] = field(default_factory=dict)  # expert -> (n_q,) bool; absent: every row

    def __post_init__(self) -> None:
        n_q = len(self.texts)
        if self.markets.shape != (n_q,):
            raise HetmoeError(f"PairBatch: {self.markets.shape[0]} markets for {n_q} query rows")
        for expert, vecs in self.query_vecs.items():
            if vecs.ndim != 2 or vecs.shape[0] != n_q or vecs.dtype != np.float32:
                raise HetmoeError(f"PairBatch: '{expert}' query vectors must be ({n_q}, d) float32, got "
                                  f"{vecs.shape} {vecs.dtype}")
        if self.qi.shape != self.di.shape:
            raise HetmoeError(f"PairBatch: {self.qi.shape[0]} query rows for {self.di.shape[0]} pairs")

    def __len__(self) -> int:
        return int(self.qi.shape[0])

    @property
    def n_queries(self) -> int:
        return len(self.texts)

    @property
    def experts(self) -> list[str]:
        return list(self.query_vecs)

    def rows_with(self, expert: str) -> np.ndarray:
        """(n_q,) bool: the query rows that carry ``expert``'s vector."""
        if expert not in self.query_vecs:
            return np.zeros(self.n_queries, bool)
        have = self.has.get(expert)
        return np.ones(self.n_queries, bool) if have is None else have

    def pair_markets(self) -> np.ndarray:
        """(n,) market of each pair."""
        return self.markets[self.qi]

    def subset(self, mask: np.ndarray) -> PairBatch:
        """The pairs where ``mask`` holds, over the same query and item rows."""
        return replace(self, qi=self.qi[mask], di=self.di[mask])

    def select_experts(self, names: Sequence[str]) -> PairBatch:
        return replace(self, query_vecs={e: self.query_vecs[e] for e in names},
                       has={e: v for e, v in self.has.items() if e in names})

    @classmethod
    def from_rows(cls, texts: Sequence[str], markets: Sequence[str], query_vecs: Mapping[str, np.ndarray],
                  rows: np.ndarray, groups: np.ndarray, has: Mapping[str, np.ndarray] | None = None) -> PairBatch:
        """Pair j scores catalog row ``rows[j]`` for query row ``groups[j]``; each distinct item is one item row (its
        vectors gathered and projected once however many queries it is scored for)."""
        items, di = np.unique(np.asarray(rows, np.int64), return_inverse=True)
        return cls(list(texts), np.asarray(markets, dtype=object).astype(str), dict(query_vecs), items,
                   np.asarray(groups, np.int64), di.ravel().astype(np.int64), dict(has or {}))
