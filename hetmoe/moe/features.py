"""Gather judged pairs and their experts' vectors from the stores, once, as float32 arrays.

Why one gather: training, the baselines and evaluation all read the same vectors; loading each expert's rows for the
judged queries and items once (L2-normalised) and indexing them per pair keeps memory at (queries + items) x dims
instead of pairs x dims. Per-expert pair statistics are computed here with the same code the inference path uses:
by default against each query's reference cosines over its market's catalog (:mod:`hetmoe.moe.reference`, request
independent), or with ``pair_stats="listwise"`` within the query's judged list (:mod:`hetmoe.moe.pairstats`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from hetmoe.errors import HetmoeError
from hetmoe.moe.pairstats import group_stats
from hetmoe.moe.reference import REF_TOP, market_top_cosines, reference_stats
from hetmoe.moe.spec import PAIR_STATS
from hetmoe.vectors import l2_normalize, pair_cosines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairSet:
    """Judged pairs (n) over shared query (n_q) and item (n_i) vector matrices, one per expert in ``experts`` order."""

    experts: list[str]
    markets: list[str]
    query_ids: np.ndarray  # (n_q,) str
    item_ids: np.ndarray  # (n_i,) str
    q: list[np.ndarray]  # per expert (n_q, d_e) float32, normalised
    d: list[np.ndarray]  # per expert (n_i, d_e) float32, normalised
    d_raw_norm: list[np.ndarray]  # per expert (n_i,) raw item vector norms (for dot-product features)
    q_raw_norm: list[np.ndarray]  # per expert (n_q,) raw query vector norms
    rvec: np.ndarray  # (n_q, d_r) router expert's normalised query vectors
    q_market: np.ndarray  # (n_q,) int index into markets
    qi: np.ndarray  # (n,) query row of each pair
    di: np.ndarray  # (n,) item row of each pair
    stats: np.ndarray  # (n, N, 3) float32
    ref: list[np.ndarray]  # per expert (n_q, top) reference cosines ("reference" statistics), else empty
    y: np.ndarray  # (n,) float32 0/1 relevant
    label: np.ndarray  # (n,) float64 graded label
    split: np.ndarray  # (n,) str
    lex: np.ndarray | None = None  # (n, F) float32 lexical features of each pair (None: no lexical expert)
    lex_names: tuple[str, ...] = ()
    # per expert the vectors as the store holds them (float16 when lossless), so eval scores exactly what the Scorer scores
    q_stored: list[np.ndarray] = field(default_factory=list)  # (n_q, d_e)
    d_stored: list[np.ndarray] = field(default_factory=list)  # (n_i, d_e)
    nbr: np.ndarray | None = None  # (n, N, 10) float32 item-neighbourhood features (:mod:`hetmoe.moe.neighbourhood`)

    def __len__(self) -> int:
        return int(self.qi.shape[0])

    @property
    def market_names(self) -> np.ndarray:
        """(n,) market of each pair."""
        return np.asarray(self.markets, dtype=object)[self.q_market[self.qi]]

    def subset(self, mask: np.ndarray) -> "PairSet":
        """The pairs where ``mask`` holds; vector matrices are shared, not copied."""
        return replace(
            self,
            qi=self.qi[mask],
            di=self.di[mask],
            stats=self.stats[mask],
            y=self.y[mask],
            label=self.label[mask],
            split=self.split[mask],
            lex=None if self.lex is None else self.lex[mask],
            nbr=None if self.nbr is None else self.nbr[mask],
        )

    def select_experts(self, names: list[str]) -> "PairSet":
        """The same pairs seen by a subset of experts, in the given order."""
        idx = [self.experts.index(e) for e in names]
        return replace(
            self,
            experts=list(names),
            q=[self.q[i] for i in idx],
            d=[self.d[i] for i in idx],
            d_raw_norm=[self.d_raw_norm[i] for i in idx],
            q_raw_norm=[self.q_raw_norm[i] for i in idx],
            q_stored=[self.q_stored[i] for i in idx] if self.q_stored else [],
            d_stored=[self.d_stored[i] for i in idx] if self.d_stored else [],
            stats=self.stats[:, idx],
            ref=[self.ref[i] for i in idx] if self.ref else [],
            nbr=None if self.nbr is None else self.nbr[:, idx],
        )

    @property
    def dims(self) -> list[int]:
        return [int(m.shape[1]) for m in self.q]


def _compact(raw: np.ndarray) -> np.ndarray:
    """The stored vectors in float16 when that is lossless (the default store dtype), else as they are."""
    half = raw.astype(np.float16)
    return half if np.array_equal(half.astype(np.float32), raw) else raw


def _vectors(store: object, ids: np.ndarray, what: str) -> np.ndarray:
    try:
        return store.get(ids)  # type: ignore[attr-defined]
    except KeyError as err:
        raise HetmoeError(f"{what} store lacks ids the dataset judges ({err}); re-run 'hetmoe embed' for this dataset") from None


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
) -> PairSet:
    """Pairs of ``splits`` with every expert's vectors; ``markets`` fixes the first market indices (a model's markets),
    markets it lacks follow in the dataset's order. ``pair_stats``: see the module docstring; ``lexical_store``: the
    lexical expert's store name whose pair features fill ``lex`` ("" = none); ``neighbourhood``: fill ``nbr`` (item
    neighbourhoods are built into the stores on first use)."""
    if pair_stats not in PAIR_STATS:
        raise HetmoeError(f"pair_stats must be one of {PAIR_STATS}, got {pair_stats!r}")
    if neighbourhood and pair_stats != "reference":
        raise HetmoeError("item-neighbourhood features need pair_stats='reference' (they use the query's catalog search)")
    from hetmoe.moe.neighbourhood import neighbourhood_features
    from hetmoe.store.identity import check_dataset
    from hetmoe.store.neighbourhood import item_neighbours
    from hetmoe.store.zarr_store import open_expert

    judg = dataset.judgments.filter(pl.col("split").is_in(splits))  # type: ignore[attr-defined]
    if judg.height == 0:
        raise HetmoeError(f"{dataset.root}: no judgments in split(s) {', '.join(splits)}")  # type: ignore[attr-defined]
    qmarket = dataset.queries.select("query_id", "market")  # type: ignore[attr-defined]
    judg = judg.join(qmarket, on="query_id", how="left")
    query_ids = np.asarray(judg["query_id"].unique(maintain_order=True).to_list(), dtype=object)
    item_ids = np.asarray(judg["item_id"].unique(maintain_order=True).to_list(), dtype=object)
    qpos = {q: i for i, q in enumerate(query_ids)}
    ipos = {d: i for i, d in enumerate(item_ids)}
    qi = np.fromiter((qpos[q] for q in judg["query_id"].to_list()), dtype=np.int64, count=judg.height)
    di = np.fromiter((ipos[d] for d in judg["item_id"].to_list()), dtype=np.int64, count=judg.height)
    known = list(markets) if markets is not None else []
    markets = known + [m for m in dataset.markets if m not in known]  # type: ignore[attr-defined]
    mpos = {m: j for j, m in enumerate(markets)}
    qm = dict(zip(qmarket["query_id"].to_list(), qmarket["market"].to_list()))
    q_market = np.array([mpos.get(qm[q], -1) for q in query_ids], dtype=np.int64)

    q_list, d_list, qn_list, dn_list, stats, refs, nbrs = [], [], [], [], [], [], []
    qs_list: list[np.ndarray] = []
    ds_list: list[np.ndarray] = []
    rvec = None
    catalog = dataset.items.select("item_id", "market")  # type: ignore[attr-defined]
    catalog_ids = np.asarray(catalog["item_id"].to_list(), dtype=object)
    catalog_markets = catalog["market"].to_numpy()
    item_catalog_rows = None
    if neighbourhood:
        catalog_pos = {d: i for i, d in enumerate(catalog_ids)}
        item_catalog_rows = np.array([catalog_pos[d] for d in item_ids], dtype=np.int64)
    q_market_names = np.array([qm[q] for q in query_ids], dtype=object)
    for expert in dict.fromkeys([*experts, router_expert]):
        stores = open_expert(store_root, expert)
        check_dataset(stores, dataset, expert, store_root)
        qraw = _vectors(stores.queries, query_ids, f"'{expert}' query")
        if expert == router_expert:
            rvec = l2_normalize(qraw)
        if expert not in experts:
            continue
        draw = _vectors(stores.items, item_ids, f"'{expert}' item")
        q_list.append(l2_normalize(qraw))
        d_list.append(l2_normalize(draw))
        qs_list.append(_compact(qraw))
        ds_list.append(_compact(draw))
        qn_list.append(np.linalg.norm(qraw, axis=1).astype(np.float32))
        dn_list.append(np.linalg.norm(draw, axis=1).astype(np.float32))
        cos = pair_cosines(q_list[-1][qi], d_list[-1][di])
        if pair_stats == "listwise":
            stats.append(group_stats(cos, qi))
        else:
            everything = l2_normalize(_vectors(stores.items, catalog_ids, f"'{expert}' item"))
            ref, top_rows = market_top_cosines(q_list[-1], q_market_names, everything, catalog_markets, ref_top)
            refs.append(ref)
            stats.append(reference_stats(cos, ref[qi]))
            if item_catalog_rows is not None:
                table = item_neighbours(store_root, expert, catalog_ids, catalog_markets, everything).aligned(catalog_ids)
                nbrs.append(neighbourhood_features(cos, q_list[-1], d_list[-1][di], item_catalog_rows[di], top_rows,
                                                   qi, table, everything.__getitem__))
            del everything
        log.debug("loaded %s: %d queries, %d items", expert, len(query_ids), len(item_ids))
    assert rvec is not None
    lex, lex_names = None, ()
    if lexical_store:
        from hetmoe.moe.lexical_pairs import lexical_features, open_checked

        lexical = open_checked(store_root, lexical_store, dataset)
        lex, lex_names = lexical_features(lexical, dataset, query_ids, item_ids, qi, di), tuple(lexical.feature_names)
    return PairSet(
        experts=list(experts),
        markets=markets,
        query_ids=query_ids,
        item_ids=item_ids,
        q=q_list,
        d=d_list,
        q_raw_norm=qn_list,
        d_raw_norm=dn_list,
        rvec=rvec,
        q_market=q_market,
        qi=qi,
        di=di,
        stats=np.stack(stats, axis=1),
        ref=refs,
        y=judg["relevant"].to_numpy().astype(np.float32),
        label=judg["label"].to_numpy().astype(np.float64),
        split=np.asarray(judg["split"].to_list(), dtype=object),
        lex=lex,
        lex_names=lex_names,
        q_stored=qs_list,
        d_stored=ds_list,
        nbr=np.stack(nbrs, axis=1) if nbrs else None,
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
