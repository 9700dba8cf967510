"""Small vector and id helpers shared by training, stores, indexes and the online path.

Why one place: unit-length rows and sorted-id lookups are computed in a dozen spots; one definition keeps the
epsilon, the dtype and the zero-row behaviour the same everywhere (a drift there changes scores).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

EPS = 1e-12  # floor on a norm: a zero row stays zero instead of becoming NaN


def l2_normalize(x: np.ndarray, dtype: type = np.float32, inplace: bool = False) -> np.ndarray:
    """Rows (the last axis) scaled to unit length as ``dtype``; zero rows stay zero. ``inplace`` divides ``x``
    itself (it must already be a writable array of ``dtype``) to save a copy of a large matrix."""
    arr = x if inplace else np.asarray(x, dtype=dtype)
    norm = np.maximum(np.linalg.norm(arr, axis=-1, keepdims=True), EPS)
    if inplace:
        arr /= norm
        return arr
    return arr / norm


def pair_cosines(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, dim) arrays of already L2-normalised vectors."""
    return np.einsum("ij,ij->i", q, d, dtype=np.float32)


class SortedIds:
    """A vectorised id -> row lookup: the ids sorted once, each query one ``np.searchsorted`` (no Python loop)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.order = np.argsort(ids, kind="stable")
        self.sorted = ids[self.order]

    def __len__(self) -> int:
        return int(self.sorted.shape[0])

    def has_duplicates(self) -> bool:
        return len(self) > 1 and bool((self.sorted[1:] == self.sorted[:-1]).any())

    def find(self, wanted: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row of each wanted id, mask of the ids found); a row where the mask is False means nothing."""
        wanted = np.asarray(wanted, dtype=str).reshape(-1) if len(wanted) else np.empty(0, dtype=str)
        if len(self) == 0 or wanted.size == 0:
            return np.zeros(wanted.size, dtype=np.int64), np.zeros(wanted.size, dtype=bool)
        pos = np.minimum(np.searchsorted(self.sorted, wanted), len(self) - 1)
        return self.order[pos].astype(np.int64), self.sorted[pos] == wanted


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
