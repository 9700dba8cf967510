"""``none``: every expert, gate 1 (full concatenation; a single-expert model is ``none`` over one expert)."""
from __future__ import annotations


import numpy as np

from hetmoe.moe.routers import RoutedSpec, RouterKind, every_expert, register


@register
class Concat(RouterKind):
    name = "none"

    def route(self, spec: RoutedSpec, markets: np.ndarray, probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return every_expert(markets.shape[0], spec.n_experts)
