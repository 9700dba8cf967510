"""Small vector and id helpers shared by training, stores, indexes and the online path.

Why one place: unit-length rows and sorted-id lookups are computed in a dozen spots; one definition keeps the
epsilon, the dtype and the zero-row behaviour the same everywhere (a drift there changes scores).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from hetmoe.errors import HetmoeError

EPS = 1e-12  # floor on a norm: a zero row stays zero instead of becoming NaN
CHECK_ROWS = 65536  # rows per block in :func:`bad_rows` (bounds its temporary copy on large stores)
FEW_IDS = 1024  # queries of fewer ids than this are looked up in a dict (SortedIds)
NAMED = 5  # ids an error about bad vectors names


def l2_normalize(x: np.ndarray, dtype: type = np.float32, inplace: bool = False) -> np.ndarray:
    """Rows (the last axis) scaled to unit length as ``dtype``; zero rows stay zero. ``inplace`` divides ``x``
    itself (it must already be a writable array of ``dtype``) to save a copy of a large matrix."""
    arr = x if inplace else np.asarray(x, dtype=dtype)
    norm = np.maximum(row_norms(arr)[..., None], EPS)
    if inplace:
        arr /= norm
        return arr
    return arr / norm


def row_norms(x: np.ndarray) -> np.ndarray:
    """L2 norm of each row (the last axis), by einsum: one pass and no squared copy, ten times np.linalg.norm on a
    50k x 384 block; each row's value depends on that row alone."""
    return np.sqrt(np.einsum("...i,...i->...", x, x))


def pair_cosines(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, dim) arrays of already L2-normalised vectors."""
    return np.einsum("ij,ij->i", q, d, dtype=np.float32)


class SortedIds:
    """An id -> row lookup: the ids sorted once, a big query one ``np.searchsorted`` (no Python loop). With
    ``probe_few``, a query of fewer than :data:`FEW_IDS` ids (an online request) probes a dict built on first use
    instead: a binary search over a million string ids misses the cache at every step (0.19 ms of a 100-item
    request), and the dict costs memory only where a served catalog asks for it."""

    def __init__(self, ids: np.ndarray, probe_few: bool = False) -> None:
        self.order = np.argsort(ids, kind="stable")
        self.sorted = ids[self.order]
        self.probe_few = probe_few
        self._rows: dict[str, int] | None = None

    def __len__(self) -> int:
        return int(self.sorted.shape[0])

    def has_duplicates(self) -> bool:
        return len(self) > 1 and bool((self.sorted[1:] == self.sorted[:-1]).any())

    def find(self, wanted: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row of each wanted id, mask of the ids found); a row where the mask is False means nothing."""
        wanted = np.asarray(wanted, dtype=str).reshape(-1) if len(wanted) else np.empty(0, dtype=str)
        if len(self) == 0 or wanted.size == 0:
            return np.zeros(wanted.size, dtype=np.int64), np.zeros(wanted.size, dtype=bool)
        if self.probe_few and wanted.size < FEW_IDS:
            if self._rows is None:  # the first row of each id, as the binary search finds it
                self._rows = dict(zip(self.sorted[::-1].tolist(), self.order[::-1].tolist()))
            rows = np.fromiter((self._rows.get(w, -1) for w in wanted.tolist()), np.int64, wanted.size)
            return np.maximum(rows, 0), rows >= 0
        pos = np.minimum(np.searchsorted(self.sorted, wanted), len(self) - 1)
        return self.order[pos].astype(np.int64), self.sorted[pos] == wanted


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bad_rows(matrix: np.ndarray) -> np.ndarray:
    """Indices of the rows that are all zero or hold NaN / inf: one pass of ``abs().max()`` per block of rows (a row's
    max is NaN when it holds one, inf when it holds one, 0 when the row is zero)."""
    found = []
    for start in range(0, matrix.shape[0], CHECK_ROWS):
        peak = np.abs(matrix[start : start + CHECK_ROWS]).max(axis=1) if matrix.shape[1] else np.zeros(0)
        found.append(np.flatnonzero(~(np.isfinite(peak) & (peak > 0))) + start)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def describe_bad_rows(matrix: np.ndarray, rows: np.ndarray, names: Sequence[str] | np.ndarray | None = None) -> str:
    """``"2 all-zero and 1 non-finite vectors (NaN or inf) (a, b, c)"``: what :func:`bad_rows` found, naming a few
    rows by ``names`` (default: their row numbers)."""
    peak = np.abs(matrix[rows]).max(axis=1) if rows.size else np.zeros(0)
    zero = int((peak == 0).sum())
    kinds = ([f"{zero} all-zero"] if zero else []) + ([f"{rows.size - zero} non-finite"] if rows.size - zero else [])
    label = (lambda i: str(names[i])) if names is not None else (lambda i: f"row {i}")
    named = ", ".join(label(i) for i in rows[:NAMED].tolist()) + (" ..." if rows.size > NAMED else "")
    return f"{' and '.join(kinds)} vectors{' (NaN or inf)' if rows.size - zero else ''} ({named})"


def check_scores(scores: np.ndarray, what: str) -> np.ndarray:
    """A head's scores, refused when one is NaN or inf: a damaged model must not look like a scored pair."""
    finite = np.isfinite(scores)
    if not finite.all():
        raise HetmoeError(f"the model's head returned {int((~finite).sum())} non-finite score(s) of {scores.size} for "
                          f"{what}; its files or the stores it reads are damaged: rebuild them")
    return scores
