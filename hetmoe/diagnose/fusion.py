"""What fusing experts does to the geometry: weighted average versus concatenation of per-expert vectors.

The inputs are per-expert vectors of the same items: a trained model's projections when there is one, otherwise raw
unit vectors (overlaid at one width by :func:`raw_fusion_inputs` for the average, which needs equal widths). Both
fusions are then measured the same way: how many of each expert's own k nearest neighbours survive, how much the
vector norms shrink, and the effective rank of the fused vectors.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hetmoe.diagnose import geometry
from hetmoe.vectors import l2_normalize

log = logging.getLogger(__name__)


def procrustes_isometry(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The (d, D) map with orthonormal rows (d <= D) minimising ||x R - target||_F (orthogonal Procrustes).

    R = U V^T for A = x^T target = U S V^T, computed as (A A^T)^(-1/2) A from a d x d eigendecomposition, which is
    several times faster than the SVD here. Directions with no signal (S ~ 0) carry none of x, so clamping them is
    harmless.
    """
    a = np.asarray(x, dtype=np.float64).T @ np.asarray(target, dtype=np.float64)
    eigvals, u = np.linalg.eigh(a @ a.T)
    s = np.sqrt(np.clip(eigvals, 0.0, None))
    inv = 1.0 / np.maximum(s, 1e-12 * max(float(s.max()), 1e-300))
    return (u * inv) @ (u.T @ a)


def raw_fusion_inputs(vectors: dict[str, np.ndarray], iterations: int = 10, tol: float = 1e-4) -> dict[str, np.ndarray]:
    """Norm-matched raw vectors at a common width, for when no trained projection exists.

    Each expert's rows are L2-normalised (so every expert weighs the same) and mapped into D = max(dim) by an
    isometry, which keeps the expert's own geometry exactly (cosines, kNN, effective rank): any change in the fused
    vectors comes from fusing alone. The isometries are chosen by generalised Procrustes analysis (Gower 1975):
    alternately rotate every expert onto the mean of all and recompute the mean, so the spaces are overlaid as well
    as a rotation can overlay them on this sample. That is the most favourable case for the average (a learned
    projection would try to align the spaces too); a random or zero-padded overlay would make cross-expert terms
    vanish, so the average's norm would shrink to 1/sqrt(E) by construction and say nothing about the data.
    Concatenation is unaffected by the choice: for unit rows its cosine is the mean of the experts' cosines.
    """
    width = max(v.shape[1] for v in vectors.values())
    unit = {name: l2_normalize(v, np.float64) for name, v in sorted(vectors.items())}
    widest = max(unit, key=lambda name: unit[name].shape[1])
    mean = unit[widest]
    loss = np.inf
    for _ in range(iterations):
        mapped = {name: u @ procrustes_isometry(u, mean) for name, u in unit.items()}
        mean = sum(mapped.values()) / len(mapped)
        new_loss = float(sum(np.square(m - mean).sum() for m in mapped.values()))
        if loss - new_loss <= tol * max(new_loss, 1e-12):
            break
        loss = new_loss
    log.debug("Procrustes alignment of %d experts to width %d: residual %.4g", len(unit), width, loss)
    return mapped


def _weights(names: list[str], weights: dict[str, float] | None) -> np.ndarray:
    w = np.array([1.0 if weights is None else float(weights[n]) for n in names])
    return w / w.sum()


def average(inputs: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> np.ndarray:
    """Weighted average of equal-width per-expert vectors (weights normalised to sum 1; uniform by default)."""
    names = sorted(inputs)
    widths = {inputs[n].shape[1] for n in names}
    if len(widths) != 1:
        raise ValueError(f"averaging needs one common width, got {sorted(widths)}")
    return sum(wi * np.asarray(inputs[n], dtype=np.float64) for wi, n in zip(_weights(names, weights), names))


def concatenate(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Per-expert vectors side by side, in sorted expert order (widths may differ)."""
    return np.hstack([np.asarray(inputs[n], dtype=np.float64) for n in sorted(inputs)])


def _norm_stats(ratio: np.ndarray) -> dict[str, float]:
    p10, p50, p90 = np.quantile(ratio, [0.1, 0.5, 0.9])
    return {"mean": float(ratio.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90)}


def norm_shrinkage(inputs: dict[str, np.ndarray], fused: np.ndarray, weights: dict[str, float] | None = None) -> dict[str, float]:
    """Per-item ||sum_e w_e x_e|| / sum_e w_e ||x_e||: 1 when the experts agree, lower as they cancel out.

    With uniform weights this is ||avg|| / mean_e ||x_e||. Summarised as mean and 10/50/90th percentiles.
    """
    names = sorted(inputs)
    norms = np.stack([np.linalg.norm(np.asarray(inputs[n], dtype=np.float64), axis=1) for n in names], axis=1)
    ratio = np.linalg.norm(fused, axis=1) / np.maximum(norms @ _weights(names, weights), 1e-12)
    return _norm_stats(ratio)


def concat_norm_ratio(inputs: dict[str, np.ndarray], concat: np.ndarray) -> dict[str, float]:
    """Per-item ||concat|| / sqrt(sum_e ||x_e||^2): the concatenation's analogue of shrinkage, 1 by construction."""
    sq = sum(np.square(np.linalg.norm(np.asarray(v, dtype=np.float64), axis=1)) for v in inputs.values())
    return _norm_stats(np.linalg.norm(concat, axis=1) / np.maximum(np.sqrt(sq), 1e-12))


def _geometry(fused: np.ndarray, native_knn: dict[str, np.ndarray], k: int, queries: np.ndarray | None) -> dict[str, Any]:
    neighbours = geometry.knn_sets(fused, k, queries)
    overlap = {name: geometry.knn_overlap(neighbours, own) for name, own in sorted(native_knn.items())}
    unit = l2_normalize(fused, np.float64)
    return {
        "knn_overlap": overlap,
        "mean_knn_overlap": float(np.mean(list(overlap.values()))),
        "effective_rank": geometry.effective_rank(unit),
        "effective_rank_centered": geometry.effective_rank(unit, center=True),
        "width": int(fused.shape[1]),
    }


def fusion_geometry(
    average_inputs: dict[str, np.ndarray],
    concat_inputs: dict[str, np.ndarray],
    native_knn: dict[str, np.ndarray],
    k: int,
    weights: dict[str, float] | None = None,
    queries: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compare the average of ``average_inputs`` and the concatenation of ``concat_inputs`` with each expert's own
    neighbourhoods ``native_knn`` (k nearest neighbours of the rows ``queries``, default all, in expert e's original
    space, as :func:`geometry.knn_sets` returns them).

    The two inputs are the same per-expert vectors, except that averaging needs them at one width (see
    :func:`raw_fusion_inputs`) while concatenating does not. Effective ranks are measured on L2-normalised fused
    rows, as for single experts.
    """
    avg = average(average_inputs, weights)
    cat = concatenate(concat_inputs)
    return {
        "average": {**_geometry(avg, native_knn, k, queries), "norm_shrinkage": norm_shrinkage(average_inputs, avg, weights)},
        "concatenation": {**_geometry(cat, native_knn, k, queries), "norm_shrinkage": concat_norm_ratio(concat_inputs, cat)},
    }
