"""Every expert's item vectors in memory, aligned to one id order, with a vectorised id -> row lookup.

Why one shared order: a request names items once and every routed expert's rows are then a single fancy-index;
why a sorted id array with ``np.searchsorted`` instead of a dict: the lookup of a whole request is one numpy call,
so the hot path has no per-item Python loop.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.vectors import SortedIds


class ItemCatalog:
    """Item ids and per-expert float16 vectors (rows in the same order) for a fixed set of experts."""

    def __init__(self, ids: np.ndarray, vectors: Mapping[str, np.ndarray]) -> None:
        ids = np.asarray(ids).astype(str)
        for expert, matrix in vectors.items():
            if matrix.shape[0] != ids.shape[0]:
                raise ValueError(f"{expert}: {matrix.shape[0]} vectors for {ids.shape[0]} ids")
        self.ids = ids
        self.vectors: dict[str, np.ndarray] = {e: np.ascontiguousarray(m, dtype=np.float16) for e, m in vectors.items()}
        self.markets: np.ndarray | None = None
        self._masks: dict[str, np.ndarray] = {}
        self._lookup = SortedIds(ids, probe_few=True)  # requests look up a hundred ids at a time
        if self._lookup.has_duplicates():
            raise HetmoeError("item store has duplicate item ids; rebuild it with 'hetmoe embed --overwrite'")

    @classmethod
    def aligned(cls, per_expert: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> ItemCatalog:
        """Build from each expert's own (ids, vectors); rows are reordered to the first expert's id order.

        Every expert must hold the same item set: an item missing from one routed expert could not be scored.
        """
        experts = list(per_expert)
        if not experts:
            raise HetmoeError("the model names no experts; refit it with 'hetmoe fit-head'")
        base_ids = np.asarray(per_expert[experts[0]][0]).astype(str)
        base = cls(base_ids, {})
        vectors: dict[str, np.ndarray] = {}
        for expert in experts:
            ids, matrix = per_expert[expert]
            ids = np.asarray(ids).astype(str)
            if ids.shape[0] == base_ids.shape[0] and np.array_equal(ids, base_ids):
                vectors[expert] = matrix
                continue
            rows, unknown = base.rows(ids)
            if unknown.size or ids.shape[0] != base_ids.shape[0]:
                raise HetmoeError(
                    f"expert stores disagree on the item set ({expert}: {ids.shape[0]} items, "
                    f"{experts[0]}: {base_ids.shape[0]}); re-embed the same dataset with 'hetmoe embed' for every expert"
                )
            aligned = np.empty_like(matrix)
            aligned[rows] = matrix
            vectors[expert] = aligned
        return cls(base_ids, vectors)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def set_markets(self, item_ids: Sequence[str] | np.ndarray, markets: Sequence[str] | np.ndarray) -> int:
        """Record each item's market (search keeps to the query's market); returns how many catalog items got none."""
        rows, unknown = self.rows(item_ids)
        known = np.ones(len(item_ids), dtype=bool)
        known[unknown] = False
        column = np.full(len(self), "", dtype=object)
        column[rows] = np.asarray(markets, dtype=object)[known]
        self.markets = column.astype(str)
        self._masks = {}
        return int((self.markets == "").sum())

    def market_mask(self, market: str) -> np.ndarray | None:
        """Rows whose item belongs to ``market``; None when markets are not recorded or no item has this market."""
        if self.markets is None:
            return None
        mask = self._masks.get(market)
        if mask is None:
            mask = self.markets == market
            mask.setflags(write=False)
            self._masks[market] = mask
        return mask if mask.any() else None

    def rows(self, item_ids: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows of the known ids, positions in ``item_ids`` of the unknown ones), one vectorised pass."""
        rows, found = self._lookup.find(item_ids)
        return rows[found], np.flatnonzero(~found)

    def lookup(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Rows of the known ids, a mask over ``item_ids`` marking them, and the unknown ids as listed by the client."""
        rows, unknown_pos = self.rows(item_ids)
        known = np.ones(len(item_ids), dtype=bool)
        known[unknown_pos] = False
        return rows, known, [item_ids[i] for i in unknown_pos.tolist()]

    def take(self, expert: str, rows: np.ndarray) -> np.ndarray:
        """float32 vectors of ``rows`` for one expert (float16 in memory halves RAM; math runs in float32)."""
        return self.vectors[expert][rows].astype(np.float32)
