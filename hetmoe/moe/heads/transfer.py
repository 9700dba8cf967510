"""The head for markets a model never saw: a logistic regression over similarities whose scale no catalog sets
(fitted by :func:`hetmoe.moe.transfer.fit_transfer`, which says why).

It reads each of its experts' raw cosine (the statistics block's first column) and the lexical block's scale-free
columns ``lexical``; a model routes a query of a market outside ``spec.markets`` to ``experts`` and scores its pairs
here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from hetmoe.moe.heads.base import Head, matmul, register

if TYPE_CHECKING:
    from hetmoe.moe.spec import ModelSpec
    from hetmoe.pairs.blocks.base import FeatureBlock
    from hetmoe.pairs.features import PairFeatures


@register
@dataclass
class TransferHead(Head):
    """Logistic regression over ``experts``' raw cosines then the ``lexical`` features, standardised by mean/std."""

    kind = "transfer"
    files = ()

    experts: list[str]
    lexical: list[str]
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    bias: float

    def logits(self, cosines: Sequence[np.ndarray], lexical: np.ndarray | None, lexical_names: Sequence[str]) -> np.ndarray:
        """(n,) logits from each of ``experts``' pair cosines (in order) and the model's (n, F) lexical features
        named ``lexical_names`` (the head reads its own columns of them)."""
        return matmul(_standardise(self.matrix(cosines, lexical, lexical_names), self.mean, self.std), self.coef) + self.bias

    def matrix(self, cosines: Sequence[np.ndarray], lexical: np.ndarray | None, lexical_names: Sequence[str]) -> np.ndarray:
        if len(cosines) != len(self.experts):
            raise ValueError(f"transfer head reads {len(self.experts)} experts' cosines, got {len(cosines)}")
        cols = [np.asarray(c, np.float64) for c in cosines]
        if self.lexical:
            names = list(lexical_names)
            cols += [np.asarray(lexical)[:, names.index(f)].astype(np.float64) for f in self.lexical]
        return np.nan_to_num(np.column_stack(cols))

    def blocks(self, spec: ModelSpec) -> dict[str, FeatureBlock]:
        from hetmoe.pairs.blocks import make_block

        return {"lexical": make_block("lexical", {"store": spec.lexical_store})} if self.lexical else {}

    def pair_logits(self, feats: PairFeatures, lexical_names: Sequence[str]) -> np.ndarray:
        """(n,) logits of ``feats``' pairs (every one of its experts' query vectors present): raw cosines only, so
        these queries need no catalog search."""
        cosines = [feats.cosines(e) for e in self.experts]
        return self.logits(cosines, feats.block("lexical") if self.lexical else None, lexical_names)

    def save(self, folder: Path) -> dict[str, Any]:
        return self.to_dict()

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any], spec: ModelSpec) -> TransferHead:
        return cls.from_dict(config["heads"][cls.kind])

    def to_dict(self) -> dict[str, Any]:
        return {"experts": self.experts, "lexical": self.lexical, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "coef": self.coef.tolist(), "bias": self.bias}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TransferHead":
        return cls(list(data["experts"]), list(data["lexical"]), np.asarray(data["mean"]), np.asarray(data["std"]),
                   np.asarray(data["coef"]), float(data["bias"]))


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (x - mean) / std
