"""The one protocol every backend implements: texts in, a float32 (n, dim) matrix out.

The public :meth:`Encoder.encode` owns the contract (empty input, text length, dtype, contiguity, shape,
normalisation) so each backend only wraps its library's batch call and adds no per-text Python work.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, get_args

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard, Kind
from hetmoe.vectors import available_cores, l2_normalize

KINDS: tuple[str, ...] = get_args(Kind)
# Texts are cut to this many characters before any backend tokenizes them, so memory never grows with a text's length:
# WordLlama pads a batch to its longest text and reads every token (a 2-million-character title asked for ~50 GiB).
# Windowed models read at most 512 tokens, and a token of product text covers ~4 characters (fewer in Thai or CJK),
# so they never see past ~2,000; 8,192 leaves a wide margin, so what they read is unchanged. ``hetmoe data validate``
# warns about longer texts.
MAX_TEXT_CHARS = 8192
# Optional card fields a backend may or may not act on; setting one a backend ignores is an error, not a no-op.
OPTIONAL_FIELDS: tuple[str, ...] = (
    "revision", "pooling", "max_length",
    "query_prompt", "document_prompt", "query_prompt_name", "document_prompt_name", "runtime_file",
)


class Encoder(ABC):
    """A loaded expert. Subclasses load their model, then call ``super().__init__(card, dim)`` with the real dim."""

    #: True when the backend's output is already unit-norm whenever ``card.normalize`` asks for it.
    returns_normalized: ClassVar[bool] = False
    #: True when the backend cannot return anything but unit vectors (then ``normalize = false`` is refused).
    always_normalized: ClassVar[bool] = False
    #: The optional card fields this backend acts on.
    honours: ClassVar[frozenset[str]] = frozenset(OPTIONAL_FIELDS)

    @classmethod
    def check_card(cls, card: ExpertCard) -> None:
        """Refuse card settings this backend would silently ignore (cheap; runs before any model is loaded)."""
        ignored = [f for f in OPTIONAL_FIELDS if f not in cls.honours and getattr(card, f) is not None]
        if ignored:
            raise HetmoeError(
                f"expert {card.name!r}: backend {card.backend!r} does not use {ignored}; remove them from the card"
            )
        if cls.always_normalized and not card.normalize:
            raise HetmoeError(
                f"expert {card.name!r}: backend {card.backend!r} always returns unit vectors; set normalize = true"
            )

    def __init__(self, card: ExpertCard, dim: int) -> None:
        self.check_card(card)
        if card.dim is not None and card.dim != dim:
            raise HetmoeError(
                f"expert {card.name!r}: card declares dim = {card.dim} but the model produces {dim}-d vectors; "
                f"set dim = {dim} in the card (or fix model)"
            )
        self.card = card
        self.dim = int(dim)
        self._call = threading.local()

    @abstractmethod
    def _encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        """Embed a non-empty list with the backend's own batch call; (len(texts), dim) floats."""

    def encode(self, texts: Sequence[str], kind: Kind, threads: int | None = None) -> np.ndarray:
        """Embed ``texts`` as queries or documents: float32, C-contiguous, shape (n, dim); n = 0 is fine. Each text
        is cut to its first :data:`MAX_TEXT_CHARS` characters.

        ``threads`` overrides the card's CPU thread count for this call only (see :meth:`call_threads`).
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        batch = list(texts)
        if not batch:
            return np.zeros((0, self.dim), dtype=np.float32)
        if max(map(len, batch)) > MAX_TEXT_CHARS:
            batch = [text[:MAX_TEXT_CHARS] for text in batch]
        self._call.threads = threads
        try:
            out = np.ascontiguousarray(self._encode(batch, kind), dtype=np.float32)
        finally:
            self._call.threads = None
        if out.shape != (len(batch), self.dim):
            expected = (len(batch), self.dim)
            raise RuntimeError(f"expert {self.card.name!r} returned shape {out.shape}, expected {expected}")
        if self.card.normalize and not self.returns_normalized:
            l2_normalize(out, inplace=True)
        return out

    def call_threads(self) -> int:
        """CPU threads for the running call (0 = library default): the ``threads`` passed to :meth:`encode`, else
        the card's. Kept per calling thread, so concurrent callers do not see each other's count. Backends whose
        library fixes its thread count at load time ignore it."""
        override = getattr(self._call, "threads", None)
        return override if override is not None else self.card.threads

    def with_prompt(self, texts: list[str], kind: Kind) -> list[str]:
        """Prefix the card's literal prompt for ``kind`` (for backends without their own prompt support)."""
        prompt = self.card.prompt(kind)[0]
        return [prompt + t for t in texts] if prompt else texts

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.card.name!r}, dim={self.dim}, hash={self.card.hash})"


def cpu_threads(card: ExpertCard) -> int:
    """Threads for CPU backends: the card's count, else every core this process may run on."""
    if card.threads:
        return card.threads
    return available_cores()


def require_cpu(card: ExpertCard) -> None:
    """CPU-only backends refuse a card that forces CUDA rather than silently ignoring it."""
    if card.device.startswith("cuda"):
        raise HetmoeError(
            f"expert {card.name!r}: backend {card.backend!r} runs on CPU only; set device = \"auto\" or \"cpu\""
        )
