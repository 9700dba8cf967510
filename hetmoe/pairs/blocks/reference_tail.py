"""Where a pair's cosine sits against the far end of its query's reference row: its gap to the row's last cosine,
and the row's spread (best minus last). The statistics block places the cosine against the row's mean, spread and
best; a query whose 16 best items are all alike (a narrow row) and one with a single stand-out item look the same
to those. Per expert, from the query's reference row (no search of its own): per pair two subtractions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hetmoe.pairs.blocks.base import FeatureBlock, per_expert_rows, register

if TYPE_CHECKING:
    from hetmoe.pairs.features import PairFeatures


@register
class ReferenceTail(FeatureBlock):
    name = "reference_tail"
    per_expert = True
    needs = ("vectors", "reference")
    columns = ("cos_minus_last_reference", "reference_spread")

    def compute(self, feats: PairFeatures, expert: str | None) -> np.ndarray:
        assert expert is not None
        out, at = per_expert_rows(feats, expert, len(self.columns))
        reference = feats.reference(expert)[0][feats.batch.qi[at]]
        out[at, 0] = feats.cosines(expert)[at] - reference[:, -1]
        out[at, 1] = reference[:, 0] - reference[:, -1]
        return out
