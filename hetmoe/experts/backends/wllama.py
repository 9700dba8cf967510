"""``wordllama``: LLM token embeddings averaged, unnormalised by default (the card's ``normalize`` decides).

WordLlama pads every batch to its longest text, so texts are sorted by length before batching (restored after).
"""
from __future__ import annotations

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.experts.base import Encoder, require_cpu
from hetmoe.experts.card import ExpertCard, Kind
from hetmoe.experts.locate import resolve_model
from hetmoe.experts.registry import register_backend


@register_backend("wordllama")
class WordLlamaEncoder(Encoder):
    """``model`` is a weights file ``<cache>/weights/<config>_<dim>.safetensors``, e.g.
    ``pkg:wordllama/weights/l2_supercat_256.safetensors``; config and dim are read from the name."""

    honours = frozenset({"revision", "query_prompt", "document_prompt"})

    def __init__(self, card: ExpertCard) -> None:
        self.check_card(card)
        require_cpu(card)
        path = resolve_model(card)
        config, _, dim = path.name.removesuffix(".safetensors").rpartition("_")
        if path.parent.name != "weights" or not dim.isdigit():
            raise HetmoeError(
                f"expert {card.name!r}: {path} is not a WordLlama weights file "
                "<dir>/weights/<config>_<dim>.safetensors; fix model in the card"
            )
        from wordllama import WordLlama

        try:
            self._model = WordLlama.load(config, cache_dir=path.parent.parent, dim=int(dim), disable_download=True)
        except (AttributeError, ValueError, FileNotFoundError) as err:
            raise HetmoeError(
                f"expert {card.name!r}: WordLlama cannot load {path} ({err}); fix model in the card"
            ) from err
        super().__init__(card, self._model.embedding.shape[1])

    def _encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        texts = self.with_prompt(texts, kind)
        order = np.argsort(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        out[order] = self._model.embed([texts[i] for i in order], norm=False, batch_size=self.card.batch_size)
        return np.nan_to_num(out, copy=False)
