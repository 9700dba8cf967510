"""hetmoe: a coarse-grained mixture of heterogeneous embedding experts for search relevance.

Heavy pieces are imported lazily so that ``import hetmoe`` and ``hetmoe --help`` stay fast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["EmbeddingStore", "Scorer", "HetmoeError", "__version__"]

from hetmoe.errors import HetmoeError

if TYPE_CHECKING:
    from hetmoe.online.scorer import Scorer
    from hetmoe.store.zarr_store import EmbeddingStore


def __getattr__(name: str) -> Any:
    if name == "EmbeddingStore":
        from hetmoe.store.zarr_store import EmbeddingStore

        return EmbeddingStore
    if name == "Scorer":
        from hetmoe.online.scorer import Scorer

        return Scorer
    raise AttributeError(f"module 'hetmoe' has no attribute {name!r}")
