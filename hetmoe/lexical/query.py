"""The query side of a call: each distinct query text tokenized once, as sorted term and n-gram sets plus counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hetmoe.lexical import ngrams
from hetmoe.lexical.bm25 import tf_limit
from hetmoe.lexical.catalog import LexicalCatalog
from hetmoe.lexical.join import QuerySets
from hetmoe.lexical.terms import BIGRAM, MODEL, N_KINDS, NUMBER, QUANTITY, UNIT, term_kind
from hetmoe.lexical.tokenize import Tokenizer

MIN_SUBSTRING = 3  # shorter query words ("in", "2") are inside almost any title


@dataclass(frozen=True)
class QueryBatch:
    """Per distinct query: term sets for the joins, the counts features divide by, and strings for substring tests."""

    terms: QuerySets  # known distinct term ids
    ngrams: QuerySets
    ngram_weights: np.ndarray  # aligned with ``ngrams.keys``
    counts: dict[str, np.ndarray]  # per query: kind counts, idf (and squared idf) sums of base terms, BM25 norms
    first: np.ndarray  # term id of the first / last base token (-1: unknown or none)
    last: np.ndarray
    compact: list[str]
    words: list[list[str]]  # surface words of >= 3 characters with a letter
    models: list[list[str]]  # model tokens ("rg6")

    @classmethod
    def prepare(
        cls, catalog: LexicalCatalog, tokenizer: Tokenizer, grams: ngrams.WordGrams, texts: Sequence[str]
    ) -> QueryBatch:
        vocab_get, n = catalog.vocab.ids.get, len(texts)
        owner: list[int] = []
        ids: list[int] = []
        unknown_kinds: list[int] = []
        first, last = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        compact, words, models, surfaces = [], [], [], []
        for q, text in enumerate(texts):
            tokens = tokenizer(text)
            distinct = dict.fromkeys(tokens.terms)
            term_ids = [vocab_get(t, -1) for t in distinct]
            owner += [q] * len(term_ids)
            ids += term_ids
            unknown_kinds += [term_kind(t) if i < 0 else -1 for t, i in zip(distinct, term_ids)]
            if tokens.n_base:
                first[q], last[q] = vocab_get(tokens.base[0], -1), vocab_get(tokens.base[-1], -1)
            surface = tokens.surface.split()
            surfaces.append(tokens.surface)
            compact.append("".join(surface))
            words.append([w for w in dict.fromkeys(surface) if len(w) >= MIN_SUBSTRING and any(c.isalpha() for c in w)])
            models.append([t for t in distinct if term_kind(t) == MODEL])
        owner_a, ids_a = np.asarray(owner, dtype=np.int64), np.asarray(ids, dtype=np.int64)
        known = ids_a >= 0
        kinds = np.where(known, catalog.vocab.kinds[np.maximum(ids_a, 0)], np.asarray(unknown_kinds, dtype=np.int64))
        counts = _counts(catalog, owner_a, ids_a, kinds, n)
        terms = QuerySets.build(owner_a[known], ids_a[known], len(catalog.vocab), n)
        g_indptr, g_indices, g_counts = grams.term_counts(surfaces)
        g_owner, g_index, g_weights = ngrams.query_rows(
            g_indptr, g_indices, g_counts, catalog.ngram_buckets, catalog.ngram_idf, catalog.statistics_items
        )
        gram_sets = QuerySets.build(g_owner, g_index, max(catalog.ngram_buckets.size, 1), n)  # keys in row order
        return cls(
            terms=terms,
            ngrams=gram_sets,
            ngram_weights=g_weights,
            counts=counts,
            first=first,
            last=last,
            compact=compact,
            words=words,
            models=models,
        )


def _counts(
    catalog: LexicalCatalog, owner: np.ndarray, ids: np.ndarray, kinds: np.ndarray, n: int
) -> dict[str, np.ndarray]:
    """Per query: distinct base terms, numbers, quantities, units; idf sum of base terms; largest BM25 per field."""
    title, text, limit = catalog.title, catalog.text_field, tf_limit(catalog.config)
    by_kind = np.bincount(owner * N_KINDS + kinds, minlength=n * N_KINDS).reshape(n, N_KINDS).astype(np.float64)
    idf_title = title.idf_of(ids)
    base = kinds <= MODEL  # WORD, NUMBER, MODEL
    scored = kinds != BIGRAM  # bigrams match but carry no BM25 weight
    norm_title = np.bincount(owner[scored], weights=idf_title[scored], minlength=n) * limit
    norm_text = None
    if catalog.text is not None:
        norm_text = np.bincount(owner[scored], weights=text.idf_of(ids)[scored], minlength=n) * limit
    return {
        "base": by_kind[:, : MODEL + 1].sum(axis=1),
        "number": by_kind[:, NUMBER],
        "quantity": by_kind[:, QUANTITY],
        "unit": by_kind[:, UNIT],
        "bigram": by_kind[:, BIGRAM],
        "idf_base": np.bincount(owner[base], weights=idf_title[base], minlength=n),
        "idf2_base": np.bincount(owner[base], weights=idf_title[base] ** 2, minlength=n),
        "norm_title": norm_title,
        "norm_text": norm_title if norm_text is None else norm_text,
    }
