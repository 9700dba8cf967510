"""A tiny base class and registry for heads: what turns a batch's feature blocks into one logit per pair.

Why each head owns its inputs and files: the net, the stacked trees, the transfer head and LightGBM read different
blocks and keep different artifacts; like sentence-transformers' modules, each says what it reads (``blocks``) and
writes and reads back its own files (``save`` / ``load``), so a model folder is the list of its heads.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from hetmoe.errors import HetmoeError

if TYPE_CHECKING:
    from hetmoe.moe.spec import ModelSpec
    from hetmoe.pairs.blocks.base import FeatureBlock

_HEADS: dict[str, type[Head]] = {}


class Head(ABC):
    """One head of a model; ``files`` are the artifacts ``save`` writes into the model folder."""

    kind: ClassVar[str]
    files: ClassVar[tuple[str, ...]]

    @abstractmethod
    def blocks(self, spec: ModelSpec) -> dict[str, FeatureBlock]:
        """The feature blocks this head reads under ``spec``."""

    @abstractmethod
    def save(self, folder: Path) -> dict[str, Any]:
        """Write this head's files into ``folder``; returns its entry of the model's config.json."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, config: dict[str, Any], spec: ModelSpec) -> Head:
        """The head ``save`` wrote (``config``: the model's config.json; its own entry is ``config["heads"][kind]``)."""


def register(cls: type[Head]) -> type[Head]:
    _HEADS[cls.kind] = cls
    return cls


def head_class(kind: str) -> type[Head]:
    if kind not in _HEADS:
        raise HetmoeError(f"unknown head '{kind}' in the model's config.json (known: {', '.join(_HEADS)}); retrain it "
                          "with this hetmoe")
    return _HEADS[kind]


WIDE = 16  # output columns from which a BLAS product of several rows computes each row the same way


def matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` whose rows do not depend on the other rows of ``x``, so a pair scores the same bits alone or among
    others. BLAS multiplies a single row (a matrix-vector product), or into fewer than WIDE outputs, with another
    summation order than a product of many rows: a single row is multiplied as two, narrow products go row by row
    through ``einsum`` (tests/test_moe_core.py checks both on the BLAS it runs on)."""
    if w.ndim == 1 or w.shape[1] < WIDE:
        return np.einsum("ij,j...->i...", x, w)
    if x.shape[0] == 1:
        return (np.concatenate([x, x]) @ w)[:1]
    return x @ w
