"""A block of pairs scored as columns: routing, query vectors, features and heads run on arrays for the whole block.

Why not the Scorer's requests: a request is a Python object per query, with a cache lookup per query and expert;
at ten pairs a query (multimarket's judged lists) that bookkeeping cost more than the arithmetic. Here each step is a
few numpy calls over the block: one router call, one store read or one batch encode per expert, one feature pass
per block, one head call; the features come from :meth:`Scorer.features <hetmoe.online.scorer.Scorer.features>`,
the one path every scoring call takes, so a pair scores as it does online and in ``eval``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from hetmoe.moe.heads.stacked import read_experts
from hetmoe.vectors import check_scores

if TYPE_CHECKING:
    from hetmoe.online.scorer import Scorer


def score_columns(scorer: Scorer, texts: np.ndarray, markets: np.ndarray, rows: np.ndarray, groups: np.ndarray,
                  stored: Mapping[str, np.ndarray], stored_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n,), routed experts "a+b" per query row) of pairs (query row ``groups[j]``, catalog row ``rows[j]``).

    ``texts``/``markets`` (n_q,) per query row; ``stored`` per expert the raw vectors (n_q, d) of the rows marked in
    ``stored_rows`` (a store's query vectors, as ``eval`` reads them); the other rows' texts are encoded."""
    model, n_q = scorer.model, texts.shape[0]
    vectors: dict[str, np.ndarray] = {}
    have: dict[str, np.ndarray] = {}

    def fill(expert: str, wanted: np.ndarray) -> None:
        if expert not in vectors:
            dim = scorer.catalog.vectors[expert].shape[1] if expert in scorer.catalog.vectors else model.spec.router_dim
            vectors[expert] = np.zeros((n_q, dim), np.float32)
            have[expert] = np.zeros(n_q, bool)
        wanted = wanted & ~have[expert]
        from_store = wanted & stored_rows
        if from_store.any():
            vectors[expert][from_store] = stored[expert][from_store]
        encode = np.flatnonzero(wanted & ~stored_rows)
        if encode.size:  # each distinct text once
            distinct, at = np.unique(texts[encode], return_inverse=True)
            vectors[expert][encode] = scorer.encoder(expert).encode(distinct.tolist(), kind="query")[at.ravel()]
        have[expert] |= wanted

    everyone = np.ones(n_q, bool)
    router = model.router_expert
    if router is not None:
        fill(router, everyone)
    routing = model.route(markets, vectors.get(router) if router is not None else None)
    dense = model.dense_gates(routing)
    read = read_experts(model.spec, dense) if model.stack is not None else dense > 0
    for i, expert in enumerate(model.experts):
        fill(expert, read[:, i])
    used = [e for e in model.experts if have.get(e, np.zeros(0, bool)).any()]
    feats = scorer.features(texts.tolist(), markets.tolist(), {e: vectors[e] for e in used},
                            {e: have[e] for e in used}, rows, groups)
    scores = check_scores(model.score(feats, routing), "this block")
    return scores, routed_names(model.experts, routing)


def routed_names(experts: list[str], routing: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(n_q,) "a+b": each row's experts with a gate above 0, best first (as ``Routing.experts``), one string per
    distinct routing pattern."""
    idx, gates = routing
    order = np.argsort(-gates, axis=1, kind="stable")
    key = np.where(np.take_along_axis(gates, order, 1) > 0, np.take_along_axis(idx, order, 1), -1)
    patterns, at = np.unique(key, axis=0, return_inverse=True)
    names = np.array(["+".join(experts[j] for j in row if j >= 0) for row in patterns.tolist()], dtype=object)
    return names[at.ravel()]
