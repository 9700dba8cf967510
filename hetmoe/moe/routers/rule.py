"""``rule``: a fixed table market -> k experts (best by raw-cosine AUC on the training pairs, :mod:`hetmoe.moe.rule`),
gate 1; ``"*"`` is the fallback for unknown markets."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from hetmoe.moe.routers import RoutedSpec, RouterKind, register


@register
class Rule(RouterKind):
    name = "rule"
    top_k = True
    candidate = True

    def prepare(self, spec: RoutedSpec, train: Any, k: int) -> RoutedSpec:
        from hetmoe.moe.rule import fit_rule_table

        return replace(spec, k=k, router=self.name, rule_table=fit_rule_table(train, k))

    def fixed_gates(self, spec: RoutedSpec, market_names: np.ndarray) -> np.ndarray | None:
        table = spec.rule_table
        gates = np.zeros((len(market_names), spec.n_experts), np.float32)
        for market in np.unique(market_names):
            cols = [spec.experts.index(e) for e in table.get(str(market), table["*"])]
            gates[np.ix_(np.flatnonzero(market_names == market), cols)] = 1.0
        return gates

    def route(self, spec: RoutedSpec, markets: np.ndarray, probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        fallback = spec.rule_table["*"]
        rows = [spec.rule_table.get(str(m), fallback) for m in markets]
        idx = np.array([[spec.experts.index(e) for e in row] for row in rows], dtype=np.int64)
        return idx, np.ones(idx.shape, np.float32)
