"""Character n-gram TF-IDF, hashed and vectorised: cosine of a query with a title, robust to misspellings and compounds.

n-grams are taken within word boundaries (sklearn's ``char_wb``: each word padded with one space) over a text's surface
form, and hashed into ``2**bits`` buckets with a 64-bit polynomial hash computed by numpy over the code points of a
whole batch at once: no vocabulary to store or load, and no Python loop per n-gram. Weights are sublinear tf times
smoothed idf (sklearn's defaults), rows L2-normalised, so a pair's score is a plain sparse dot product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hetmoe.lexical.config import LexicalConfig

PRIME = np.uint64(1_000_003)
MIX = np.uint64(0x9E3779B97F4A7C15)
BATCH_CHARS = 4_000_000  # code points hashed per numpy pass (bounds memory to a few hundred MB)
WEIGH_ENTRIES = 1 << 22  # n-gram entries weighed per numpy pass


def _hash_batch(texts: Sequence[str], config: LexicalConfig) -> tuple[np.ndarray, np.ndarray]:
    """(text index, bucket) of every n-gram occurrence in ``texts`` (one row per occurrence, any order)."""
    padded = [f" {t} " for t in texts]  # NUL separates texts, a space separates words
    codes = np.frombuffer("\0".join(padded).encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    lengths = np.fromiter((len(p) + 1 for p in padded), dtype=np.int64, count=len(padded))
    owner = np.repeat(np.arange(len(padded)), lengths)[: codes.size]
    nul = codes == 0
    seps = np.concatenate(([0], np.cumsum(nul | (codes == 32))))
    texts_out, buckets = [], []
    prefix = np.zeros(codes.size, dtype=np.uint64)  # prefix[i] = hash of codes[i : i + k] after k rounds
    for k in range(1, config.ngram_max + 1):
        m = codes.size - k + 1
        if m <= 0:
            break
        prefix = prefix[:m] * PRIME + codes[k - 1 : k - 1 + m]
        if k < config.ngram_min:
            continue
        start = np.arange(m)
        # valid: no separator strictly inside the window and no text boundary at either end
        ok = ~nul[:m] & ~nul[k - 1 :]
        if k > 2:
            ok &= seps[start + k - 1] == seps[start + 1]
        h = (prefix ^ np.uint64(k)) * MIX
        texts_out.append(owner[:m][ok])
        buckets.append((h >> np.uint64(64 - config.ngram_bits))[ok].astype(np.int64))
    if not texts_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(texts_out), np.concatenate(buckets)


def term_counts(texts: Sequence[str], config: LexicalConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR (indptr, bucket, count) of the texts' n-gram counts, buckets sorted within each row. Each batch is
    reduced to int32 buckets and float32 counts at once: a catalog's entries never exist as 64-bit keys together."""
    width = np.int64(1) << config.ngram_bits
    sizes, buckets, counts, start, chars = [], [], [], 0, 0
    for i, text in enumerate(texts):
        chars += len(text) + 3
        if chars >= BATCH_CHARS or i == len(texts) - 1:
            owner, bucket = _hash_batch(texts[start : i + 1], config)
            unique, count = np.unique(owner * width + bucket, return_counts=True)
            sizes.append(np.bincount(unique >> np.int64(config.ngram_bits), minlength=i + 1 - start))
            buckets.append((unique & (width - 1)).astype(np.int32))
            counts.append(count.astype(np.float32))
            start, chars = i + 1, 0
    if not sizes:
        return np.zeros(len(texts) + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
    indptr = np.concatenate(([0], np.cumsum(np.concatenate(sizes)))).astype(np.int64)
    return indptr, _joined(buckets, np.int32), _joined(counts, np.float32)


def _joined(pieces: list[np.ndarray], dtype: type) -> np.ndarray:
    """The pieces end to end, each freed once copied: the result's pages are touched only as they fill, so the
    pieces and the whole never both sit in memory (``np.concatenate`` holds both)."""
    out = np.empty(sum(p.size for p in pieces), dtype)
    at = 0
    while pieces:
        piece = pieces.pop(0)
        out[at : at + piece.size] = piece
        at += piece.size
    return out


def weigh(indptr: np.ndarray, counts: np.ndarray, idf_: np.ndarray, index: np.ndarray | None = None,
          out: np.ndarray | None = None) -> np.ndarray:
    """Sublinear tf x idf, each row scaled to unit L2 norm (empty rows stay empty): ``idf_`` per entry, or per bucket
    with ``index`` each entry's bucket. Whole rows at a time, in blocks of about WEIGH_ENTRIES entries (the same sums
    in the same order as in one pass); ``out`` may be ``counts`` itself (each block is read before it is written)."""
    out = np.empty(counts.size, np.float32) if out is None else out
    bounds = np.unique(np.concatenate((np.searchsorted(indptr, np.arange(0, counts.size, WEIGH_ENTRIES), "right") - 1,
                                       [indptr.size - 1])))
    for r0, r1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        a, b = int(indptr[r0]), int(indptr[r1])
        w = (1.0 + np.log(counts[a:b])) * (idf_[a:b] if index is None else idf_[index[a:b]])
        rows = np.repeat(np.arange(r1 - r0), np.diff(indptr[r0 : r1 + 1]))
        norm = np.sqrt(np.bincount(rows, weights=w.astype(np.float64) ** 2, minlength=r1 - r0))
        out[a:b] = (w / np.where(norm > 0, norm, 1.0)[rows]).astype(np.float32)
    return out


def unseen_idf(n_docs: int) -> float:
    """Smoothed idf of an n-gram no title has (df = 0)."""
    return float(np.log(1.0 + n_docs) + 1.0)


def fit(
    surfaces: Sequence[str], config: LexicalConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(buckets, idf, indptr, indices, weights) of the catalog's titles.

    Rows index the sorted distinct ``buckets`` the titles use, not the 2**bits bucket space: the online lookup table
    then spans a few hundred thousand entries (cache-resident) instead of millions. idf is smoothed,
    ln((1 + n) / (1 + df)) + 1, as sklearn's.
    """
    indptr, indices, counts = term_counts(surfaces, config)
    df_all = np.bincount(indices, minlength=1 << config.ngram_bits)  # rows hold each bucket once: counts = df
    buckets = np.flatnonzero(df_all)
    compact = np.zeros(df_all.size, dtype=np.int32)
    compact[buckets] = np.arange(buckets.size, dtype=np.int32)
    for lo in range(0, indices.size, WEIGH_ENTRIES):  # hashed buckets -> catalog bucket index, in place
        indices[lo : lo + WEIGH_ENTRIES] = compact[indices[lo : lo + WEIGH_ENTRIES]]
    idf_ = (np.log((1.0 + len(surfaces)) / (1.0 + df_all[buckets])) + 1.0).astype(np.float32)
    return buckets.astype(np.int32), idf_, indptr, indices, weigh(indptr, counts, idf_, indices, out=counts)


def query_rows(
    indptr: np.ndarray, hashed: np.ndarray, counts: np.ndarray, buckets: np.ndarray, idf_: np.ndarray, n_docs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-norm TF-IDF rows of query n-gram counts, as (owner, catalog bucket index, weight) of the n-grams some title
    has; the others cannot match but still count in the norm."""
    where = np.minimum(np.searchsorted(buckets, hashed), max(buckets.size - 1, 0))
    known = buckets[where] == hashed if buckets.size else np.zeros(hashed.size, dtype=bool)
    weights = weigh(indptr, counts, np.where(known, idf_[where] if buckets.size else 0.0, unseen_idf(n_docs)))
    owner = np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))
    return owner[known], where[known], weights[known]


class WordGrams:
    """Query-side n-gram counts through a per-word cache: char_wb n-grams never cross words, so a query's n-grams are
    its words' n-grams, and a word is hashed once per process instead of once per query (bounded: cleared when full)."""

    def __init__(self, config: LexicalConfig, limit: int = 200_000) -> None:
        self.config, self.limit = config, limit
        self._cache: dict[str, np.ndarray] = {}

    def term_counts(self, surfaces: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same CSR (indptr, bucket, count) as :func:`term_counts` gives for these texts."""
        words = [s.split() for s in surfaces]
        get = self._cache.get
        found = {w: get(w) for ws in words for w in ws}  # a local view: another thread may clear the cache meanwhile
        missing = [w for w, grams in found.items() if grams is None]
        if missing:
            owner, bucket = _hash_batch(missing, self.config)
            order = np.argsort(owner, kind="stable")
            splits = np.searchsorted(owner[order], np.arange(1, len(missing)))
            fresh = dict(zip(missing, np.split(bucket[order], splits)))
            found.update(fresh)
            if len(self._cache) + len(fresh) > self.limit:
                self._cache.clear()
            self._cache.update(fresh)
        parts = [found[w] for ws in words for w in ws]
        sizes = np.fromiter((sum(found[w].size for w in ws) for ws in words), dtype=np.int64, count=len(words))
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        width = np.int64(1) << self.config.ngram_bits
        key, count = np.unique(
            np.repeat(np.arange(len(words), dtype=np.int64), sizes) * width + flat, return_counts=True
        )
        rows = key >> np.int64(self.config.ngram_bits)
        indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=len(words))))).astype(np.int64)
        return indptr, (key & (width - 1)).astype(np.int32), count.astype(np.float32)
