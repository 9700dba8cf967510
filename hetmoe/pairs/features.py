"""``PairFeatures``: the feature columns of one :class:`~hetmoe.pairs.batch.PairBatch`, computed on first use by the
feature blocks (:mod:`hetmoe.pairs.blocks`) over a :class:`~hetmoe.pairs.context.FeatureContext`, then kept.

Why lazily: a head asks for the blocks it reads, for the experts it routes, and nothing else is computed (an unseen
market's queries never search the catalog; a plain net never gathers item neighbourhoods). Query-level work (unit
vectors, reference rows) and item-level work (unit vectors) is done once per row and shared by the pairs and by
subsets of the batch.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.pairs.batch import PairBatch
from hetmoe.vectors import l2_normalize, pair_cosines, row_norms

if TYPE_CHECKING:
    from hetmoe.pairs.blocks.base import FeatureBlock
    from hetmoe.pairs.context import FeatureContext


class PairFeatures:
    """Per-pair feature blocks and the per-row intermediates they share, for one batch."""

    def __init__(self, batch: PairBatch, context: FeatureContext, blocks: Mapping[str, FeatureBlock],
                 _rows: dict[str, dict[str, Any]] | None = None) -> None:
        self.batch, self.context, self.blocks = batch, context, dict(blocks)
        self._rows = _rows if _rows is not None else {"q_units": {}, "q_norms": {}, "d_raw": {}, "d_units": {},
                                                      "d_norms": {}, "ref": {}}
        self._pairs: dict[tuple[str, str | None], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.batch)

    # ----- per-row intermediates (shared with subsets) ---------------------------------------------------------
    def _row(self, kind: str, expert: str, make: object) -> np.ndarray:
        cache = self._rows[kind]
        if expert not in cache:
            cache[expert] = make()  # type: ignore[operator]
        return cache[expert]

    def q_units(self, expert: str) -> np.ndarray:
        """(n_q, d) unit query vectors (zero rows where the query has no vector of ``expert``)."""
        return self._row("q_units", expert, lambda: l2_normalize(self._query(expert)))

    def q_norms(self, expert: str) -> np.ndarray:
        return self._row("q_norms", expert, lambda: row_norms(self._query(expert)))

    def d_raw(self, expert: str) -> np.ndarray:
        """(n_i, d) float32 item vectors as stored."""
        return self._row("d_raw", expert, lambda: self.context.catalog.take(expert, self.batch.item_rows))

    def d_units(self, expert: str) -> np.ndarray:
        return self._row("d_units", expert, lambda: l2_normalize(self.d_raw(expert)))

    def d_norms(self, expert: str) -> np.ndarray:
        return self._row("d_norms", expert, lambda: row_norms(self.d_raw(expert)))

    def reference(self, expert: str) -> tuple[np.ndarray, np.ndarray]:
        """Each query row's (top,) reference cosines and their catalog rows (zeros and -1 for rows without a vector
        of ``expert``); only query rows with pairs in this batch are searched (the rest as later subsets need)."""
        cache = self._rows["ref"]
        if expert not in cache:
            top = self.context.reference.top
            cache[expert] = (np.zeros((self.batch.n_queries, top), np.float32),
                             np.full((self.batch.n_queries, top), -1, np.int64), np.zeros(self.batch.n_queries, bool))
        ref, where, done = cache[expert]
        used = np.zeros(self.batch.n_queries, bool)
        used[self.batch.qi] = True
        at = np.flatnonzero(used & self.batch.rows_with(expert) & ~done)
        if at.size:
            keys = [(self.batch.texts[i], str(self.batch.markets[i])) for i in at.tolist()]
            ref[at], where[at] = self.context.reference.rows(expert, keys, self.q_units(expert)[at])
            done[at] = True
        return ref, where

    def _query(self, expert: str) -> np.ndarray:
        vecs = self.batch.query_vecs.get(expert)
        if vecs is None:
            raise HetmoeError(f"expert '{expert}' is read but its query vectors were not computed for this batch")
        return vecs

    # ----- per-pair values ----------------------------------------------------------------------------------
    def pairs_with(self, expert: str) -> np.ndarray:
        """(n,) bool: the pairs whose query row has a vector of ``expert``."""
        return self.batch.rows_with(expert)[self.batch.qi]

    def cosines(self, expert: str) -> np.ndarray:
        """(n,) float32 cosine of each pair whose query has ``expert``'s vector (NaN elsewhere)."""
        return self._pair(("cos", expert), lambda: self._cosines(expert))

    def _cosines(self, expert: str) -> np.ndarray:
        at = self.pairs_with(expert)
        if at.all():
            return pair_cosines(self.q_units(expert)[self.batch.qi], self.d_units(expert)[self.batch.di])
        out = np.full(len(self), np.nan, np.float32)
        out[at] = pair_cosines(self.q_units(expert)[self.batch.qi[at]], self.d_units(expert)[self.batch.di[at]])
        return out

    def block(self, name: str, expert: str | None = None) -> np.ndarray:
        """(n, columns) float32 of block ``name`` (for ``expert`` when the block is per expert)."""
        block = self.blocks.get(name)
        if block is None:
            raise HetmoeError(f"feature block '{name}' is not part of this model's inputs (has: {', '.join(self.blocks)})")
        return self._pair((name, expert), lambda: block.compute(self, expert))

    def _pair(self, key: tuple[str, str | None], make: object) -> np.ndarray:
        if key not in self._pairs:
            self._pairs[key] = make()  # type: ignore[operator]
        return self._pairs[key]

    def computed(self) -> set[str]:
        """What this batch has computed so far: ``block:expert`` names and ``reference:expert`` (tests, profiling)."""
        return {f"{name}:{expert or ''}" for name, expert in self._pairs} | {f"reference:{e}" for e in self._rows["ref"]}

    # ----- views ------------------------------------------------------------------------------------------
    def subset(self, mask: np.ndarray) -> PairFeatures:
        """The pairs where ``mask`` holds; row intermediates are shared, computed pair values are cut."""
        out = PairFeatures(self.batch.subset(mask), self.context, self.blocks, self._rows)
        out._pairs = {key: value[mask] for key, value in self._pairs.items()}
        return out

    def with_block(self, name: str, expert: str | None, values: np.ndarray) -> PairFeatures:
        """The same pairs with block ``name`` (of ``expert``) replaced by ``values`` (n, columns): an ablation."""
        out = PairFeatures(self.batch, self.context, self.blocks, self._rows)
        out._pairs = {**self._pairs, (name, expert): np.asarray(values, np.float32)}
        return out

    def select_experts(self, names: Sequence[str]) -> PairFeatures:
        """The same pairs seen by a subset of experts."""
        out = PairFeatures(self.batch.select_experts(names), self.context, self.blocks, self._rows)
        out._pairs = {key: value for key, value in self._pairs.items() if key[1] is None or key[1] in names}
        return out
