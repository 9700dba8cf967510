"""Choosing the MoE on held-out queries of train: its router (learned or rule), its k, and its head (net or stacked).

Why choose instead of fixing top-2 learned routing: on real data the learned router lost a small market that rule
routing kept, and the best k differs between catalogs. Every candidate is trained alike (same teacher, seed and
market-weighted loss, :func:`hetmoe.moe.train.market_weights`) and judged by macro AUC on the held-out queries (each
market counts equally), never on the split the report uses. The stacked head (:mod:`hetmoe.moe.stack`) is built on
the chosen net and kept when it is ahead on the same queries.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.metrics import auc_by_market, macro
from hetmoe.moe.features import PairSet
from hetmoe.moe.infer import MoEModel
from hetmoe.moe.jobs import Job
from hetmoe.moe.routers import router_kind, router_names
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.train import TrainConfig, TrainResult, train_net

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One trained MoE candidate and its held-out scores."""

    name: str
    model: MoEModel
    result: TrainResult
    stop_auc_macro: float
    stop_auc_by_market: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "router": self.model.spec.router, "k": self.model.spec.k,
                "stop_auc_macro": self.stop_auc_macro, "stop_auc_by_market": self.stop_auc_by_market}


def held_out(model: MoEModel, stop: PairSet) -> tuple[float, dict[str, float]]:
    """Macro AUC and per-market AUC of a model's scores on the held-out pairs."""
    from hetmoe.moe.evaluate import score_net

    scores, _ = score_net(model, stop)
    by_market = auc_by_market(scores, stop.y, stop.market_names)
    return macro(by_market), by_market


def candidate_routers(routers: Sequence[str] | None = None) -> list[str]:
    """The router kinds the MoE is chosen among: ``routers`` (checked), or every candidate kind."""
    known = [r for r in router_names() if router_kind(r).candidate]
    if routers is None:
        return known
    unknown = [r for r in routers if r not in known]
    if unknown or not routers:
        raise HetmoeError(f"unknown MoE router(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}")
    return list(dict.fromkeys(routers))


def candidate_jobs(base: ModelSpec, train: PairSet, stop: PairSet, cfg: TrainConfig, teacher: np.ndarray | None,
                   k_max: int, routers: Sequence[str] | None = None) -> list[Job]:
    """One job per candidate router kind (learned top-k, each market's k best experts; or ``routers``) and k in
    1..k_max; each returns its :class:`Candidate` (run them with :func:`hetmoe.moe.jobs.run_jobs`)."""
    return [(_train_candidate, (f"{router}-k{k}", router_kind(router).prepare(base, train, k), train, stop, cfg, teacher))
            for k in range(1, min(k_max, base.n_experts) + 1)
            for router in candidate_routers(routers)]


def _train_candidate(name: str, spec: ModelSpec, train: PairSet, stop: PairSet, cfg: TrainConfig,
                     teacher: np.ndarray | None) -> Candidate:
    result = train_net(spec, train, stop, cfg, teacher=teacher)
    model = MoEModel(spec, result.weights)
    score, by_market = held_out(model, stop)
    log.info("MoE candidate %s: held-out macro AUC %.4f", name, score)
    return Candidate(name, model, result, score, by_market)


def stack_candidates(candidates: list[Candidate]) -> list[Candidate]:
    """The best candidate of each router kind (held-out macro AUC; ties: the first), in the candidates' order."""
    top: dict[str, Candidate] = {}
    for c in candidates:
        kind = c.model.spec.router
        if kind not in top or np.nan_to_num(c.stop_auc_macro, nan=-1.0) > np.nan_to_num(top[kind].stop_auc_macro, nan=-1.0):
            top[kind] = c
    return [c for c in candidates if top.get(c.model.spec.router) is c]


def best(candidates: list[Candidate]) -> Candidate:
    """The candidate with the highest held-out macro AUC (ties: the first, i.e. the smaller k)."""
    return max(candidates, key=lambda c: (np.nan_to_num(c.stop_auc_macro, nan=-1.0), -candidates.index(c)))
