"""Judged pairs for training and evaluation: a :class:`~hetmoe.pairs.batch.PairBatch` of the judged (query, item)
pairs, their features from the one feature path (:mod:`hetmoe.pairs`), and their labels.

Why one gather: training, the baselines and evaluation all read the same vectors; each expert's rows for the judged
queries and items are loaded once and indexed per pair, so memory stays at (queries + items) x dims, and every
feature is computed by the blocks the Scorer uses, over the same catalog context.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from hetmoe.errors import HetmoeError
from hetmoe.moe.reference import REF_TOP
from hetmoe.moe.spec import PAIR_STATS
from hetmoe.pairs.features import PairFeatures

log = logging.getLogger(__name__)
NET_STATS = [0, 2, 3]  # the net's statistics of the stats block: cos, z, gap


@dataclass(frozen=True)
class PairSet:
    """Judged pairs with their features (``features``: batch, blocks) and labels, for ``experts`` in order."""

    features: PairFeatures
    experts: list[str]
    markets: list[str]  # the model's markets first, then the dataset's others
    query_ids: np.ndarray  # (n_q,) str
    item_ids: np.ndarray  # (n_i,) str
    rvec: np.ndarray  # (n_q, d_r) router expert's normalised query vectors
    q_market: np.ndarray  # (n_q,) int index into markets
    y: np.ndarray  # (n,) float32 0/1 relevant
    label: np.ndarray  # (n,) float64 graded label
    split: np.ndarray  # (n,) str
    lex_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.features)

    @property
    def qi(self) -> np.ndarray:
        return self.features.batch.qi

    @property
    def di(self) -> np.ndarray:
        return self.features.batch.di

    @property
    def q(self) -> list[np.ndarray]:
        """Per expert (n_q, d) unit query vectors."""
        return [self.features.q_units(e) for e in self.experts]

    @property
    def d(self) -> list[np.ndarray]:
        """Per expert (n_i, d) unit item vectors."""
        return [self.features.d_units(e) for e in self.experts]

    @cached_property
    def stats(self) -> np.ndarray:
        """(n, N, 3) float32 the net's statistics (cos, z, gap) of each expert."""
        return np.stack([self.features.block("stats", e)[:, NET_STATS] for e in self.experts], axis=1)

    @cached_property
    def lex(self) -> np.ndarray | None:
        """(n, F) float32 lexical features (None: no lexical expert)."""
        return self.features.block("lexical") if "lexical" in self.features.blocks else None

    @cached_property
    def nbr(self) -> np.ndarray | None:
        """(n, N, 10) float32 item-neighbourhood features of each expert (None: not loaded)."""
        if not self.neighbourhood:
            return None
        return np.stack([self.features.block("neighbourhood", e) for e in self.experts], axis=1)

    @property
    def neighbourhood(self) -> bool:
        return "neighbourhood" in self.features.blocks

    @property
    def market_names(self) -> np.ndarray:
        """(n,) market of each pair."""
        return np.asarray(self.markets, dtype=object)[self.q_market[self.qi]]

    def subset(self, mask: np.ndarray) -> PairSet:
        """The pairs where ``mask`` holds; row vectors are shared, not copied."""
        return replace(self, features=self.features.subset(mask), y=self.y[mask], label=self.label[mask],
                       split=self.split[mask])

    def select_experts(self, names: list[str]) -> PairSet:
        """The same pairs seen by a subset of experts, in the given order."""
        return replace(self, features=self.features.select_experts(names), experts=list(names))

    @property
    def dims(self) -> list[int]:
        return [int(m.shape[1]) for m in self.q]

    @classmethod
    def from_arrays(cls, experts: list[str], q: list[np.ndarray], d: list[np.ndarray], qi: np.ndarray, di: np.ndarray,
                    y: np.ndarray, markets: list[str], q_market: np.ndarray, router: np.ndarray,
                    pair_stats: str = "reference", label: np.ndarray | None = None) -> PairSet:
        """Judged pairs over vectors held in memory (tests, synthetic benchmarks): per expert the (n_q, d) query and
        (n_i, d) item vectors; the catalog is the items (:func:`hetmoe.pairs.arrays.in_memory_features`)."""
        from hetmoe.pairs.arrays import in_memory_features
        from hetmoe.vectors import l2_normalize

        names = [markets[m] for m in np.asarray(q_market).tolist()]
        feats = in_memory_features(dict(zip(experts, q)), dict(zip(experts, d)), qi, di, names, pair_stats=pair_stats)
        for expert in experts:
            feats.block("stats", expert)
        return cls(feats, list(experts), list(markets), np.array([f"q{i}" for i in range(len(names))], dtype=object),
                   np.array([f"i{i}" for i in range(d[0].shape[0])], dtype=object), l2_normalize(router),
                   np.asarray(q_market, np.int64), np.asarray(y, np.float32),
                   np.asarray(y if label is None else label, np.float64), np.full(len(qi), "train", dtype=object))


def load_pairs(
    dataset: object,
    store_root: str | Path,
    experts: list[str],
    splits: list[str],
    router_expert: str,
    markets: list[str] | None = None,
    pair_stats: str = "reference",
    ref_top: int = REF_TOP,
    lexical_store: str = "",
    neighbourhood: bool = False,
    extra_blocks: Sequence[str] = (),
) -> PairSet:
    """Pairs of ``splits`` with every expert's features; ``markets`` fixes the first market indices (a model's
    markets), markets it lacks follow in the dataset's order. ``pair_stats``: see :mod:`hetmoe.pairs.blocks.stats`;
    ``lexical_store``: the lexical expert's store name whose features fill ``lex`` ("" = none); ``neighbourhood``:
    the item-neighbourhood block too (its tables are built into the stores on first use); ``extra_blocks``: more
    registered blocks by name (what a model's tree heads read beside these)."""
    from hetmoe.pairs.batch import PairBatch
    from hetmoe.pairs.blocks import make_block
    from hetmoe.pairs.catalog import judged_context
    from hetmoe.vectors import l2_normalize

    if pair_stats not in PAIR_STATS:
        raise HetmoeError(f"pair_stats must be one of {PAIR_STATS}, got {pair_stats!r}")
    if neighbourhood and pair_stats != "reference":
        raise HetmoeError("item-neighbourhood features need pair_stats='reference' (they use the query's catalog search)")
    judg = dataset.judgments.filter(pl.col("split").is_in(splits))  # type: ignore[attr-defined]
    if judg.height == 0:
        raise HetmoeError(f"{dataset.root}: no judgments in split(s) {', '.join(splits)}")  # type: ignore[attr-defined]
    queries = dataset.queries.select("query_id", "text", "market")  # type: ignore[attr-defined]
    query_ids = np.asarray(judg["query_id"].unique(maintain_order=True).to_list(), dtype=object)
    item_ids = np.asarray(judg["item_id"].unique(maintain_order=True).to_list(), dtype=object)
    qpos = {q: i for i, q in enumerate(query_ids)}
    ipos = {d: i for i, d in enumerate(item_ids)}
    qi = np.fromiter((qpos[q] for q in judg["query_id"].to_list()), dtype=np.int64, count=judg.height)
    di = np.fromiter((ipos[d] for d in judg["item_id"].to_list()), dtype=np.int64, count=judg.height)
    known = list(markets) if markets is not None else []
    markets = known + [m for m in dataset.markets if m not in known]  # type: ignore[attr-defined]
    mpos = {m: j for j, m in enumerate(markets)}
    by_id = dict(zip(queries["query_id"].to_list(), zip(queries["text"].to_list(), queries["market"].to_list())))
    texts = [by_id[q][0] for q in query_ids.tolist()]
    q_markets = np.array([by_id[q][1] for q in query_ids.tolist()], dtype=object).astype(str)

    context, query_vecs = judged_context(dataset, store_root, [*experts, router_expert], query_ids, ref_top,
                                         lexical_store)
    rows, missing = context.catalog.rows(item_ids)
    if missing.size:
        raise HetmoeError(f"item store lacks ids the dataset judges (e.g. {item_ids[missing[0]]}); re-run 'hetmoe embed' "
                          "for this dataset")
    batch = PairBatch(texts, q_markets, {e: query_vecs[e] for e in experts}, rows, qi, di)
    blocks = {"stats": make_block("stats", {"pair_stats": pair_stats})}
    if neighbourhood:
        blocks["neighbourhood"] = make_block("neighbourhood")
    if lexical_store:
        blocks["lexical"] = make_block("lexical", {"store": lexical_store})
    blocks.update({name: make_block(name) for name in extra_blocks})
    features = PairFeatures(batch, context, blocks)
    for name, block in blocks.items():  # computed once here, before any fork: every job reads the same arrays
        for expert in experts if block.per_expert else [None]:
            features.block(name, expert)
    log.debug("loaded %d pairs over %d queries and %d items", qi.shape[0], len(query_ids), len(item_ids))
    return PairSet(
        features=features,
        experts=list(experts),
        markets=markets,
        query_ids=query_ids,
        item_ids=item_ids,
        rvec=l2_normalize(query_vecs[router_expert]),
        q_market=np.array([mpos.get(m, -1) for m in q_markets], dtype=np.int64),
        y=judg["relevant"].to_numpy().astype(np.float32),
        label=judg["label"].to_numpy().astype(np.float64),
        split=np.asarray(judg["split"].to_list(), dtype=object),
        lex_names=tuple(blocks["lexical"].columns) if lexical_store else (),
    )


def carve_by_query(pairs: PairSet, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (fit, held-out): ``fraction`` of each market's queries held out, seeded."""
    rng = np.random.default_rng(seed)
    present = np.unique(pairs.qi)
    held = np.zeros(pairs.q_market.shape[0], dtype=bool)
    for m in np.unique(pairs.q_market[present]):
        members = present[pairs.q_market[present] == m]
        n_out = max(1, int(round(fraction * members.size))) if members.size > 1 else 0
        held[rng.choice(members, size=n_out, replace=False)] = True
    out = held[pairs.qi]
    return ~out, out
