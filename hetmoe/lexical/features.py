"""Pair features from a fitted catalog and a prepared query batch; each depends on its own query and item only.

Set features come from one sparse join of the candidates' title terms with their queries' terms (see
:mod:`hetmoe.lexical.join`), BM25 sums the joined weights, the char n-gram cosine joins n-gram rows, and the substring
features are Python ``in`` tests over each query's candidates (a few per pair).
"""

from __future__ import annotations

import numpy as np

from hetmoe.lexical.catalog import LexicalCatalog
from hetmoe.lexical.join import hits
from hetmoe.lexical.query import QueryBatch
from hetmoe.lexical.terms import BIGRAM, MODEL, N_KINDS, NUMBER, QUANTITY, UNIT, WORD

FEATURE_NAMES: list[str] = [
    "bm25_title",
    "bm25_title_norm",
    "bm25_text",
    "bm25_text_norm",
    "tfidf_char_cos",
    "char_coverage",
    "word_cosine",
    "jaccard",
    "query_coverage",
    "idf_coverage",
    "item_coverage",
    "bigram_coverage",
    "num_match",
    "num_mismatch",
    "unit_match",
    "unit_mismatch",
    "model_token_match",
    "first_token_match",
    "last_token_match",
    "brand_match",
    "query_in_title",
    "substring_coverage",
    "query_terms",
    "title_terms",
    "query_numbers",
]


def _substrings(catalog: LexicalCatalog, batch: QueryBatch, rows: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(n, 3): query compact string inside the title's, share of query words inside it, share of model tokens."""
    out = np.zeros((rows.size, 3))
    if len(batch.compact) == 1:  # the online call: every pair has query 0
        runs = [np.arange(rows.size)]
    else:
        order = np.argsort(groups, kind="stable")
        runs = np.split(order, np.flatnonzero(np.diff(groups[order])) + 1)
    compact = catalog.compact
    for idx in runs:
        g = int(groups[idx[0]])
        titles = [compact[r] for r in rows[idx].tolist()]
        query, words, models = batch.compact[g], batch.words[g], batch.models[g]
        out[idx, 0] = [bool(query) and query in t for t in titles]
        for column, needles in ((1, words), (2, models)):
            if needles:  # one list comprehension per needle: the cheapest loop over (needle, title) in Python
                out[idx, column] = np.mean([[w in t for t in titles] for w in needles], axis=0)
    return out


def pair_features(catalog: LexicalCatalog, batch: QueryBatch, rows: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(n_pairs, len(FEATURE_NAMES)) float32 for pairs (query groups[j], item rows[j])."""
    n, title = rows.size, catalog.title
    if n == 0:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32)
    pair, pos, _ = hits(title.indptr, title.indices, rows, groups, batch.terms)
    term = title.indices[pos]
    kind = catalog.vocab.kinds[term]
    # matched distinct terms per (pair, kind) in one bincount; weighted sums in two more
    by_kind = np.bincount(pair * N_KINDS + kind, minlength=n * N_KINDS).reshape(n, N_KINDS).astype(np.float64)
    base_pairs = pair[kind <= MODEL]
    bm25_title = np.bincount(pair, weights=title.weights[pos], minlength=n)
    base_idf = title.idf[term[kind <= MODEL]].astype(np.float64)
    matched_idf = np.bincount(base_pairs, weights=base_idf, minlength=n)
    matched_idf2 = np.bincount(base_pairs, weights=base_idf**2, minlength=n)
    q_group = groups[pair]
    ends = np.bincount(pair, weights=(term == batch.first[q_group]) + 2.0 * (term == batch.last[q_group]), minlength=n)
    if catalog.text is None:  # no item has text: title + text is the title
        bm25_text = bm25_title
    else:
        t_pair, t_pos, _ = hits(catalog.text.indptr, catalog.text.indices, rows, groups, batch.terms)
        bm25_text = np.bincount(t_pair, weights=catalog.text.weights[t_pos], minlength=n)
    g_pair, g_pos, g_loc = hits(catalog.ngram_indptr, catalog.ngram_indices, rows, groups, batch.ngrams)
    q_weight = batch.ngram_weights[g_loc]
    cosine = np.bincount(g_pair, weights=catalog.ngram_weights[g_pos] * q_weight, minlength=n)
    char_coverage = np.bincount(g_pair, weights=q_weight.astype(np.float64) ** 2, minlength=n)  # query rows: unit norm
    brand_id = catalog.item_first[rows]
    brand = (brand_id >= 0) & (batch.terms.lookup(groups, np.maximum(brand_id, 0)) >= 0)
    c = {name: values[groups] for name, values in batch.counts.items()}
    item_base, item_numbers = catalog.item_base[rows].astype(np.float64), catalog.item_numbers[rows]
    matched = by_kind[:, WORD] + by_kind[:, NUMBER] + by_kind[:, MODEL]
    numbers, quantities, units = by_kind[:, NUMBER], by_kind[:, QUANTITY], by_kind[:, UNIT]
    q_base, q_numbers = c["base"], c["number"]
    # ratios: numerator / denominator, 0 where the denominator is 0 (no numbers: neither match nor contradiction)
    top = np.stack(
        [
            bm25_title,
            bm25_text,
            matched_idf2,
            matched,
            matched,
            matched_idf,
            matched,
            by_kind[:, BIGRAM],
            numbers,
            np.where(item_numbers > 0, q_numbers - numbers, 0.0),
            quantities,
            np.maximum(units - quantities, 0.0),
        ]
    )
    bottom = np.stack(
        [
            c["norm_title"],
            c["norm_text"],
            np.sqrt(c["idf2_base"]) * catalog.item_idf_norm[rows],
            q_base + item_base - matched,
            q_base,
            c["idf_base"],
            item_base,
            c["bigram"],
            q_numbers,
            q_numbers,
            c["quantity"],
            c["unit"],
        ]
    )
    ratio = np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)
    substrings = _substrings(catalog, batch, rows, groups)
    columns = [
        bm25_title,
        ratio[0],
        bm25_text,
        ratio[1],
        cosine,
        char_coverage,
        *ratio[2:12],
        substrings[:, 2],
        ends % 2,
        ends >= 2,
        brand,
        substrings[:, 0],
        substrings[:, 1],
        q_base,
        item_base,
        q_numbers,
    ]
    return np.column_stack(columns).astype(np.float32)
