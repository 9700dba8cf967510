"""Fitting the lexical expert on a catalog: tokens, vocabulary, BM25 weights per field, char n-gram rows, item stats.

Everything a pair feature needs about an item is precomputed here as flat arrays (CSR rows, per-item counts), so the
online cost is one query's tokenization plus numpy over the candidates' rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from hetmoe.lexical import ngrams
from hetmoe.lexical.bm25 import Bm25Field, fit_field
from hetmoe.lexical.config import LexicalConfig
from hetmoe.lexical.join import gather
from hetmoe.lexical.terms import BIGRAM, MODEL, NUMBER, Vocabulary
from hetmoe.lexical.tokenize import Tokenizer

log = logging.getLogger(__name__)
TOKENIZE_BLOCK = 65_536  # titles tokenized, then turned into term ids, per block


@dataclass
class LexicalCatalog:
    """The fitted arrays. ``text`` is None when no item has text beyond its title (then title + text == title)."""

    config: LexicalConfig
    item_ids: np.ndarray
    vocab: Vocabulary
    title: Bm25Field
    text: Bm25Field | None
    item_base: np.ndarray  # distinct base terms of each title
    item_numbers: np.ndarray  # distinct numbers of each title
    item_first: np.ndarray  # first base term id of each title (-1: none), the brand in most catalogs
    item_idf_norm: np.ndarray  # L2 norm of each title's idf-weighted distinct base terms (word cosine)
    compact: list[str]  # each title's surface without spaces, for substring matches
    ngram_buckets: np.ndarray  # sorted hashed n-gram buckets the titles use; rows index into it
    ngram_idf: np.ndarray
    ngram_indptr: np.ndarray
    ngram_indices: np.ndarray
    ngram_weights: np.ndarray
    fitted_items: int = 0  # items the statistics (idf, avgdl) were fitted on; appended items follow them (0: unknown)

    @property
    def statistics_items(self) -> int:
        """The item count the statistics were fitted on (appended items do not move them)."""
        return self.fitted_items or int(self.item_ids.size)

    @property
    def text_field(self) -> Bm25Field:
        return self.text if self.text is not None else self.title


def _item_stats(field: Bm25Field, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct base terms, distinct numbers and the idf L2 norm of each item's title."""
    rows = np.repeat(np.arange(field.indptr.size - 1), np.diff(field.indptr))
    kinds = vocab.kinds[field.indices]
    n, base = field.indptr.size - 1, kinds <= MODEL
    count = np.bincount(rows[base], minlength=n).astype(np.int32)
    numbers = np.bincount(rows[kinds == NUMBER], minlength=n).astype(np.int32)
    norm = np.sqrt(np.bincount(rows[base], weights=field.idf[field.indices[base]].astype(np.float64) ** 2, minlength=n))
    return count, numbers, norm.astype(np.float32)


def fit_catalog(
    item_ids: Sequence[str],
    titles: Sequence[str],
    texts: Sequence[str | None],
    config: LexicalConfig,
    progress: bool = False,
) -> LexicalCatalog:
    """Tokenize titles (and title + text where text exists), build the vocabulary, index both fields, hash n-grams."""
    from tqdm import tqdm

    tokenizer = Tokenizer(stem=config.stem)
    n = len(titles)
    has_text = [bool(x and x.strip()) for x in texts]
    surfaces: list[str] = []

    def documents() -> Iterator[list[tuple[str, ...]]]:
        """Every title's terms, then every title + text's where the item has text, a block at a time."""
        with tqdm(total=n, desc="lexical: tokenize", unit="item", disable=not progress) as bar:
            for lo in range(0, n, TOKENIZE_BLOCK):
                tokens = [tokenizer(t) for t in titles[lo : lo + TOKENIZE_BLOCK]]
                surfaces.extend(tok.surface for tok in tokens)
                bar.update(len(tokens))
                yield [tok.terms for tok in tokens]
        with_text = [i for i, keep in enumerate(has_text) if keep]
        for lo in range(0, len(with_text), TOKENIZE_BLOCK):
            yield [tokenizer(f"{titles[i]}\n{texts[i]}").terms for i in with_text[lo : lo + TOKENIZE_BLOCK]]

    vocab, indptr, flat = Vocabulary.build(documents())
    log.info("lexical: %d items, %d terms, %d with text", n, len(vocab), sum(has_text))
    scored = vocab.kinds != BIGRAM
    title = fit_field(indptr[: n + 1], flat[: indptr[n]], len(vocab), config, scored)
    text = None
    if any(has_text):  # each item's title + text document where it has text, else its title document
        docs = np.where(has_text, n + np.cumsum(has_text) - 1, np.arange(n))
        ends, position = gather(indptr, docs)
        text = fit_field(np.concatenate(([0], ends)), flat[position], len(vocab), config, scored)
    padded = np.append(flat, -1)  # a title without tokens (only punctuation) has no first term
    first = np.where(np.diff(indptr[: n + 1]) > 0, padded[indptr[:n]], -1)  # base terms come first in a document
    base, numbers, idf_norm = _item_stats(title, vocab)
    buckets, ngram_idf, indptr, indices, weights = ngrams.fit(surfaces, config)
    return LexicalCatalog(
        config=config,
        item_ids=np.asarray(item_ids, dtype=object),
        vocab=vocab,
        title=title,
        text=text,
        item_base=base,
        item_numbers=numbers,
        item_first=first.astype(np.int32),
        item_idf_norm=idf_norm,
        compact=[s.replace(" ", "") for s in surfaces],
        ngram_buckets=buckets,
        ngram_idf=ngram_idf,
        ngram_indptr=indptr,
        ngram_indices=indices,
        ngram_weights=weights.astype(np.float16),
        fitted_items=n,
    )
