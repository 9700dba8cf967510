"""BM25 term weights of every (item, term), bm25s's to the bit, computed from our own token ids and stored item-major.

bm25s scores a query by summing its precomputed (document, term) weights; we keep exactly those weights, but as CSR
rows per item, so the Scorer sums them for just the 100 candidates of a request instead of the whole catalog. The
query-normalised score divides by the most a document could score for that query (each distinct query term's idf times
the term-frequency factor's limit), so scores compare across queries without looking at other candidates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from hetmoe.lexical.config import LexicalConfig


@dataclass(frozen=True)
class Bm25Field:
    """One indexed field (title, or title + text): CSR weights per item and the idf used to normalise."""

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    idf: np.ndarray  # per term id; terms absent from the field get the idf of a term seen once
    avgdl: float = 0.0  # mean scored length of the fitted documents (0: not recorded, fitted by an older hetmoe)

    def idf_of(self, terms: np.ndarray) -> np.ndarray:
        """idf of each term id; an unknown term (-1) counts as the rarest, seen once."""
        return np.where(terms >= 0, self.idf[np.maximum(terms, 0)], self.rare)

    @cached_property
    def rare(self) -> float:
        return float(self.idf.max(initial=0.0))


def tf_limit(config: LexicalConfig) -> float:
    """sup over tf of bm25s's term-frequency factor: 1 for lucene and robertson, k1 + 1 for atire."""
    return config.k1 + 1.0 if config.method == "atire" else 1.0


def idf_of(df: np.ndarray, n_docs: int, method: str) -> np.ndarray:
    """bm25s's idf formulas, vectorised; a term no document holds counts as seen once (the rarest possible)."""
    df = np.maximum(df.astype(np.float64), 1.0)
    if method == "lucene":
        value = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    elif method == "robertson":
        value = np.log(np.maximum((n_docs - df + 0.5) / (df + 0.5), 1.0))
    else:
        value = np.log(n_docs / df)
    return value.astype(np.float32)


def fit_field(
    indptr: np.ndarray, flat: np.ndarray, vocab_size: int, config: LexicalConfig, scored: np.ndarray
) -> Bm25Field:
    """Index documents given as CSR term ids (repeats = term frequency) with bm25s's formulas, item-major.

    Terms outside ``scored`` (a bool per term id) stay in the rows, with weight 0, but never count towards document
    length or get a BM25 weight (bigrams: kept for matching, not for scoring). The weights are bm25s's own, bit for
    bit: its idf function per term, its term-frequency factor over every (document, term) at once, in its dtypes;
    computed over arrays instead of bm25s's per-document Python lists, which held every token of the catalog as a
    Python int (1.7 GB at a million items).
    """
    from bm25s import scoring

    logging.getLogger("bm25s").setLevel(logging.NOTSET)  # bm25s forces DEBUG on import; follow the app's level
    n_docs = indptr.size - 1
    owner = np.repeat(np.arange(n_docs, dtype=np.int64), np.diff(indptr))
    keys = np.unique(owner * vocab_size + flat)  # every (doc, term) once, row-major and sorted
    keep = scored[flat]
    lengths = np.bincount(owner[keep], minlength=n_docs)  # scored tokens per document (bm25s's doc length)
    pairs, tf = np.unique(owner[keep] * vocab_size + flat[keep], return_counts=True)
    doc, term = pairs // vocab_size, pairs % vocab_size
    df = np.bincount(term, minlength=vocab_size)
    idf_fn = scoring._select_idf_scorer(config.method)
    bm25_idf = np.zeros(vocab_size, dtype=np.float32)  # bm25s: its idf per term in Python floats, kept as float32
    for t in np.flatnonzero(df).tolist():
        bm25_idf[t] = idf_fn(int(df[t]), N=n_docs)
    avg = lengths.mean() if n_docs else np.float64(0.0)
    factor = tf_component(tf.astype(np.float32), lengths[doc], avg, config)
    weights = np.zeros(keys.size, dtype=np.float32)
    weights[np.searchsorted(keys, pairs)] = bm25_idf[term] * factor
    indptr = np.concatenate(([0], np.cumsum(np.bincount(keys // vocab_size, minlength=n_docs)))).astype(np.int64)
    return Bm25Field(
        indptr=indptr,
        indices=(keys % vocab_size).astype(np.int32),
        weights=weights,
        idf=idf_of(df, max(n_docs, 1), config.method),
        avgdl=float(keep.sum() / max(n_docs, 1)),
    )


def tf_component(tf: np.ndarray, dl: np.ndarray, avgdl: float, config: LexicalConfig) -> np.ndarray:
    """bm25s's term-frequency factor of each (document, term): the weight is idf times this. Documents appended to
    a fitted catalog are weighed with its frozen ``avgdl`` (:mod:`hetmoe.lexical.append`)."""
    from bm25s import scoring

    score = scoring._score_tfc_atire if config.method == "atire" else scoring._score_tfc_robertson
    return score(tf, dl, avgdl, config.k1, config.b)
