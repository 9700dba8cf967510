"""``model2vec``: static embedding models (token vectors averaged); the fastest experts by far."""
from __future__ import annotations

import numpy as np

from hetmoe.experts.base import Encoder, require_cpu
from hetmoe.experts.card import ExpertCard, Kind
from hetmoe.experts.locate import resolve_model
from hetmoe.experts.registry import register_backend


@register_backend("model2vec")
class StaticEncoder(Encoder):
    """``model`` is a model2vec directory, e.g. ``pkg:static_model/model``; literal prompts are prefixed."""

    returns_normalized = True
    honours = frozenset({"revision", "max_length", "query_prompt", "document_prompt"})

    def __init__(self, card: ExpertCard) -> None:
        self.check_card(card)
        require_cpu(card)
        path = resolve_model(card)
        from model2vec import StaticModel

        self._model = StaticModel.from_pretrained(str(path))
        if card.max_length is not None:
            self._model.max_length = card.max_length
        super().__init__(card, self._model.dim)

    def _encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        return self._model.encode(
            self.with_prompt(texts, kind), normalize=self.card.normalize, batch_size=self.card.batch_size
        )
