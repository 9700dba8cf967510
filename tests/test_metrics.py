"""Evaluation metrics: AUC against sklearn, nDCG@10 on a hand-computed case, MRR and Recall@k against a per-query
loop, bootstrap CIs around the estimate."""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score

from hetmoe.metrics import (auc, auc_by_market, bootstrap_delta, macro, mrr, ndcg_at_k, ranking_metrics, recall_at_k,
                            weighted_auc)


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(3000) < 0.2
    s = np.round(rng.normal(size=3000) + y, 1)  # rounding makes many ties
    assert abs(auc(s, y) - roc_auc_score(y, s)) < 1e-12


def test_auc_by_market_and_macro_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    markets = np.array(["A"] * 500 + ["B"] * 300, dtype=object)
    y = rng.random(800) < np.where(markets == "A", 0.5, 0.1)
    s = rng.normal(size=800) + 0.7 * y
    per = auc_by_market(s, y, markets)
    for m in ("A", "B"):
        assert abs(per[m] - roc_auc_score(y[markets == m], s[markets == m])) < 1e-12
    assert abs(macro(per) - (per["A"] + per["B"]) / 2) < 1e-12


def test_weighted_auc_equals_auc_of_duplicated_pairs() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(200) < 0.4
    s = rng.normal(size=200) + y
    w = rng.integers(0, 3, size=200)
    expanded = np.repeat(np.arange(200), w)
    assert abs(weighted_auc(s, y, w[None, :])[0] - roc_auc_score(y[expanded], s[expanded])) < 1e-12


def test_auc_undefined_for_one_class() -> None:
    assert math.isnan(auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_ndcg_at_10_hand_computed() -> None:
    # One query ranked a, b, c by score, with gains 0, 1, 2: the worst possible order.
    scores = np.array([3.0, 2.0, 1.0])
    gains = np.array([0.0, 1.0, 2.0])
    dcg = 0 / math.log2(2) + 1 / math.log2(3) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 0 / math.log2(4)
    assert abs(ndcg_at_k(scores, gains, np.zeros(3)) - dcg / ideal) < 1e-12
    # Two queries: a perfect one (1.0) and one with no gain (excluded from the mean).
    groups = np.array([0, 0, 1, 1])
    assert abs(ndcg_at_k(np.array([2.0, 1.0, 5.0, 4.0]), np.array([3.0, 0.0, 0.0, 0.0]), groups) - 1.0) < 1e-12


def test_ndcg_cuts_at_k() -> None:
    scores = -np.arange(12, dtype=float)  # item 0 ranked first ... item 11 last
    gains = np.zeros(12)
    gains[11] = 3.0  # the only relevant item sits at rank 12, outside the top 10
    assert ndcg_at_k(scores, gains, np.zeros(12), k=10) == 0.0


def test_bootstrap_ci_brackets_point_estimate() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(300), 10)
    markets = np.where(groups < 150, "A", "B").astype(object)
    y = rng.random(3000) < 0.3
    base = rng.normal(size=3000) + y
    better = base + 0.8 * y + rng.normal(size=3000) * 0.3
    out = bootstrap_delta(better, base, y, groups, markets, reps=300, seed=0)
    assert out["ci95"][0] <= out["delta_auc"] <= out["ci95"][1]
    assert out["ci95_macro"][0] <= out["delta_auc_macro"] <= out["ci95_macro"][1]
    assert out["ci95"][0] > 0  # a real improvement: the interval excludes 0
    same = bootstrap_delta(base, base, y, groups, markets, reps=50, seed=0)
    assert same["ci95"] == [0.0, 0.0]


def _by_query(scores: np.ndarray, relevant: np.ndarray, groups: np.ndarray, k: int) -> tuple[float, float]:
    """MRR and Recall@k the slow way: one query at a time, its judged items sorted by score (stable)."""
    ranks, recalls = [], []
    for g in dict.fromkeys(groups.tolist()):
        sel = np.flatnonzero(groups == g)
        order = sel[np.argsort(-scores[sel], kind="stable")]
        hits = relevant[order] > 0
        if hits.any():
            ranks.append(1.0 / (np.argmax(hits) + 1))
            recalls.append(hits[:k].sum() / hits.sum())
    return float(np.mean(ranks)), float(np.mean(recalls))


def test_mrr_and_recall_match_a_per_query_loop() -> None:
    rng = np.random.default_rng(5)
    groups = np.sort(rng.integers(0, 60, size=1500))
    relevant = (rng.random(1500) < 0.15).astype(int)
    scores = np.round(rng.normal(size=1500) + relevant, 1)  # ties, broken by input order as in nDCG
    for k in (1, 10, 20):
        slow_mrr, slow_recall = _by_query(scores, relevant, groups, k)
        assert abs(mrr(scores, relevant, groups) - slow_mrr) < 1e-12
        assert abs(recall_at_k(scores, relevant, groups, k) - slow_recall) < 1e-12


def test_ranking_metrics_by_hand() -> None:
    # query 0: relevant items ranked 2nd and 3rd of 3; query 1: its only relevant item first; query 2: none relevant.
    scores = np.array([0.9, 0.5, 0.1, 0.8, 0.2, 0.3, 0.4])
    relevant = np.array([0, 1, 1, 1, 0, 0, 0])
    groups = np.array([0, 0, 0, 1, 1, 2, 2])
    out = ranking_metrics(scores, relevant, relevant.astype(float), groups)
    assert out["mrr"] == (1 / 2 + 1) / 2  # query 2 has no relevant item: left out
    assert recall_at_k(scores, relevant, groups, 1) == (0 + 1) / 2 and recall_at_k(scores, relevant, groups, 2) == (0.5 + 1) / 2
    assert out["recall10"] == out["recall20"] == 1.0
    assert set(out) == {"mrr", "recall10", "recall20", "ndcg5", "ndcg10", "ndcg20"}
    assert math.isnan(mrr(scores, np.zeros(7), groups)) and math.isnan(recall_at_k(scores, np.zeros(7), groups))
