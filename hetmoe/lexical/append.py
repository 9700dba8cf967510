"""Growing a fitted lexical expert by new items without refitting: the catalog statistics stay as fitted.

Why: a catalog grows every day, and a refit re-tokenizes every item (minutes at a million) and moves every pair's
features a little (corpus statistics). An appended item is tokenized alone and weighed with the fitted statistics:
its BM25 weights with the fitted idf and mean document length (bm25s's own term-frequency factor), its char n-gram
row with the fitted n-gram idf (n-grams no fitted title has cannot match a query, as on the query side, so they only
count in the row's norm). Terms first seen in appended items join the vocabulary with the idf of a term seen once,
so a query can match a new brand at once. The old items' rows and every pair feature of them are unchanged; refit
(``--overwrite``) when the catalog has changed enough for its statistics to drift.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.lexical import ngrams
from hetmoe.lexical.bm25 import Bm25Field, tf_component
from hetmoe.lexical.catalog import LexicalCatalog, _item_stats
from hetmoe.lexical.terms import BIGRAM, Vocabulary
from hetmoe.lexical.tokenize import Tokenizer


def _grow_field(field: Bm25Field, docs: list[list[int]], catalog: LexicalCatalog, vocab: Vocabulary) -> Bm25Field:
    """``field`` with one more row per document (term ids with repeats), weighed with the fitted statistics."""
    n_terms = len(vocab)
    idf = np.concatenate([field.idf, np.full(n_terms - field.idf.size, field.rare, np.float32)])
    lengths = np.fromiter((len(d) for d in docs), np.int64, count=len(docs))
    flat = np.fromiter((t for d in docs for t in d), np.int64, count=int(lengths.sum()))
    owner = np.repeat(np.arange(len(docs)), lengths)
    keys, tf = np.unique(owner * n_terms + flat, return_counts=True)
    rows, terms = keys // n_terms, keys % n_terms
    scored = vocab.kinds[terms] != BIGRAM
    dl = np.bincount(owner[vocab.kinds[flat] != BIGRAM], minlength=len(docs)).astype(np.float32)
    weights = np.where(scored, idf[terms] * tf_component(tf.astype(np.float32), dl[rows], field.avgdl, catalog.config),
                       0.0).astype(np.float32)
    indptr = field.indptr[-1] + np.cumsum(np.bincount(rows, minlength=len(docs)))
    return Bm25Field(np.concatenate([field.indptr, indptr]).astype(np.int64),
                     np.concatenate([field.indices, terms.astype(np.int32)]),
                     np.concatenate([field.weights, weights]), idf, field.avgdl)


def _ngram_rows(catalog: LexicalCatalog, surfaces: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, bucket index, weight) of the new titles' n-grams the fitted catalog knows, normed over all of them."""
    indptr, hashed, counts = ngrams.term_counts(surfaces, catalog.config)
    buckets = catalog.ngram_buckets
    where = np.minimum(np.searchsorted(buckets, hashed), max(buckets.size - 1, 0))
    known = buckets[where] == hashed if buckets.size else np.zeros(hashed.size, bool)
    idf = np.where(known, catalog.ngram_idf[where] if buckets.size else 0.0, ngrams.unseen_idf(catalog.statistics_items))
    weights = ngrams.weigh(indptr, counts, idf)
    owner = np.repeat(np.arange(len(surfaces)), np.diff(indptr))[known]
    rows = np.concatenate(([0], np.cumsum(np.bincount(owner, minlength=len(surfaces)))))
    return rows, where[known].astype(np.int32), weights[known]


def append_catalog(catalog: LexicalCatalog, item_ids: Sequence[str], titles: Sequence[str],
                   texts: Sequence[str | None] | None = None) -> LexicalCatalog:
    """``catalog`` with these items after its own (ids new to it); the fitted statistics unchanged."""
    if catalog.fitted_items <= 0 or catalog.title.avgdl <= 0:
        raise HetmoeError("this lexical store was fitted by an older hetmoe that did not record its statistics; refit "
                          "it once with --overwrite, later appends then grow it")
    clash = set(item_ids) & set(catalog.item_ids.tolist())
    if clash:
        raise HetmoeError(f"{len(clash)} appended item id(s) are already in the lexical catalog, e.g. {sorted(clash)[:3]}")
    tokenizer = Tokenizer(stem=catalog.config.stem)
    title_tokens = [tokenizer(t) for t in titles]
    texts = list(texts) if texts is not None else [None] * len(title_tokens)
    with_text = [tokenizer(f"{t}\n{x}").terms if x and x.strip() else tok.terms
                 for t, x, tok in zip(titles, texts, title_tokens)]
    known = set(catalog.vocab.ids)
    fresh = [t for t in dict.fromkeys(t for tok in title_tokens for t in tok.terms) if t not in known]
    fresh += [t for t in dict.fromkeys(t for doc in with_text for t in doc) if t not in known and t not in fresh]
    vocab = Vocabulary(catalog.vocab.terms + fresh)
    title = _grow_field(catalog.title, [[vocab.ids[t] for t in tok.terms] for tok in title_tokens], catalog, vocab)
    text = None if catalog.text is None else _grow_field(  # no text field: title + text is the title, as fitted
        catalog.text, [[vocab.ids[t] for t in doc] for doc in with_text], catalog, vocab)
    start = catalog.item_ids.size
    new_rows = Bm25Field(title.indptr[start:] - title.indptr[start], title.indices[title.indptr[start]:],
                         title.weights[title.indptr[start]:], title.idf)
    base, numbers, idf_norm = _item_stats(new_rows, vocab)
    first = np.array([vocab.ids[tok.terms[0]] if tok.terms else -1 for tok in title_tokens], np.int32)
    surfaces = [tok.surface for tok in title_tokens]
    rows, indices, weights = _ngram_rows(catalog, surfaces)
    return replace(
        catalog, item_ids=np.concatenate([catalog.item_ids, np.asarray(item_ids, dtype=object)]), vocab=vocab,
        title=title, text=text, item_base=np.concatenate([catalog.item_base, base]),
        item_numbers=np.concatenate([catalog.item_numbers, numbers]), item_first=np.concatenate([catalog.item_first, first]),
        item_idf_norm=np.concatenate([catalog.item_idf_norm, idf_norm]),
        compact=catalog.compact + [s.replace(" ", "") for s in surfaces],
        ngram_indptr=np.concatenate([catalog.ngram_indptr, catalog.ngram_indptr[-1] + rows[1:]]),
        ngram_indices=np.concatenate([catalog.ngram_indices, indices]),
        ngram_weights=np.concatenate([catalog.ngram_weights, weights.astype(np.float16)]))
