"""``none``: every expert, gate 1 (full concatenation; a single-expert model is ``none`` over one expert)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hetmoe.moe.routers import RouterKind, every_expert, register

if TYPE_CHECKING:
    from hetmoe.moe.spec import ModelSpec


@register
class Concat(RouterKind):
    name = "none"

    def route(self, spec: ModelSpec, markets: np.ndarray, probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return every_expert(markets.shape[0], spec.n_experts)
