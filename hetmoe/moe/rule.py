"""The rule router: each market goes to the k experts whose raw cosine ranks best there on the training judgments.

Why raw cosine: the rule router is the ablation without a learned router; picking experts by their own zero-shot
ranking quality needs no training, so ``hetmoe fit-router`` is cheap and independent of any head.

Why the training judgments, not the early-stopping ones: a 261-query market keeps ~39 queries for early stopping, and
on those a weak expert can rank above a strong one by chance (on Home Depot queries split off as a small market, one
seed's early-stopping slice put USE ahead of MiniLM, 0.66 vs 0.64, where the valid queries give 0.60 vs 0.72, and the
MoE fell 4 pp below MiniLM alone there). The training pairs hold ~6x more queries, and the early-stopping pairs that
choose between rule and learned routing then judge a table they did not pick.
"""
from __future__ import annotations

import numpy as np

from hetmoe.metrics import auc, macro
from hetmoe.moe.features import PairSet


def expert_market_auc(pairs: PairSet) -> dict[str, dict[str, float]]:
    """AUC of each expert's raw cosine per market: {expert: {market: auc}}."""
    names = pairs.market_names
    out: dict[str, dict[str, float]] = {}
    for i, expert in enumerate(pairs.experts):
        cos = pairs.stats[:, i, 0]
        out[expert] = {str(m): auc(cos[names == m], pairs.y[names == m]) for m in np.unique(names)}
    return out


def fit_rule_table(pairs: PairSet, k: int) -> dict[str, list[str]]:
    """market -> the k best experts there (expert order kept), plus ``"*"`` -> the k best by macro AUC."""
    scores = expert_market_auc(pairs)
    k = min(k, len(pairs.experts))

    def best(values: dict[str, float]) -> list[str]:
        ranked = sorted(pairs.experts, key=lambda e: -np.nan_to_num(values[e], nan=0.5))[:k]
        return [e for e in pairs.experts if e in ranked]

    markets = sorted({m for per in scores.values() for m in per})
    table = {m: best({e: scores[e][m] for e in pairs.experts}) for m in markets}
    table["*"] = best({e: macro(scores[e]) for e in pairs.experts})
    return table


def router_prior(pairs: PairSet, markets: list[str], strength: float) -> np.ndarray:
    """(markets + 1, N) logit bias: ``strength`` x (expert's AUC - the best expert's AUC) in each market; the last
    row (unknown markets) uses each expert's macro AUC. A market absent from ``pairs`` gets the unknown row."""
    scores = expert_market_auc(pairs)
    experts = pairs.experts

    def row(values: list[float]) -> np.ndarray:
        v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.5)
        return strength * (v - v.max())

    fallback = row([macro(scores[e]) for e in experts])
    rows = [row([scores[e][m] for e in experts]) if m in scores[experts[0]] else fallback for m in markets]
    return np.stack([*rows, fallback]).astype(np.float32)
