"""A trained stage-two model: its router and its heads, numpy in, numpy out, no torch on the hot path.

Usage (the online Scorer, ``eval`` and bulk scoring alike)::

    model = MoEModel.load("DIR/model")           # refuses if the stores it was trained on changed
    routing = model.route(markets, router_query_vecs)   # (expert_idx (n_q, m), gates (n_q, m))
    needed = model.routed_experts(routing)            # per query row: expert names to encode (gate > 0)
    feats = PairFeatures(batch, context, model.blocks())   # hetmoe.pairs: the one feature path
    scores = model.score(feats, routing)              # (n,) in (0, 1)

The model sends each pair to the head that serves its query's market: the net (and its stacked trees, when fitted)
for the markets it was fitted on; the transfer head (:mod:`hetmoe.moe.heads.transfer`) for the others, when it has
one. Each head reads its own feature blocks (``blocks``) and saves and loads its own files (:mod:`hetmoe.moe.heads`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.moe.artifacts import check_identity, read_net_config, write_model
from hetmoe.moe.heads.base import head_class, matmul
from hetmoe.moe.heads.net import NetHead, relu
from hetmoe.moe.heads.stacked import StackedHead
from hetmoe.moe.heads.transfer import TransferHead
from hetmoe.moe.routers import every_expert, router_kind
from hetmoe.moe.spec import ModelSpec
from hetmoe.vectors import l2_normalize

if TYPE_CHECKING:
    from hetmoe.pairs.blocks.base import FeatureBlock
    from hetmoe.pairs.features import PairFeatures


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


@dataclass
class MoEModel:
    """A loaded stage-two model (any variant with a learned head; LightGBM heads live in :mod:`hetmoe.moe.lgbm`)."""

    spec: ModelSpec
    weights: dict[str, np.ndarray]
    config: dict[str, Any] = field(default_factory=dict)
    model_dir: Path | None = None
    stack: StackedHead | None = None  # a stacked head: its booster's raw scores replace the net's logits
    transfer: TransferHead | None = None  # scores (and routes) queries of markets outside spec.markets

    def __post_init__(self) -> None:
        self.net = NetHead(self.spec, self.weights)
        self.weights = self.net.weights
        w, s = self.weights, self.spec
        self._market_index = {m: j for j, m in enumerate(s.markets)}
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
        """Load ``model_dir`` (config.json and each head's files); refuses when its experts' stores changed."""
        config = read_net_config(model_dir, store_root)
        if check_stores and config.get("store_root"):
            check_identity(config, config["store_root"], Path(model_dir))
        spec = ModelSpec.from_dict(config["spec"])
        heads = {kind: head_class(kind).load(Path(model_dir), config, spec) for kind in config["heads"]}
        net = heads["net"]
        assert isinstance(net, NetHead)
        return cls(spec, net.weights, config, Path(model_dir), heads.get("stacked"), heads.get("transfer"))  # type: ignore[arg-type]

    def save(self, out_dir: str | Path, meta: dict[str, Any]) -> Path:
        """Write the model as :meth:`load` reads it (``meta``: the config's other keys: variant, experts' identity)."""
        heads = [h for h in (self.net, self.stack, self.transfer) if h is not None]
        kind = "net" if self.stack is None else "stacked"
        return write_model(out_dir, kind, {"spec": self.spec.to_dict(), **meta}, heads)

    def blocks(self) -> dict[str, FeatureBlock]:
        """The feature blocks this model's heads read."""
        out: dict[str, FeatureBlock] = {}
        for head in (self.net, self.stack, self.transfer):
            if head is not None:
                out.update(head.blocks(self.spec))
        return out

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
        h = matmul(l2_normalize(router_vec), self._r_vec) + self._r_b1
        mi = np.array([self._market_index.get(str(m), -1) for m in markets])
        known = mi >= 0
        h[known] += self._r_market[mi[known]]
        logits = matmul(relu(h), self._r_w2) + self._r_b2 + self._r_prior[np.where(known, mi, len(self._market_index))]
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
        """Raw item vectors (n, d_e) -> the (n, rank) projection the net compares with the projected query."""
        return self.net.project(self._expert_index(expert), l2_normalize(vectors))

    def _expert_index(self, expert: str) -> int:
        try:
            return self.spec.experts.index(expert)
        except ValueError:
            raise HetmoeError(f"expert '{expert}' is not in this model (has: {', '.join(self.spec.experts)})") from None

    def score(self, feats: PairFeatures, routing: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Relevance probability (n,) of each pair: :meth:`logits` through the sigmoid."""
        return _sigmoid(self.logits(feats, routing))

    def logits(self, feats: PairFeatures, routing: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Logits (n,) of ``feats``' pairs under ``routing`` (one row per query row of the batch). Pairs of markets
        the model was not fitted on go to the transfer head (when it has one) and never reach the net or the
        stacked head, so their queries are not searched in the catalog."""
        batch = feats.batch
        if routing[0].shape[0] != batch.n_queries:
            raise HetmoeError(f"{routing[0].shape[0]} routing rows for a batch of {batch.n_queries} query rows")
        head = self.head_rows(batch.markets, batch.n_queries)
        if head.all():
            return self._head_logits(feats, routing)
        pair_head = head[batch.qi]
        out = np.zeros(len(feats), np.float64)  # float32 head logits widen exactly
        if pair_head.any():
            out[pair_head] = self._head_logits(feats.subset(pair_head), routing)
        assert self.transfer is not None
        out[~pair_head] = self.transfer.pair_logits(feats.subset(~pair_head), self.spec.lexical)
        return out

    def head_rows(self, markets: np.ndarray | Sequence[str] | None, n_q: int) -> np.ndarray:
        """(n_q,) bool: the query rows the net (and stacked head) scores; the others are unknown markets' queries,
        which a model with a transfer head scores with that head."""
        if self.transfer is None or markets is None:
            return np.ones(n_q, bool)
        return self.market_index(np.asarray(markets, dtype=object), n_q) >= 0

    def _head_logits(self, feats: PairFeatures, routing: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """The net's logits (through the stacked head when the model has one) of pairs of known markets."""
        dense = self.dense_gates(routing)
        for i, expert in enumerate(self.spec.experts):
            routed = dense[feats.batch.qi, i] > 0
            if routed.any() and not feats.pairs_with(expert)[routed].all():
                raise HetmoeError(f"expert '{expert}' is routed but its query vectors were not passed to score()")
        net = self.net.logits(feats, dense)
        if self.stack is None:
            return net
        market = self.market_index(feats.batch.markets, feats.batch.n_queries)[feats.batch.qi]
        return self.stack.logits(self.spec, feats, dense, net, market)

    def market_index(self, markets: np.ndarray | None, n_q: int) -> np.ndarray:
        """(n_q,) index of each query row's market in the model's markets (-1: unknown or not given)."""
        if markets is None:
            return np.full(n_q, -1, np.int64)
        index = np.array([self._market_index.get(str(m), -1) for m in np.atleast_1d(markets)], dtype=np.int64)
        return np.repeat(index, n_q) if index.shape[0] == 1 and n_q > 1 else index
