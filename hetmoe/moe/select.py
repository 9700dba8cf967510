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
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.metrics import auc_by_market, macro
from hetmoe.moe.features import PairSet
from hetmoe.moe.heads.transfer import TransferHead
from hetmoe.moe.infer import MoEModel
from hetmoe.moe.jobs import Job
from hetmoe.moe.routers import router_kind, router_names
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.stack import Stacker
from hetmoe.moe.train import TrainConfig, TrainResult, train_net
from hetmoe.moe.variants import STACKED, TWIN, stacked

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


def fit_moe(out: Path, candidates: list[Candidate], stop: PairSet, stacker: Stacker | None, meta: dict[str, Any],
            transfer: Callable[[ModelSpec], TransferHead | None] = lambda spec: None,
            twin: str | None = None) -> dict[str, Any]:
    """Pick the MoE's router and head on the held-out queries and save the winner as ``moe`` (the other head as
    ``moe:net`` or ``moe:stacked``); returns the selection record for fit.json.

    The net is the best candidate by its own held-out AUC. With a ``stacker``, the best candidate of each router kind
    gets a stacked head (its booster reading the learned router's expert on every query when the stacker says so):
    the trees may prefer another route than the net (a fixed pair per market gives them the same columns on every
    query, worth 0.25 pp on Shopee), so each kind's stack is judged on the same held-out queries and the best one
    kept. ``twin``: the candidate with the fusion baselines' router and k; where the MoE's net (or stacked head) is
    another candidate, the twin's is saved too, as ``concat`` (``concat:stacked``), so that each fusion is compared
    with concatenation under the same router, k and head (``fusion_twin`` in the record names them).
    ``transfer`` gives each saved head its head for unknown markets."""
    chosen = best(candidates)
    record: dict[str, Any] = {"chosen_on": "macro AUC on the early-stopping queries",
                              "candidates": [c.summary() for c in candidates], "net_router": chosen.name}
    heads = {"net": (chosen, chosen.model, chosen.stop_auc_macro)}
    mirror = next((c for c in candidates if c.name == twin), None)
    stacks: dict[str, MoEModel] = {}
    if stacker is not None:
        kinds = stack_candidates(candidates)
        wanted = kinds + ([mirror] if mirror is not None and mirror not in kinds else [])
        stacks = stacker.stack_all({c.name: c.model for c in wanted})
        scored = {c.name: held_out(stacks[c.name], stop)[0] for c in kinds}
        record["stacked_by_router"] = scored
        top = max(kinds, key=lambda c: np.nan_to_num(scored[c.name], nan=-1.0))
        heads[STACKED] = (top, stacks[top.name], scored[top.name])
    winner = max(heads, key=lambda h: np.nan_to_num(heads[h][2], nan=-1.0))
    record.update({"heads": {h: v[2] for h, v in heads.items()}, "head": winner, "router": heads[winner][0].name,
                   "saved": [], "fusion_twin": {}})
    saves = []
    for head, (candidate, model, score) in heads.items():
        name = "moe" if head == winner else f"moe:{head}"
        saves.append((name, candidate, model, score))
        if mirror is None:
            continue
        if candidate is mirror:
            record["fusion_twin"][head] = name
            continue
        own = mirror.model if head == "net" else stacks[mirror.name]
        name = TWIN if head == "net" else stacked(TWIN)
        saves.append((name, mirror, own, mirror.stop_auc_macro if head == "net" else held_out(own, stop)[0]))
        record["fusion_twin"][head] = name
    for name, candidate, model, score in saves:
        model.transfer = transfer(model.spec)
        model.save(out / variant_dir(name),
                   {"variant": name, **meta, "router": candidate.name,
                    "metrics": {**candidate.result.metrics, "stop_auc_macro_head": score}})
        record["saved"].append(name)
    log.info("MoE: %s routing with the %s head (held-out macro AUC %s)", record["router"], winner,
             ", ".join(f"{h} {v[2]:.4f}" for h, v in heads.items()))
    return record


def variant_dir(name: str) -> str:
    """Relative folder of a variant inside a fit output."""
    return "." if name == "moe" else f"variants/{name.replace(':', '-')}"
