"""``hard``: learned router, softmax over experts, hard top-k, gates renormalised over the k selected (the method)."""
from __future__ import annotations

from typing import Any

import numpy as np

from hetmoe.moe.routers import RoutedSpec, RouterKind, register


@register
class Hard(RouterKind):
    name = "hard"
    learned = True
    top_k = True
    candidate = True

    def train_gates(self, probs: Any, top_gates: Any) -> Any:
        return top_gates

    def route(self, spec: RoutedSpec, markets: np.ndarray, probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        assert probs is not None
        idx = np.argsort(-probs, axis=1, kind="stable")[:, : spec.k_eff]
        gates = np.take_along_axis(probs, idx, axis=1)
        return idx.astype(np.int64), (gates / gates.sum(1, keepdims=True)).astype(np.float32)
