"""A tiny base class and registry for feature blocks.

Why a registry: a head names the blocks it reads (``stats``, ``neighbourhood``, ``lexical``) and their settings in
its config, and a new block is one file with one ``@register``d class; nothing else learns its name.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from hetmoe.errors import HetmoeError

if TYPE_CHECKING:
    from hetmoe.pairs.features import PairFeatures

_BLOCKS: dict[str, type[FeatureBlock]] = {}


class FeatureBlock(ABC):
    """One group of pair features: ``columns`` per pair, per expert when ``per_expert``.

    ``needs`` names what it reads from the catalog (``vectors``, ``reference``, ``neighbours``, ``lexical``), so
    loaders build only what a model's blocks use; ``config`` is its whole state in a model's config.json.
    """

    name: ClassVar[str]
    per_expert: ClassVar[bool]
    needs: ClassVar[tuple[str, ...]]
    columns: tuple[str, ...]

    @abstractmethod
    def compute(self, feats: PairFeatures, expert: str | None) -> np.ndarray:
        """(len(feats), len(columns)) float32; NaN for pairs whose query lacks the expert's vector."""

    def config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureBlock:
        return cls(**config)


def register(cls: type[FeatureBlock]) -> type[FeatureBlock]:
    _BLOCKS[cls.name] = cls
    return cls


def block_names() -> tuple[str, ...]:
    return tuple(_BLOCKS)


def make_block(name: str, config: dict[str, Any] | None = None) -> FeatureBlock:
    """The block ``name`` with ``config`` (its ``config()`` as saved)."""
    cls = _BLOCKS.get(name)
    if cls is None:
        raise HetmoeError(f"unknown feature block '{name}' (known: {', '.join(_BLOCKS)})")
    return cls.from_config(dict(config or {}))


def per_expert_rows(feats: PairFeatures, expert: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(an all-NaN (n, width) output, the pairs that have ``expert``'s query vector): the frame of a per-expert block."""
    return np.full((len(feats), width), np.nan, np.float32), feats.pairs_with(expert)
