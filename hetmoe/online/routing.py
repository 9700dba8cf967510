"""Routing of online queries: the model's router run on the router expert's query vector, cached per (text, market).

Why a cache keyed by text and market: search traffic repeats queries heavily, and a query's routing depends only on
those two (its router vector is a function of the text).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hetmoe.online.cache import LRUCache
from hetmoe.online.results import Routing

if TYPE_CHECKING:
    from hetmoe.moe.infer import MoEModel

QueryVectors = Callable[[Sequence[str], Sequence[Iterable[str]], Sequence[Mapping[str, np.ndarray]] | None],
                        list[dict[str, np.ndarray]]]


@dataclass(frozen=True)
class RouteEntry:
    """One query's routing: the rows the head reads and the public view of the same decision."""

    idx: np.ndarray  # (k,) indices of the routed experts in the model's expert order
    gates: np.ndarray  # (n_experts or k,) gate weights, 0 where an expert is dropped
    routing: Routing  # the experts kept (gate > 0), best first, with their gates


class QueryRouter:
    """Route queries in batches; cache misses go to the model's router in one call."""

    def __init__(self, model: MoEModel, query_vectors: QueryVectors, cache_size: int) -> None:
        self.model = model
        self._query_vectors = query_vectors
        self._cache: LRUCache[tuple[str, str], RouteEntry] = LRUCache(cache_size)

    def routes(self, queries: Sequence[str], markets: Sequence[str],
               known: Sequence[Mapping[str, np.ndarray]] | None = None) -> list[RouteEntry]:
        """Routing per query; with ``known`` vectors the cache is bypassed (it is keyed by text alone)."""
        cache = self._cache if known is None else None
        entries: list[RouteEntry | None] = [None if cache is None else cache.get(key) for key in zip(queries, markets)]
        miss = [i for i, e in enumerate(entries) if e is None]
        if miss:
            router = self.model.router_expert
            vecs = None
            if router is not None:
                given = None if known is None else [known[i] for i in miss]
                got = self._query_vectors([queries[i] for i in miss], [[router]] * len(miss), given)
                vecs = np.stack([g[router] for g in got])
            idx, gates = self.model.route(np.array([markets[i] for i in miss], dtype=object), vecs)
            for row, i in enumerate(miss):
                keep = np.flatnonzero(gates[row] > 0)
                keep = keep[np.argsort(-gates[row][keep], kind="stable")]  # best first, whatever the router's order
                entry = RouteEntry(idx[row], gates[row], Routing(tuple(self.model.experts[j] for j in idx[row][keep]),
                                                                 tuple(float(g) for g in gates[row][keep])))
                if cache is not None:
                    cache.put((queries[i], markets[i]), entry)
                entries[i] = entry
        return entries  # type: ignore[return-value]

    def clear(self) -> None:
        self._cache.clear()
