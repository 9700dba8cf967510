"""Fitting the head for markets a model never saw (:class:`~hetmoe.moe.heads.transfer.TransferHead`): a logistic
regression over similarities whose scale no catalog sets.

Why: the stacked head's trees and the net learn a market's thresholds (Shopee's "same product group" cosines are not
Home Depot's graded relevance). Fit on Shopee and scored on Home Depot they fell to 0.59-0.65 macro AUC, below
MiniLM's raw cosine there (0.69). A linear model over each expert's raw cosine and the lexical expert's query-side
similarities (``TRANSFER_LEXICAL``, all in [0, 1]) keeps only how much each match counts, which carries: 0.69 on Home
Depot fit on Shopee, 0.87 on Shopee fit on Home Depot. Counts, raw BM25, item-side coverage and item
neighbourhoods are left out: their scale follows the catalog (every bounded lexical feature took Shopee to 0.66,
all 25 to 0.72; bench/transfer.py).

A model with a transfer head routes a query of a market outside ``spec.markets`` to the head's experts (the ones
whose raw cosine ranks best over the training markets, as many as the model routes) and scores its pairs with the
head; known markets never read it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from hetmoe.moe.features import PairSet
from hetmoe.moe.heads.transfer import TransferHead, _standardise
from hetmoe.moe.rule import fit_rule_table

TRANSFER_LEXICAL = ("tfidf_char_cos", "bm25_title_norm", "word_cosine", "query_coverage")
L2 = 1.0  # ridge on the standardised coefficients (the training pairs' weights sum to their count)
MAX_STEPS = 50


def fit_transfer(pairs: PairSet, experts: Sequence[str], k: int) -> TransferHead:
    """Fit the head on ``pairs`` (each market weighted equally) over the best ``k`` of ``experts``: the rule
    table's row for unknown markets (best raw-cosine macro AUC over the training markets)."""
    chosen = fit_rule_table(pairs.select_experts(list(experts)), k)["*"]
    lexical = [f for f in TRANSFER_LEXICAL if f in pairs.lex_names]
    head = TransferHead(chosen, lexical, np.zeros(0), np.ones(0), np.zeros(0), 0.0)
    x = head.matrix([pairs.stats[:, pairs.experts.index(e), 0] for e in chosen], pairs.lex, pairs.lex_names)
    head.mean, head.std = x.mean(0), np.maximum(x.std(0), 1e-6)
    markets = pairs.q_market[pairs.qi]
    counts = np.bincount(markets)
    weight = len(markets) / (np.count_nonzero(counts) * counts[markets])
    beta = _logistic(_standardise(x, head.mean, head.std), pairs.y.astype(np.float64), weight)
    head.coef, head.bias = beta[:-1], float(beta[-1])
    return head


def _logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted ridge logistic regression by Newton steps: coefficients then intercept (not penalised)."""
    xb = np.column_stack([x, np.ones(x.shape[0])])
    penalty = np.full(xb.shape[1], L2)
    penalty[-1] = 0.0
    beta = np.zeros(xb.shape[1])
    for _ in range(MAX_STEPS):
        p = 1.0 / (1.0 + np.exp(-(xb @ beta)))
        grad = xb.T @ (weight * (p - y)) + penalty * beta
        hess = (xb * (weight * p * (1.0 - p))[:, None]).T @ xb + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta
