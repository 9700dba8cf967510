"""Term kinds and the catalog vocabulary (term string -> id), shared by items at fit time and queries online."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import regex

WORD, NUMBER, MODEL, QUANTITY, UNIT, BIGRAM = range(6)  # base kinds first: kind <= MODEL is a base term
N_KINDS = 6
NUMERIC = regex.compile(r"\d+(?:\.\d+)?")


def term_kind(term: str) -> int:
    """What a term is, read off its spelling: "pvc cap" bigram, "@in" unit, "0.5@in" quantity, "0.5" number, "rg6"
    model, else word."""
    if " " in term:
        return BIGRAM
    if term.startswith("@"):
        return UNIT
    if "@" in term:
        return QUANTITY
    if NUMERIC.fullmatch(term):
        return NUMBER
    if any(c.isdigit() for c in term) and any(c.isalpha() for c in term):
        return MODEL
    return WORD


class Vocabulary:
    """Term ids in first-seen order; ``kinds[id]`` is :func:`term_kind` of the term."""

    def __init__(self, terms: list[str]) -> None:
        self.terms = terms
        self.ids = {term: i for i, term in enumerate(terms)}
        self.kinds = np.fromiter((term_kind(t) for t in terms), dtype=np.int8, count=len(terms))

    def __len__(self) -> int:
        return len(self.terms)

    @classmethod
    def build(cls, documents: Iterable[Sequence[tuple[str, ...]]]) -> tuple[Vocabulary, np.ndarray, np.ndarray]:
        """The vocabulary of the documents' terms (ids in first-seen order), and the documents as CSR (indptr, term
        ids in text order). ``documents`` come in blocks, each turned into ids before the next is read, so a caller
        that tokenizes block by block never holds every document's term strings at once."""
        ids: dict[str, int] = {}
        lengths, parts = [], []
        for block in documents:
            lengths.append(np.fromiter((len(doc) for doc in block), dtype=np.int64, count=len(block)))
            parts.append(np.fromiter((ids.setdefault(t, len(ids)) for doc in block for t in doc), dtype=np.int64))
        vocab = cls(list(ids))
        sizes = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return vocab, np.concatenate(([0], np.cumsum(sizes))).astype(np.int64), flat

    def encode(self, terms: tuple[str, ...]) -> list[int]:
        """Ids of known terms, in order (unknown terms cannot match any item, so they are dropped here)."""
        get = self.ids.get
        return [i for i in (get(t) for t in terms) if i is not None]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(json.loads(path.read_text(encoding="utf-8")))
