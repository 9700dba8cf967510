"""Ranking metrics, vectorised: AUC by ranks (pooled, per market, macro), nDCG@k, MRR, Recall@k, bootstrap CIs
over queries.

The ranking metrics rank each query's *judged* items by score: they measure reranking quality. Recall@k is the share
of a query's judged relevant items that rank in its top k among its judged items (not recall over the catalog, whose
unjudged items are unknown); MRR is the mean of 1 / the rank of the first relevant judged item. Queries without a
relevant judged item are left out of both (their value is undefined), as queries with an ideal DCG of 0 are of nDCG.

Why bootstrap by weights: resampling queries with replacement only changes how often each pair counts, never the
order of scores, so the scores are sorted once and every replicate is a weighted cumulative sum (1000 replicates of
tens of thousands of pairs in seconds).
"""
from __future__ import annotations

import numpy as np


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC with ties counted half (equals sklearn's roc_auc_score); NaN when one class is missing."""
    return float(weighted_auc(scores, labels, np.ones((1, len(scores))))[0])


def weighted_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC for each row of pair weights (R, n): positives and negatives count by their weight; NaN if a class is empty."""
    scores = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(labels) > 0
    order = np.argsort(scores, kind="stable")
    s, pos, w = scores[order], pos[order], np.asarray(weights, dtype=np.float64)[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # tie groups in sorted order
    w_neg = np.where(pos, 0.0, w)
    w_pos = np.where(pos, w, 0.0)
    neg_tie = np.add.reduceat(w_neg, starts, axis=1)
    pos_tie = np.add.reduceat(w_pos, starts, axis=1)
    neg_below = np.cumsum(neg_tie, axis=1) - neg_tie
    num = np.sum(pos_tie * (neg_below + 0.5 * neg_tie), axis=1)
    den = w_pos.sum(1) * w_neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def auc_by_market(scores: np.ndarray, labels: np.ndarray, markets: np.ndarray) -> dict[str, float]:
    return {str(m): auc(scores[markets == m], labels[markets == m]) for m in np.unique(markets)}


def macro(values: dict[str, float]) -> float:
    """Mean over markets, ignoring markets where the metric is undefined."""
    finite = [v for v in values.values() if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def ndcg_at_k(scores: np.ndarray, gains: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Mean nDCG@k over queries with a positive ideal DCG; gain is the grade itself (linear), discount log2(rank+1)."""
    per_query = ndcg_per_query(scores, gains, groups, k)
    return float(np.nanmean(per_query)) if np.isfinite(per_query).any() else float("nan")


def ndcg_per_query(scores: np.ndarray, gains: np.ndarray, groups: np.ndarray, k: int = 10) -> np.ndarray:
    """nDCG@k of each group in sorted-unique group order; NaN for groups whose ideal DCG is 0."""
    _, g = np.unique(groups, return_inverse=True)
    gains = np.asarray(gains, dtype=np.float64)
    n_groups = g.max() + 1 if g.size else 0

    def dcg(order: np.ndarray) -> np.ndarray:
        gs = g[order]
        first = np.r_[0, np.flatnonzero(gs[1:] != gs[:-1]) + 1]
        sizes = np.diff(np.r_[first, gs.size])
        pos = np.arange(gs.size) - np.repeat(first, sizes)
        keep = pos < k
        contrib = gains[order][keep] / np.log2(pos[keep] + 2.0)
        return np.bincount(gs[keep], weights=contrib, minlength=n_groups)

    actual = dcg(np.lexsort((-np.asarray(scores, dtype=np.float64), g)))
    ideal = dcg(np.lexsort((-gains, g)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, actual / np.where(ideal > 0, ideal, 1.0), np.nan)


RANK_CUTOFFS = (5, 10, 20)  # nDCG@k
RECALL_CUTOFFS = (10, 20)  # Recall@k


def _ranks(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(0-based rank of each pair within its group by descending score, group index of each pair); ties keep input
    order, as nDCG's sort does."""
    _, g = np.unique(groups, return_inverse=True)
    order = np.lexsort((-np.asarray(scores, dtype=np.float64), g))
    gs = g[order]
    first = np.r_[0, np.flatnonzero(gs[1:] != gs[:-1]) + 1] if gs.size else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[first, gs.size])
    rank = np.empty(gs.size, np.int64)
    rank[order] = np.arange(gs.size) - np.repeat(first, sizes)
    return rank, g


def mrr(scores: np.ndarray, relevant: np.ndarray, groups: np.ndarray) -> float:
    """Mean reciprocal rank of the first relevant judged item, over queries with one (NaN if none has)."""
    rank, g = _ranks(scores, groups)
    hit = np.asarray(relevant) > 0
    if not hit.any():
        return float("nan")
    best = np.full(g.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(best, g[hit], rank[hit])
    found = best < np.iinfo(np.int64).max
    return float(np.mean(1.0 / (best[found] + 1.0)))


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Mean over queries with a relevant judged item of the share of those items ranked in the top k of its judged
    items (NaN if no query has one)."""
    rank, g = _ranks(scores, groups)
    hit = np.asarray(relevant) > 0
    total = np.bincount(g[hit], minlength=g.max() + 1 if g.size else 0)
    top = np.bincount(g[hit & (rank < k)], minlength=total.size)
    judged = total > 0
    return float(np.mean(top[judged] / total[judged])) if judged.any() else float("nan")


def ranking_metrics(scores: np.ndarray, relevant: np.ndarray, gains: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """MRR, Recall@10/20 and nDCG@5/10/20 of one set of queries (see the module docstring for their definitions)."""
    out = {"mrr": mrr(scores, relevant, groups)}
    out.update({f"recall{k}": recall_at_k(scores, relevant, groups, k) for k in RECALL_CUTOFFS})
    out.update({f"ndcg{k}": ndcg_at_k(scores, gains, groups, k) for k in RANK_CUTOFFS})
    return out


def bootstrap_delta(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    markets: np.ndarray,
    reps: int = 1000,
    seed: int = 0,
) -> dict[str, object]:
    """Pooled and macro AUC(a) - AUC(b) with 95% percentile CIs, resampling queries with replacement within each market.

    Stratifying by market keeps every market in every replicate, so per-market (macro) AUC is always defined.
    """
    rng = np.random.default_rng(seed)
    _, q = np.unique(groups, return_inverse=True)
    q_market = np.empty(q.max() + 1, dtype=object)
    q_market[q] = markets
    counts = np.zeros((reps, q.max() + 1))
    for m in np.unique(q_market):
        members = np.flatnonzero(q_market == m)
        counts[:, members] = rng.multinomial(members.size, np.full(members.size, 1.0 / members.size), size=reps)
    pooled, macro_reps = [], []
    for lo in range(0, reps, 100):  # chunks of replicates bound memory to 100 x n_pairs
        w = counts[lo : lo + 100, q]
        pooled.append(weighted_auc(scores_a, labels, w) - weighted_auc(scores_b, labels, w))
        per_market = [
            weighted_auc(scores_a[sel], labels[sel], w[:, sel]) - weighted_auc(scores_b[sel], labels[sel], w[:, sel])
            for sel in (markets == m for m in np.unique(markets))
        ]
        macro_reps.append(np.nanmean(np.stack(per_market), axis=0))
    pooled, macro_reps = np.concatenate(pooled), np.concatenate(macro_reps)
    point_pooled = auc(scores_a, labels) - auc(scores_b, labels)
    point_macro = macro(auc_by_market(scores_a, labels, markets)) - macro(auc_by_market(scores_b, labels, markets))

    def ci(x: np.ndarray) -> list[float]:
        return [float(v) for v in np.nanpercentile(x, [2.5, 97.5])]

    return {
        "delta_auc": float(point_pooled),
        "ci95": ci(pooled),
        "delta_auc_macro": float(point_macro),
        "ci95_macro": ci(macro_reps),
        "reps": reps,
    }
