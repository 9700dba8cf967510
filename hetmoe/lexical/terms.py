"""Term kinds and the catalog vocabulary (term string -> id), shared by items at fit time and queries online."""

from __future__ import annotations

import json
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
    def build(cls, documents: list[tuple[str, ...]]) -> tuple[Vocabulary, np.ndarray, np.ndarray]:
        """The vocabulary of the documents' terms, and the documents as CSR (indptr, term ids in text order)."""
        flat = [t for doc in documents for t in doc]
        vocab = cls(list(dict.fromkeys(flat)))
        lengths = np.fromiter((len(doc) for doc in documents), dtype=np.int64, count=len(documents))
        ids = np.fromiter(map(vocab.ids.__getitem__, flat), dtype=np.int64, count=len(flat))
        return vocab, np.concatenate(([0], np.cumsum(lengths))), ids

    def encode(self, terms: tuple[str, ...]) -> list[int]:
        """Ids of known terms, in order (unknown terms cannot match any item, so they are dropped here)."""
        get = self.ids.get
        return [i for i in (get(t) for t in terms) if i is not None]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(json.loads(path.read_text(encoding="utf-8")))
