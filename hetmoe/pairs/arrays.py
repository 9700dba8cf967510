"""Pair features over vectors held in memory: the catalog is the given items themselves.

For callers with their own vectors and no stores (tests of the heads, synthetic benchmarks): the same blocks and
context as every other path, over an in-memory :class:`~hetmoe.online.catalog.ItemCatalog` whose items are the
pairs' items (each in the market given, by default its first query's market).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hetmoe.online.catalog import ItemCatalog
from hetmoe.pairs.batch import PairBatch
from hetmoe.pairs.blocks import make_block
from hetmoe.pairs.context import FeatureContext
from hetmoe.pairs.features import PairFeatures


def in_memory_features(query_vecs: Mapping[str, np.ndarray], item_vecs: Mapping[str, np.ndarray], qi: np.ndarray,
                       di: np.ndarray, markets: Sequence[str], texts: Sequence[str] | None = None,
                       item_markets: Sequence[str] | None = None, pair_stats: str = "reference", ref_top: int = 16,
                       lexical: Any = None, has: Mapping[str, np.ndarray] | None = None,
                       neighbourhood: bool = False) -> PairFeatures:
    """PairFeatures of pairs (qi[j], di[j]) over ``query_vecs`` (n_q, d) and ``item_vecs`` (n_i, d) per expert; the
    reference search and item neighbourhoods (with ``neighbourhood``) run over these items (``item_markets`` per
    item)."""
    qi, di = np.asarray(qi, np.int64), np.asarray(di, np.int64)
    n_q, n_i = len(markets), next(iter(item_vecs.values())).shape[0]
    if item_markets is None:
        first = np.full(n_i, -1, np.int64)
        first[di[::-1]] = qi[::-1]  # each item's first query
        item_markets = [str(markets[q]) if q >= 0 else "" for q in first.tolist()]
    catalog = ItemCatalog(np.array([f"item{i:07d}" for i in range(n_i)]), item_vecs)
    catalog.set_markets(catalog.ids, np.asarray(item_markets, dtype=object).astype(str))
    context = FeatureContext(catalog, None, ref_top, lexical, "lexical" if lexical is not None else "")
    batch = PairBatch([str(t) for t in texts] if texts is not None else [f"query {i}" for i in range(n_q)],
                      np.asarray(markets, dtype=object).astype(str),
                      {e: np.asarray(v, np.float32) for e, v in query_vecs.items()}, np.arange(n_i), qi, di,
                      dict(has or {}))
    blocks = {"stats": make_block("stats", {"pair_stats": pair_stats})}
    if neighbourhood:
        blocks["neighbourhood"] = make_block("neighbourhood")
    if lexical is not None:
        blocks["lexical"] = make_block("lexical", {"store": "lexical"})
    return PairFeatures(batch, context, blocks)
