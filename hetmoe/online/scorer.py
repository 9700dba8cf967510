"""The online Scorer: encode only the query, only with its routed experts, and score against precomputed items.

Why this shape: item vectors were embedded once offline (stage one), so a request costs one cheap router-expert
encode, the routed experts' query encodes (run concurrently, each on its own thread, sharing the cores by cost: the
packaged encoders spend their time in native code that releases the GIL), and a few small matrix products in the
numpy head. Query vectors and routing decisions are cached in bounded LRUs because search traffic repeats queries
heavily.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.moe.heads.stacked import reads_router_expert
from hetmoe.online.cache import LRUCache
from hetmoe.online.catalog import ItemCatalog
from hetmoe.online.checks import SearchUnavailable, check_count, check_item_ids, check_market, check_query
from hetmoe.online.model_encoders import encodable, model_encoders
from hetmoe.online.results import Routing, ScoreRequest, ScoreResult, SearchResult
from hetmoe.online.retrieval import Retriever
from hetmoe.online.routing import QueryRouter, RouteEntry
from hetmoe.pairs.batch import PairBatch
from hetmoe.pairs.context import FeatureContext
from hetmoe.pairs.features import PairFeatures
from hetmoe.vectors import check_scores

if TYPE_CHECKING:
    from hetmoe.experts.base import Encoder
    from hetmoe.moe.infer import MoEModel


logger = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 10_000


class Scorer:
    """Route, score and search with a fitted stage-two model over its experts' precomputed item vectors."""

    def __init__(self, model: MoEModel, catalog: ItemCatalog, retriever: Retriever | None = None,
                 cache_size: int = DEFAULT_CACHE_SIZE, encoders: Mapping[str, Encoder] | None = None,
                 blas_threads: int | None = 1, encode_cores: int | None = None, lexical: Any = None) -> None:
        """Thread settings, both measured on 2 shared cores:

        - ``blas_threads``: numpy's OpenBLAS threads, set process-wide (None keeps the library default). The head
          multiplies ~100 x 48 matrices, where BLAS threads only add hand-offs: one thread costs ~10x less CPU per
          request.
        - ``encode_cores``: the cores one query's routed experts share (default: every core this process may use),
          split by each expert's measured cost (see :mod:`hetmoe.online.encoding`).
        """
        missing = [e for e in model.experts if e not in catalog.vectors]
        if missing:
            raise HetmoeError(f"item vectors missing for expert(s) {missing}; embed them into the model's store with 'hetmoe embed'")
        for expert, dim in zip(model.experts, model.spec.dims):
            have = catalog.vectors[expert].shape[1]
            if have != dim:
                raise HetmoeError(f"expert '{expert}': store has {have}-d item vectors but the model expects {dim}-d; refit the model on this store")
        self.model = model
        self.catalog = catalog
        self.retriever = retriever
        self._markets = served_markets(model, catalog)
        if model.spec.lexical and lexical is None:
            raise HetmoeError(f"the model reads the lexical expert '{model.spec.lexical_store}'; load it with Scorer.load")
        self.lexical = lexical  # the lexical expert (computed for the query only, online)
        # what the feature blocks read from the catalog, with the query-side caches (reference rows, lexical side)
        self.context = FeatureContext(catalog, model.store_root, model.spec.ref_top, lexical, model.spec.lexical_store,
                                      cache_size)
        self._blocks = model.blocks()
        self.context.prepare(model.experts, {need for block in self._blocks.values() for need in block.needs})
        # a stacked head that reads the router expert on every query (its vector is computed for routing anyway)
        reads_router = model.stack is not None and reads_router_expert(model.spec)
        self._always = (model.spec.router_expert,) if reads_router else ()
        self._query_cache: LRUCache[tuple[str, str], np.ndarray] = LRUCache(cache_size)
        self._router = QueryRouter(model, self.query_vectors, cache_size)
        self._encoders = model_encoders(model, encoders, encode_cores)
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(model.experts)), thread_name_prefix="hetmoe-search")
        if blas_threads is not None:
            from threadpoolctl import ThreadpoolController

            ThreadpoolController().select(internal_api="openblas").limit(limits=blas_threads)

    @classmethod
    def load(cls, model_dir: str | Path, *, store_root: str | Path | None = None, data_dir: str | Path | None = None,
             cache_size: int = DEFAULT_CACHE_SIZE, with_indexes: bool | None = True,
             encoders: Mapping[str, Encoder] | None = None, blas_threads: int | None = 1,
             encode_cores: int | None = None) -> Scorer:
        """Load router + head (checking the stores' fingerprints against the model's config), every expert's item
        vectors (float16) and their FAISS indexes: required with ``with_indexes=True``, skipped with False, and with
        None loaded when every expert has one (else :meth:`search` raises :class:`SearchUnavailable` while
        :meth:`score` works). Encoders load lazily.

        Item markets (so that search keeps to the query's market) come from ``data_dir``'s items.parquet, by default
        the dataset the model was fitted on; without it search ranks the whole catalog. ``encoders`` hands over
        already-built encoders (checked against the model's cards) instead of building them again; thread
        settings as in the constructor.
        """
        from hetmoe.online.loading import load_parts

        model, catalog, retriever, lexical = load_parts(model_dir, store_root, data_dir, with_indexes)
        return cls(model, catalog, retriever, cache_size, encoders, blas_threads, encode_cores, lexical)

    # ----- identity ---------------------------------------------------------------------------------------------
    @property
    def experts(self) -> list[str]:
        return self.model.experts

    @property
    def markets(self) -> list[str]:
        """The markets requests may name: the model's, then (with a transfer head) the catalog's others."""
        return self._markets

    @property
    def n_items(self) -> int:
        return len(self.catalog)

    # ----- query encoding ---------------------------------------------------------------------------------------
    def encoder(self, expert: str) -> Encoder:
        """The expert's query encoder, built on first use from the card the model recorded, then kept."""
        if expert not in self._encoders:
            raise HetmoeError(f"expert '{expert}' is not used by this model (has: {', '.join(encodable(self.model))})")
        return self._encoders.get(expert)

    @property
    def encode_calls(self) -> dict[str, int]:
        """Query-encoding calls per expert so far (one call may carry many texts)."""
        return dict(self._encoders.calls)

    def encoding_stats(self) -> dict[str, Any]:
        """Cores per query, each expert's probed one-core cost, and its measured latency with one thread vs more."""
        return {"cores": self._encoders.cores, "cost_ms": {e: round(c, 3) for e, c in self._encoders.cost_ms.items()},
                "threads": self._encoders.chooser.summary()}

    def warm(self, experts: Iterable[str] | None = None) -> None:
        """Build (and time) encoders (default: all) and the catalog's id lookup now: the first request pays for neither."""
        for expert in experts if experts is not None else encodable(self.model):
            self.encoder(expert)
        self.catalog.rows(self.catalog.ids[:1])

    def query_vectors(self, queries: Sequence[str], experts_per_query: Sequence[Iterable[str]],
                      known: Sequence[Mapping[str, np.ndarray]] | None = None) -> list[dict[str, np.ndarray]]:
        """Per query, {expert: (d,) vector} for the experts it needs: ``known`` ones as given (raw, e.g. a store's query
        vectors, so bulk scoring of judged queries equals ``eval``), cache misses batch-encoded, experts concurrently."""
        found: list[dict[str, np.ndarray]] = [{} for _ in queries]
        todo: dict[str, dict[str, list[int]]] = {}  # expert -> text -> query positions
        for qi, (text, experts) in enumerate(zip(queries, experts_per_query)):
            for expert in experts:
                vec = known[qi].get(expert) if known is not None else None
                vec = self._query_cache.get((expert, text)) if vec is None else vec
                if vec is None:
                    todo.setdefault(expert, {}).setdefault(text, []).append(qi)
                else:
                    found[qi][expert] = vec
        if not todo:
            return found
        jobs = [(expert, list(texts)) for expert, texts in todo.items()]
        results = self._encoders.encode(jobs)
        for (expert, texts), matrix in zip(jobs, results):
            for text, vec in zip(texts, matrix):
                vec.setflags(write=False)
                self._query_cache.put((expert, text), vec)
                for qi in todo[expert][text]:
                    found[qi][expert] = vec
        return found

    # ----- routing ----------------------------------------------------------------------------------------------
    def route(self, query: str, market: str) -> Routing:
        """The experts this query is routed to in ``market`` (best first) and their gates."""
        return self._router.routes([check_query(query)], [check_market(market, self.markets)])[0].routing

    def route_batch(self, queries: Sequence[str], markets: Sequence[str],
                    known: Sequence[Mapping[str, np.ndarray]] | None = None) -> list[Routing]:
        """Routing of many queries in one router call (``known``: per query, raw vectors computed in advance)."""
        return [entry.routing for entry in self._router.routes(list(queries), list(markets), known)]

    # ----- scoring ----------------------------------------------------------------------------------------------
    def score(self, query: str, item_ids: Sequence[str], market: str) -> ScoreResult:
        """Head scores of (query, item) for the known ids in request order; unknown ids are listed in the result."""
        return self.score_batch([ScoreRequest(query, check_item_ids(item_ids), market)])[0]

    def score_batch(self, requests: Sequence[ScoreRequest],
                    known: Sequence[Mapping[str, np.ndarray]] | None = None) -> list[ScoreResult]:
        """Score many queries' candidate lists in one head call; a pair's score does not depend on the other ids sent.

        Every request is checked first (:mod:`hetmoe.online.checks`); known items of another market than the
        request's are scored and listed in ``other_market_item_ids`` (judgments never pair those).
        ``known``: per request, query vectors computed in advance ({expert: raw vector}) that replace encoding.
        """
        if not requests:
            return []
        for r in requests:
            check_query(r.query)
            check_market(r.market, self.markets)
            check_item_ids(r.item_ids)
        routes, looked, inputs = self._prepare(requests, known)
        counts = np.array([rows.shape[0] for rows, _, _ in looked])
        scores = check_scores(self.model.score(*inputs), "these requests") if inputs is not None else np.zeros(0)
        parts = np.split(scores, np.cumsum(counts)[:-1])
        out: list[ScoreResult] = []
        for i, (req, (found, known, unknown), part) in enumerate(zip(requests, looked, parts)):
            ids = req.item_ids if not unknown else [t for t, ok in zip(req.item_ids, known.tolist()) if ok]
            out.append(ScoreResult(ids, part, routes[i].routing, unknown, self._other_market(ids, found, req.market)))
        return out

    def head_inputs(self, requests: Sequence[ScoreRequest]) -> tuple[PairFeatures, tuple[np.ndarray, np.ndarray]] | None:
        """The head's arguments for these requests (unchecked): their features and routing; None when no id is in
        the catalog. For timing the head alone (bench/online.py)."""
        return self._prepare(requests, None)[2]

    def _prepare(self, requests: Sequence[ScoreRequest], known: Sequence[Mapping[str, np.ndarray]] | None
                 ) -> tuple[list[RouteEntry], list[tuple[np.ndarray, np.ndarray, list[str]]],
                            tuple[PairFeatures, tuple[np.ndarray, np.ndarray]] | None]:
        """Route, look up and encode ``requests``: (routes, each request's catalog lookup, the head's arguments).

        Without one known id there is nothing to score: no query is encoded and the head's arguments are None (the
        one place empty requests are handled; ``_features`` always gets pairs)."""
        routes = self._router.routes([r.query for r in requests], [r.market for r in requests], known)
        looked = [self.catalog.lookup(r.item_ids) for r in requests]
        rows = np.concatenate([rows for rows, _, _ in looked])
        if rows.shape[0] == 0:
            return routes, looked, None
        qvecs = self.query_vectors([r.query for r in requests], [self._head_experts(rt) for rt in routes], known)
        groups = np.repeat(np.arange(len(requests)), [rows.shape[0] for rows, _, _ in looked])
        keys = [(r.query, r.market) for r in requests]
        return routes, looked, self._features(routes, qvecs, rows, groups, keys)

    def _head_experts(self, route: RouteEntry) -> tuple[str, ...]:
        """The experts whose query vectors the head reads for this route: the routed ones, and the router expert
        when the stacked head reads it on every query."""
        return route.routing.experts + tuple(e for e in self._always if e not in route.routing.experts)

    def _features(self, routes: Sequence[RouteEntry], qvecs: Sequence[dict[str, np.ndarray]], rows: np.ndarray,
                  groups: np.ndarray, keys: Sequence[tuple[str, str]]) -> tuple[PairFeatures, tuple[np.ndarray, np.ndarray]]:
        """The requests' pairs (one catalog row per pair) with their features and routing; a query row carries only
        the experts it was encoded with (``keys``: its text and market)."""
        used = sorted({e for q in qvecs for e in q}, key=self.model.experts.index)
        query_vecs, has = {}, {}
        for expert in used:
            zero = np.zeros(self.catalog.vectors[expert].shape[1], np.float32)
            query_vecs[expert] = np.stack([q.get(expert, zero) for q in qvecs]).astype(np.float32, copy=False)
            has[expert] = np.array([expert in q for q in qvecs])
        routing = (np.stack([r.idx for r in routes]), np.stack([r.gates for r in routes]))
        return self.features([t for t, _ in keys], [m for _, m in keys], query_vecs, has, rows, groups), routing

    def features(self, texts: Sequence[str], markets: Sequence[str], query_vecs: Mapping[str, np.ndarray],
                 has: Mapping[str, np.ndarray], rows: np.ndarray, groups: np.ndarray) -> PairFeatures:
        """Pairs (query row ``groups[j]``, catalog row ``rows[j]``) with the model's feature blocks over this catalog:
        what every scoring call of the Scorer, and bulk scoring, hands the model."""
        return PairFeatures(PairBatch.from_rows(texts, markets, query_vecs, rows, groups, has), self.context, self._blocks)

    # ----- retrieval + rerank -----------------------------------------------------------------------------------
    def search(self, query: str, market: str, k: int = 10, candidates: int = 200) -> SearchResult:
        """Retrieve ``candidates`` per routed expert from its FAISS index (items of ``market`` only, when the catalog
        knows item markets), union them, rerank the union with the head in one call, keep the best k."""
        query, market = check_query(query), check_market(market, self.markets)
        k, candidates = check_count("k", k), check_count("candidates", candidates)
        if self.retriever is None:
            raise SearchUnavailable(
                "search needs the experts' FAISS indexes, which this Scorer was loaded without; build them with "
                f"'hetmoe index --expert E --store {self.model.store_root}' for each of {', '.join(self.experts)} "
                "and load again (scoring given item ids works without them)")
        route = self._router.routes([query], [market])[0]
        qvecs = self.query_vectors([query], [self._head_experts(route)])[0]
        rows, seen = self.retriever.candidates({e: qvecs[e] for e in route.routing.experts}, candidates, market, self._pool)
        if rows.shape[0] == 0:
            return SearchResult([], np.zeros(0), [], route.routing, 0)
        inputs = self._features([route], [qvecs], rows, np.zeros(rows.shape[0], np.int64), [(query, market)])
        scores = check_scores(self.model.score(*inputs), "this search")
        top = np.argsort(-scores, kind="stable")[:k]
        names = np.array(route.routing.experts, dtype=object)
        seen_by = [names[mask].tolist() for mask in seen[top]]
        return SearchResult(self.catalog.ids[rows[top]].tolist(), scores[top], seen_by, route.routing, int(rows.shape[0]))

    def _other_market(self, ids: list[str], rows: np.ndarray, market: str) -> list[str]:
        """The ids (rows in the same order) whose item belongs to another known market."""
        if self.catalog.markets is None or not ids:
            return []
        theirs = self.catalog.markets[rows]
        return [ids[i] for i in np.flatnonzero((theirs != market) & (theirs != "")).tolist()]

    def close(self) -> None:
        """Stop the encoding and search threads (the Scorer is unusable afterwards)."""
        self._encoders.close()
        self._pool.shutdown(wait=False)

    def clear_caches(self) -> None:
        """Forget cached query vectors, routing decisions, reference rows and lexical query sides (benchmarks of the
        uncached path; hot model swaps)."""
        self._query_cache.clear()
        self._router.clear()
        self.context.clear_caches()


def served_markets(model: MoEModel, catalog: ItemCatalog) -> list[str]:
    """The model's markets and, when it has a head for markets it never saw (:mod:`hetmoe.moe.transfer`), the other
    markets its catalog holds items of: a new market is served from the day its items are embedded."""
    known = model.markets
    if model.transfer is None or catalog.markets is None:
        return known
    return known + sorted(set(catalog.markets.tolist()) - set(known) - {""})
