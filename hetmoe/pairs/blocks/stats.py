"""Expert statistics: per routed expert, the pair's cosine, raw dot product, and two statistics that make a cosine
comparable across queries.

With ``pair_stats="reference"`` (the default) those are the z-score of the cosine against the query's reference row
(its best cosines over its market's catalog) and the gap to the best of them: fixed by the query and the catalog, so a
pair scores the same alone or among others. ``listwise`` takes the z-score and rank within the scored list instead
(scores then depend on their companions). Costs: per query one reference search (:mod:`hetmoe.pairs.reference`),
per pair one d-dimensional dot product.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.moe.pairstats import group_stats
from hetmoe.moe.reference import reference_stats
from hetmoe.moe.spec import PAIR_STATS
from hetmoe.pairs.blocks.base import FeatureBlock, per_expert_rows, register

if TYPE_CHECKING:
    from hetmoe.pairs.features import PairFeatures

STATS_COLUMNS = ("cos", "dot", "z", "gap")


@register
class ExpertStats(FeatureBlock):
    name = "stats"
    per_expert = True
    needs = ("vectors", "reference")
    columns = STATS_COLUMNS

    def __init__(self, pair_stats: str = "reference") -> None:
        if pair_stats not in PAIR_STATS:
            raise ValueError(f"pair_stats must be one of {PAIR_STATS}, got {pair_stats!r}")
        self.pair_stats = pair_stats
        self.needs = ("vectors", "reference") if pair_stats == "reference" else ("vectors",)  # type: ignore[misc]

    def config(self) -> dict[str, Any]:
        return {"pair_stats": self.pair_stats}

    def compute(self, feats: PairFeatures, expert: str | None) -> np.ndarray:
        assert expert is not None
        out, at = per_expert_rows(feats, expert, len(self.columns))
        qi, di = feats.batch.qi[at], feats.batch.di[at]
        cos = feats.cosines(expert)[at]
        if self.pair_stats == "reference":
            stats = reference_stats(cos, feats.reference(expert)[0][qi])
        else:
            stats = group_stats(cos, qi)
        out[at, 0] = cos
        out[at, 1] = cos * feats.q_norms(expert)[qi] * feats.d_norms(expert)[di]
        out[at, 2:] = stats[:, 1:]
        return out
