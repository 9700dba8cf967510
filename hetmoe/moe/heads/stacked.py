"""The stacked head: gradient-boosted trees over the routed experts' statistics and item-neighbourhood columns, the
lexical block and the MoE net's own logit (trained by :mod:`hetmoe.moe.stack`).

It keeps the MoE's online cost: only the routed experts (and, with ``stack_router``, the router expert, whose query
vector routing computes anyway) have columns; the others are missing values, which the trees route natively.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.moe.heads.base import Head, register
from hetmoe.moe.heads.trees import predict_raw, tree_blocks, tree_matrix

if TYPE_CHECKING:
    from hetmoe.moe.spec import ModelSpec
    from hetmoe.pairs.blocks.base import FeatureBlock
    from hetmoe.pairs.features import PairFeatures

STACK_FILE = "stack.txt"  # the booster (LightGBM text format), beside the net's weights


def reads_router_expert(spec: Any) -> bool:
    """Whether the booster reads the router expert's columns on every query: asked for (``stack_router``), and a
    learned router whose expert is one of the model's (rule routing encodes no router vector)."""
    return bool(spec.stack_router and spec.learned_router and spec.router_expert in spec.experts)


def read_experts(spec: Any, dense: np.ndarray) -> np.ndarray:
    """(n_q, N) bool: the experts whose columns the booster reads per query row: the routed ones (gate > 0), and the
    router expert on every row when :func:`reads_router_expert`."""
    read = dense > 0
    if reads_router_expert(spec):
        read[:, spec.experts.index(spec.router_expert)] = True
    return read


@register
class StackedHead(Head):
    """A trained booster; its raw scores replace the net's logits."""

    kind = "stacked"
    files = (STACK_FILE,)

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def blocks(self, spec: ModelSpec) -> dict[str, FeatureBlock]:
        return tree_blocks(spec.pair_stats, spec.lexical_store, spec.item_neighbourhood, spec.extra_blocks)

    def save(self, folder: Path) -> dict[str, Any]:
        from hetmoe.moe.artifacts import save_booster

        save_booster(self.booster, folder / STACK_FILE)
        return {}

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any], spec: ModelSpec) -> StackedHead:
        """The booster, checked before LightGBM reads it (:func:`hetmoe.moe.artifacts.load_booster`)."""
        from hetmoe.moe.artifacts import load_booster

        return cls(load_booster(folder, STACK_FILE, config))

    def matrix(self, spec: ModelSpec, feats: PairFeatures, dense: np.ndarray, net_logit: np.ndarray,
               market: np.ndarray) -> np.ndarray:
        """The booster's input for ``feats``' pairs: routed (and router-expert) columns, lexical, net logit, market
        index per pair."""
        read = read_experts(spec, dense)[feats.batch.qi]
        return tree_matrix(feats, spec.experts, read, list(self.blocks(spec)), [np.asarray(net_logit, np.float32)],
                           market)

    def logits(self, spec: ModelSpec, feats: PairFeatures, dense: np.ndarray, net_logit: np.ndarray,
               market: np.ndarray) -> np.ndarray:
        return predict_raw(self.booster, self.matrix(spec, feats, dense, net_logit, market))
