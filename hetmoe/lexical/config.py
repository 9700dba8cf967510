"""The lexical expert's settings: every field changes the fitted arrays or the features, so all of them are hashed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from hetmoe.errors import HetmoeError

FORMAT_VERSION = 1
BM25_METHODS = ("lucene", "robertson", "atire")


@dataclass(frozen=True)
class LexicalConfig:
    """BM25 (``k1``, ``b``, ``method`` as in bm25s), the English stemmer switch, and the hashed char n-grams
    (``ngram_min``..``ngram_max`` characters within word boundaries, ``2**ngram_bits`` buckets)."""

    k1: float = 1.2
    b: float = 0.75
    method: str = "lucene"
    stem: bool = True
    ngram_min: int = 2  # (2, 4) beat (3, 5) and (3, 6) alone on Home Depot and Shopee valid (char cosine AUC)
    ngram_max: int = 4
    ngram_bits: int = 22

    def __post_init__(self) -> None:
        if self.method not in BM25_METHODS:
            raise HetmoeError(f"lexical config: method {self.method!r} is unknown; use one of {list(BM25_METHODS)}")
        if self.k1 <= 0 or not 0 <= self.b <= 1:
            raise HetmoeError(
                f"lexical config: need k1 > 0 and 0 <= b <= 1 (got k1={self.k1}, b={self.b}); fix the card's options"
            )
        if not 1 <= self.ngram_min <= self.ngram_max <= 8 or not 16 <= self.ngram_bits <= 26:
            raise HetmoeError(
                "lexical config: need 1 <= ngram_min <= ngram_max <= 8 and 16 <= ngram_bits <= 26; "
                "fix the card's options"
            )

    @property
    def hash(self) -> str:
        """Short sha256 of the canonical JSON of every field and the format version."""
        blob = json.dumps({"format": FORMAT_VERSION, **self.to_dict()}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> LexicalConfig:
        """From a card's ``options`` table (or a saved config.json); unknown keys are an error, not ignored."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise HetmoeError(f"lexical config: unknown options {unknown}; allowed are {sorted(known)}")
        return cls(**d)
