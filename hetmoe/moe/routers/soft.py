"""``soft``: learned router, every expert scaled by its softmax weight in training; at inference experts whose weight
is below ``soft_threshold`` are dropped (not encoded), the others keep their weight."""
from __future__ import annotations

from typing import Any

import numpy as np

from hetmoe.moe.routers import RoutedSpec, RouterKind, register


@register
class Soft(RouterKind):
    name = "soft"
    learned = True

    def train_gates(self, probs: Any, top_gates: Any) -> Any:
        return probs

    def route(self, spec: RoutedSpec, markets: np.ndarray, probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        assert probs is not None
        idx = np.tile(np.arange(spec.n_experts, dtype=np.int64), (probs.shape[0], 1))
        return idx, np.where(probs >= spec.soft_threshold, probs, 0.0).astype(np.float32)
