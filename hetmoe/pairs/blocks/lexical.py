"""Lexical features: the lexical expert's 25 match features of the pair's query text and item (BM25, char n-gram
TF-IDF cosine, token overlap; :mod:`hetmoe.lexical`), one set per pair whatever the routing.

Costs: per catalog the lexical fit (``hetmoe embed --expert lexical``); per query its tokenized side (cached for a
served query); per pair a sparse join of its title terms with the query's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.lexical.features import FEATURE_NAMES
from hetmoe.pairs.blocks.base import FeatureBlock, register

if TYPE_CHECKING:
    from hetmoe.pairs.features import PairFeatures


@register
class LexicalMatch(FeatureBlock):
    name = "lexical"
    per_expert = False
    needs = ("lexical",)
    columns = tuple(FEATURE_NAMES)

    def __init__(self, store: str = "") -> None:
        self.store = store

    def config(self) -> dict[str, Any]:
        return {"store": self.store}

    def compute(self, feats: PairFeatures, expert: str | None) -> np.ndarray:
        ctx, batch = feats.context, feats.batch
        assert ctx.lexical is not None, "checked when the context was built"
        rows = ctx.lexical_rows(batch.item_rows)[batch.di]
        texts = list(batch.texts)
        if len(texts) == 1:
            return ctx.lexical.prepared_features(ctx.lexical_queries(texts), rows, batch.qi)
        return ctx.lexical.features(texts, rows, batch.qi)
