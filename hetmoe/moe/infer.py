"""Inference API of a trained stage-two model: numpy in, numpy out, no torch on the hot path.

Why numpy: the head is tiny (a few small matrices per expert), so torch's per-op overhead (tens of microseconds)
would dominate scoring ~100 candidates; plain BLAS calls on float32 arrays are several times faster.

Usage (the online Scorer)::

    model = MoEModel.load("DIR/model")           # refuses if the stores it was trained on changed
    model.experts, model.cards, model.store_root, model.router_expert, model.markets, model.k
    routing = model.route("TH", static_query_vecs)   # (expert_idx (n_q, m), gates (n_q, m)); m = k for hard/rule
    needed = model.routed_experts(routing)            # per query row: expert names to encode (gate > 0)
    scores = model.score({e: qvecs (n_q or 1, d_e)}, {e: item vecs (n, d_e)}, routing, groups=None,
                         reference={e: (n_q, ref_top) best catalog cosines})  # (n,) in (0, 1)

Contracts of ``score``: ``query_vecs``/``item_vecs`` need entries only for experts routed (gate > 0) by at least one
query row; raw vectors as the stores hold them (normalised here). ``groups`` (n,) maps each pair to its query row;
if omitted, one query row means every pair belongs to it and n rows mean pair i belongs to row i. With the default
``reference`` statistics, ``reference`` gives each routed expert's (n_q, ref_top) best cosines of the query in its
market (:func:`hetmoe.moe.reference.market_top_cosines`), and a pair's score depends on nothing else in the call.
A ``listwise`` model computes the z-score and rank within these groups instead, so its scores depend on the list.
A model with a transfer head (:mod:`hetmoe.moe.transfer`) routes queries of markets outside ``model.markets`` to its
experts and scores their pairs with it; ``score`` learns each query row's market from ``markets``.
``project_items(expert, vectors) -> (n, rank)`` is the map a document's raw vector goes through before interaction:
L2-normalise, subtract the expert's mean training vector, re-normalise, multiply by the expert's projection.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.moe.artifacts import WEIGHTS, check_identity, read_net_config, read_weights, write_net
from hetmoe.moe.pairstats import group_stats
from hetmoe.moe.reference import reference_stats
from hetmoe.moe.routers import every_expert, router_kind
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.stacked import StackHead
from hetmoe.moe.transfer import TransferHead
from hetmoe.vectors import l2_normalize, pair_cosines


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


@dataclass
class MoEModel:
    """A loaded stage-two model (any variant with a learned head; LightGBM heads live in :mod:`hetmoe.moe.lgbm`)."""

    spec: ModelSpec
    weights: dict[str, np.ndarray]
    config: dict[str, Any] = field(default_factory=dict)
    model_dir: Path | None = None
    stack: StackHead | None = None  # a stacked head: its booster's raw scores replace the net's logits
    transfer: TransferHead | None = None  # scores (and routes) queries of markets outside spec.markets

    def __post_init__(self) -> None:
        w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.weights.items()}
        self.weights = w
        s = self.spec
        self._proj_t = [np.ascontiguousarray(w[f"proj.{i}.weight"].T) for i in range(s.n_experts)]
        self._center = [w[f"center.{i}"] for i in range(s.n_experts)]
        self._inter_t = [np.ascontiguousarray(w[f"inter.{i}.weight"].T) for i in range(s.n_experts)]
        self._inter_b = [w[f"inter.{i}.bias"] for i in range(s.n_experts)]
        self._market_index = {m: j for j, m in enumerate(s.markets)}
        h = s.width
        if s.hidden > 0:
            first, self._b1 = w["head.l1.weight"], w["head.l1.bias"]
            self._out_w, self._out_b = w["head.l2.weight"][0], float(w["head.l2.bias"][0])
        else:
            first, self._b1 = w["head.out.weight"], None
            self._out_w, self._out_b = None, float(w["head.out.bias"][0])
        hl = s.lexical_width if s.lexical else 0  # the lexical slot is the head's last hl inputs
        if s.fusion == "concat":
            self._head_t = [np.ascontiguousarray(first[:, i * h : (i + 1) * h].T) for i in range(s.n_experts)]
        else:
            self._head_t = [np.ascontiguousarray(first[:, :h].T)] * s.n_experts
        if hl:
            self._lex_head_t = np.ascontiguousarray(first[:, first.shape[1] - hl :].T)
            self._lex_w_t, self._lex_b = np.ascontiguousarray(w["lex.weight"].T), w["lex.bias"]
            self._lex_mean, self._lex_std = w["lex_mean"], w["lex_std"]
        if s.learned_router:
            m = len(s.markets)
            self._r_market = np.ascontiguousarray(w["router.l1.weight"][:, :m].T)  # (M, RH)
            self._r_vec = np.ascontiguousarray(w["router.l1.weight"][:, m:].T)  # (d_r, RH)
            self._r_b1, self._r_w2 = w["router.l1.bias"], np.ascontiguousarray(w["router.l2.weight"].T)
            self._r_b2 = w["router.l2.bias"]
            self._r_prior = w["router.prior"]  # (M + 1, N): the last row for unknown markets

    # ----- identity -------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | Path, store_root: str | Path | None = None, check_stores: bool = True) -> MoEModel:
        """Load ``model_dir`` (config.json + weights.safetensors, and a stacked head's booster); refuses when its
        experts' stores changed."""
        config = read_net_config(model_dir, store_root)
        if check_stores and config.get("store_root"):
            check_identity(config, config["store_root"], Path(model_dir))
        try:
            model = cls(ModelSpec.from_dict(config["spec"]), read_weights(model_dir), config, Path(model_dir))
        except KeyError as err:
            raise HetmoeError(f"{Path(model_dir) / WEIGHTS}: weight {err} is missing (written by another hetmoe "
                              "version?); retrain with 'hetmoe fit-head'") from None
        if config["kind"] == "stacked":
            model.stack = StackHead.load(Path(model_dir))
        if config.get("transfer"):
            model.transfer = TransferHead.from_dict(config["transfer"])
        return model

    def save(self, out_dir: str | Path, meta: dict[str, Any]) -> Path:
        """Write the model as :meth:`load` reads it (``meta``: the config's other keys: variant, experts' identity)."""
        transfer = {} if self.transfer is None else {"transfer": self.transfer.to_dict()}
        return write_net(out_dir, self.spec.to_dict(), self.weights, {**meta, **transfer},
                         booster=None if self.stack is None else self.stack.booster)

    @property
    def experts(self) -> list[str]:
        return list(self.spec.experts)

    @property
    def markets(self) -> list[str]:
        return list(self.spec.markets)

    @property
    def k(self) -> int:
        return self.spec.k_eff

    @property
    def router_expert(self) -> str | None:
        """The expert whose query vector feeds the router (None when routing needs no query vector)."""
        return self.spec.router_expert if self.spec.learned_router else None

    @property
    def cards(self) -> dict[str, dict[str, Any]]:
        return {e: info.get("card", {}) for e, info in self.config.get("experts", {}).items()}

    @property
    def store_root(self) -> Path | None:
        root = self.config.get("store_root")
        return Path(root) if root else None

    # ----- routing --------------------------------------------------------------------------------------------
    def route(self, market: str | Sequence[str] | np.ndarray, router_vec: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(expert_idx (n, m) int64, gates (n, m) float32) per query. Unknown markets go to the transfer head's
        experts when the model has one; else a learned router reads the query vector alone, rule routing its
        ``"*"`` row."""
        markets = np.atleast_1d(np.asarray(market, dtype=object))
        if router_vec is not None:
            router_vec = np.atleast_2d(np.asarray(router_vec, dtype=np.float32))
            if markets.shape[0] == 1 and router_vec.shape[0] > 1:
                markets = np.repeat(markets, router_vec.shape[0])
        return self._route_unseen(markets, self._route(markets, router_vec))

    def _route(self, markets: np.ndarray, router_vec: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        s = self.spec
        n = markets.shape[0]
        if s.n_experts == 1:
            return every_expert(n, 1)
        kind = router_kind(s.router)
        if not kind.learned:
            return kind.route(s, markets, None)
        if router_vec is None or router_vec.shape != (n, s.router_dim):
            got = None if router_vec is None else router_vec.shape
            raise HetmoeError(f"router needs the '{s.router_expert}' query vector of shape ({n}, {s.router_dim}), got {got}")
        return kind.route(s, markets, self.router_probs(markets, router_vec))

    def _route_unseen(self, markets: np.ndarray, routing: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``routing`` with each unknown market's row sent to the transfer head's experts (gate 1; the rest of the
        row's width filled with other experts at gate 0)."""
        unseen = self.market_index(markets, markets.shape[0]) < 0
        if self.transfer is None or not unseen.any():
            return routing
        idx, gates = routing[0].copy(), routing[1].copy()
        cols = [self.spec.experts.index(e) for e in self.transfer.experts]
        row = (cols + [j for j in range(self.spec.n_experts) if j not in cols])[: idx.shape[1]]
        idx[unseen] = row
        gates[unseen] = [1.0 if j in cols else 0.0 for j in row]
        return idx, gates

    def router_probs(self, markets: np.ndarray, router_vec: np.ndarray) -> np.ndarray:
        """Softmax over experts (n, N) for learned routers."""
        h = l2_normalize(router_vec) @ self._r_vec + self._r_b1
        mi = np.array([self._market_index.get(str(m), -1) for m in markets])
        known = mi >= 0
        h[known] += self._r_market[mi[known]]
        logits = _relu(h) @ self._r_w2 + self._r_b2 + self._r_prior[np.where(known, mi, len(self._market_index))]
        logits -= logits.max(1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(1, keepdims=True)

    def routed_experts(self, routing: tuple[np.ndarray, np.ndarray]) -> list[list[str]]:
        """Per query row, the experts that must encode the query (gate > 0), in expert order."""
        idx, gates = routing
        return [[self.spec.experts[j] for j in sorted(set(row[g > 0].tolist()))] for row, g in zip(idx, gates)]

    def dense_gates(self, routing: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        idx, gates = routing
        dense = np.zeros((idx.shape[0], self.spec.n_experts), np.float32)
        np.put_along_axis(dense, idx, gates, axis=1)
        return dense

    # ----- scoring --------------------------------------------------------------------------------------------
    def project_items(self, expert: str, vectors: np.ndarray) -> np.ndarray:
        """Raw item vectors (n, d_e) -> the (n, rank) projection the head compares with the projected query."""
        i = self._expert_index(expert)
        return self._project(i, l2_normalize(vectors))

    def _project(self, i: int, unit: np.ndarray) -> np.ndarray:
        """Unit vectors of expert i -> centred on its training mean, re-normalised, projected (as ``MoENet.centered``)."""
        return l2_normalize(unit - self._center[i]) @ self._proj_t[i]

    def _expert_index(self, expert: str) -> int:
        try:
            return self.spec.experts.index(expert)
        except ValueError:
            raise HetmoeError(f"expert '{expert}' is not in this model (has: {', '.join(self.spec.experts)})") from None

    def score(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """Relevance probability (n,) of each pair: :meth:`logits` (same arguments; shapes in the module docstring)
        through the sigmoid."""
        return _sigmoid(self.logits(*args, **kwargs))

    def logits(
        self,
        query_vecs: dict[str, np.ndarray],
        item_vecs: dict[str, np.ndarray],
        routing: tuple[np.ndarray, np.ndarray],
        groups: np.ndarray | None = None,
        reference: dict[str, np.ndarray] | None = None,
        lexical: np.ndarray | None = None,
        markets: np.ndarray | None = None,
        neighbourhood: dict[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Logits (n,) of each pair (``score`` before the sigmoid); ``lexical`` (n, F) lexical features of the pairs
        for models trained with them, ``markets`` (n_q,) each query row's market (read by stacked heads, and by the
        transfer head for markets the model does not know) and ``neighbourhood`` each routed expert's (n, 10)
        item-neighbourhood features (read by stacked heads). Query rows the transfer head scores never reach the
        net or the stacked head: their reference rows and neighbourhood features are not read."""
        n_q = routing[0].shape[0]
        n = next(iter(item_vecs.values())).shape[0] if item_vecs else 0
        groups = self._groups(n_q, n, groups)
        head = self.head_rows(markets, n_q)
        if head.all():
            return self._head_logits(query_vecs, item_vecs, routing, groups, reference, lexical, markets, neighbourhood)
        pair_head = head[groups]
        out = np.zeros(n, np.float64)  # float32 head logits widen exactly
        if pair_head.any():
            out[pair_head] = self._head_logits(**_take_queries(
                head, groups, query_vecs=query_vecs, item_vecs=item_vecs, routing=routing, reference=reference,
                lexical=lexical, markets=markets, neighbourhood=neighbourhood))
        out[~pair_head] = self._transfer_logits(query_vecs, item_vecs, groups, lexical, np.flatnonzero(~pair_head))
        return out

    def head_rows(self, markets: np.ndarray | Sequence[str] | None, n_q: int) -> np.ndarray:
        """(n_q,) bool: the query rows the net (and stacked head) scores; the others are unknown markets' queries,
        which a model with a transfer head scores with that head."""
        if self.transfer is None or markets is None:
            return np.ones(n_q, bool)
        return self.market_index(np.asarray(markets, dtype=object), n_q) >= 0

    def _head_logits(self, query_vecs: dict[str, np.ndarray], item_vecs: dict[str, np.ndarray],
                     routing: tuple[np.ndarray, np.ndarray], groups: np.ndarray, reference: dict[str, np.ndarray] | None,
                     lexical: np.ndarray | None, markets: np.ndarray | None,
                     neighbourhood: dict[str, np.ndarray] | None) -> np.ndarray:
        """The net's logits (through the stacked head when the model has one) of pairs of known markets."""
        s = self.spec
        dense = self.dense_gates(routing)
        n = groups.shape[0]
        gate = dense[groups]  # (n, N)
        fan = s.hidden if s.hidden > 0 else 1
        acc = np.zeros((n, fan), np.float32)
        pooled = np.zeros((n, s.width), np.float32) if s.fusion == "weighted" else None
        averaged = [np.zeros((n, s.rank), np.float32), np.zeros((n, s.rank), np.float32), np.zeros((n, 3), np.float32)]
        for i, expert in enumerate(s.experts):
            g = gate[:, i]
            rows = np.flatnonzero(g > 0)
            if rows.size == 0:
                continue
            if expert not in query_vecs or expert not in item_vecs:
                raise HetmoeError(f"expert '{expert}' is routed but its vectors were not passed to score()")
            ref = None
            if s.pair_stats == "reference":
                if reference is None or expert not in reference:
                    raise HetmoeError(f"expert '{expert}' is routed but its reference cosines were not passed to score()")
                ref = np.atleast_2d(reference[expert])
            parts = self._expert_parts(i, query_vecs[expert], item_vecs[expert], groups, rows, ref)
            if s.fusion == "average":
                for total, part in zip(averaged, parts):
                    total[rows] += part * g[rows, None]
                continue
            feats = self._interact(i, *parts) * g[rows, None]
            if pooled is not None:
                pooled[rows] += feats
            elif s.hidden > 0:
                acc[rows] += feats @ self._head_t[i]
            else:
                acc[rows, 0] += feats @ self._head_t[i][:, 0]
        if s.fusion == "average":
            pooled = self._interact(0, *averaged)
        if pooled is not None:
            acc = pooled @ self._head_t[0] if s.hidden > 0 else (pooled @ self._head_t[0][:, :1])
        if s.lexical:
            if lexical is None or np.shape(lexical) != (n, len(s.lexical)):
                got = None if lexical is None else np.shape(lexical)
                raise HetmoeError(f"this model reads {len(s.lexical)} lexical features per pair; score() got {got}")
            z = _relu(((np.asarray(lexical, np.float32) - self._lex_mean) / self._lex_std) @ self._lex_w_t + self._lex_b)
            acc += z @ self._lex_head_t if s.hidden > 0 else (z @ self._lex_head_t[:, :1])
        net = _relu(acc + self._b1) @ self._out_w + self._out_b if s.hidden > 0 else acc[:, 0] + self._out_b
        if self.stack is not None:
            net = self.stack.logits(self, net, query_vecs, item_vecs, routing, groups, reference, lexical, markets,
                                    neighbourhood)
        return net

    def _transfer_logits(self, query_vecs: dict[str, np.ndarray], item_vecs: dict[str, np.ndarray],
                         groups: np.ndarray, lexical: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        """The transfer head's logits of pairs ``rows`` (unknown markets' queries)."""
        assert self.transfer is not None
        g = groups[rows]
        cos = [pair_cosines(l2_normalize(np.atleast_2d(query_vecs[e]))[g], l2_normalize(item_vecs[e][rows]))
               for e in self.transfer.experts]
        return self.transfer.logits(cos, None if lexical is None else np.asarray(lexical)[rows], self.spec.lexical)

    @staticmethod
    def _groups(n_q: int, n: int, groups: np.ndarray | None) -> np.ndarray:
        """Pair -> query row; without ``groups`` one query row owns every pair and n rows pair up one to one."""
        if groups is None:
            if n_q not in (1, n):
                raise HetmoeError(f"{n_q} query rows for {n} pairs; pass groups (pair -> query row) to score")
            return np.zeros(n, np.int64) if n_q == 1 else np.arange(n)
        return np.asarray(groups, dtype=np.int64)

    def market_index(self, markets: np.ndarray | None, n_q: int) -> np.ndarray:
        """(n_q,) index of each query row's market in the model's markets (-1: unknown or not given)."""
        if markets is None:
            return np.full(n_q, -1, np.int64)
        index = np.array([self._market_index.get(str(m), -1) for m in np.atleast_1d(markets)], dtype=np.int64)
        return np.repeat(index, n_q) if index.shape[0] == 1 and n_q > 1 else index

    def _expert_parts(self, i: int, q: np.ndarray, d: np.ndarray, groups: np.ndarray, rows: np.ndarray,
                      ref: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Projected query and item vectors (len(rows), rank) and pair statistics (len(rows), 3) of expert i;
        statistics against ``ref`` (per query row), or, for a listwise model, within each full group."""
        qn = l2_normalize(np.atleast_2d(q))
        dn = l2_normalize(d if rows.size == d.shape[0] else d[rows])
        g = groups if rows.size == groups.shape[0] else groups[rows]
        cos = pair_cosines(qn[g], dn)
        stats = group_stats(cos, g) if ref is None else reference_stats(cos, ref[g])
        return self._project(i, qn)[g], self._project(i, dn), stats

    def _interact(self, i: int, u: np.ndarray, v: np.ndarray, stats: np.ndarray) -> np.ndarray:
        """(n, width) pair features through interaction layer i, as ``MoENet`` computes them."""
        x = np.concatenate([u * v, np.abs(u - v), stats], axis=1)
        return _relu(x @ self._inter_t[i] + self._inter_b[i])


def _take_queries(keep: np.ndarray, groups: np.ndarray, **inputs: Any) -> dict[str, Any]:
    """``logits``' arguments (per query row or per pair) cut to the query rows ``keep`` (bool, n_q) and their pairs,
    ``groups`` renumbered."""
    pairs = keep[groups]

    def per_query(v: Any) -> np.ndarray:
        return np.atleast_2d(np.asarray(v))[keep]

    def per_pair(v: Any) -> np.ndarray:
        return np.asarray(v)[pairs]

    def each(values: dict[str, Any] | None, take: Any) -> dict[str, np.ndarray] | None:
        return None if values is None else {e: take(v) for e, v in values.items()}

    markets = inputs["markets"]
    if markets is not None:
        markets = np.atleast_1d(np.asarray(markets, dtype=object))
        markets = (np.repeat(markets, keep.shape[0]) if markets.shape[0] == 1 else markets)[keep]
    idx, gates = inputs["routing"]
    return {"query_vecs": each(inputs["query_vecs"], per_query), "item_vecs": each(inputs["item_vecs"], per_pair),
            "routing": (idx[keep], gates[keep]), "groups": (np.cumsum(keep) - 1)[groups[pairs]],
            "reference": each(inputs["reference"], per_query), "markets": markets,
            "lexical": None if inputs["lexical"] is None else per_pair(inputs["lexical"]),
            "neighbourhood": each(inputs["neighbourhood"], per_pair)}
