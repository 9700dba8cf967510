"""What fusing experts does to the geometry: weighted average versus concatenation of per-expert vectors.

The inputs are per-expert vectors of the same items at one common width: a trained model's projections when there is
one, otherwise :func:`raw_fusion_inputs`. Both fusions are then measured the same way: how many of each expert's own
k nearest neighbours survive, how much the vector norms shrink, and the effective rank of the fused vectors.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hetmoe.diagnose import metrics


def random_isometry(d_in: int, d_out: int, rng: np.random.Generator) -> np.ndarray:
    """A (d_in, d_out) matrix with orthonormal rows (d_in <= d_out), drawn uniformly via QR of a Gaussian."""
    q, r = np.linalg.qr(rng.standard_normal((d_out, d_in)))
    return (q * np.sign(np.diag(r))).T


def raw_fusion_inputs(vectors: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """Norm-matched raw vectors at a common width, for when no trained projection exists.

    Each expert's rows are L2-normalised (so every expert weighs the same in the fusion) and mapped into
    D = max(dim) by its own random isometry. An isometry keeps each expert's own geometry exactly (cosines, kNN,
    effective rank), so any change in the fused vectors comes from fusing alone. Random rather than zero-padding:
    the coordinates of different models mean unrelated things, and zero-padding would pair, say, dimension 3 of one
    model with dimension 3 of another; a random map makes the pairing generic, which is what averaging spaces that
    were never aligned amounts to. Consequences worth knowing when reading the numbers: for unit rows the
    concatenation's cosine is exactly the mean of the experts' cosines, the average's is that plus cross-expert terms,
    and for unrelated spaces the average's norm shrinks to about 1/sqrt(E).
    """
    rng = np.random.default_rng(seed)
    width = max(v.shape[1] for v in vectors.values())
    return {
        name: metrics.l2_normalise(v) @ random_isometry(v.shape[1], width, rng) for name, v in sorted(vectors.items())
    }


def fuse(inputs: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(weighted average, concatenation) of equal-width per-expert vectors; weights default to uniform."""
    names = sorted(inputs)
    widths = {inputs[n].shape[1] for n in names}
    if len(widths) != 1:
        raise ValueError(f"averaging needs one common width, got {sorted(widths)}")
    w = np.array([1.0 if weights is None else float(weights[n]) for n in names])
    w = w / w.sum()
    average = sum(wi * np.asarray(inputs[n], dtype=np.float64) for wi, n in zip(w, names))
    concat = np.hstack([np.asarray(inputs[n], dtype=np.float64) for n in names])
    return average, concat


def _norm_stats(ratio: np.ndarray) -> dict[str, float]:
    p10, p50, p90 = np.quantile(ratio, [0.1, 0.5, 0.9])
    return {"mean": float(ratio.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90)}


def norm_shrinkage(inputs: dict[str, np.ndarray], average: np.ndarray, weights: dict[str, float] | None = None) -> dict[str, float]:
    """Per-item ||sum_e w_e x_e|| / sum_e w_e ||x_e||: 1 when the experts agree, lower as they cancel out.

    With uniform weights this is ||avg|| / mean_e ||x_e||. Summarised as mean and 10/50/90th percentiles.
    """
    names = sorted(inputs)
    w = np.array([1.0 if weights is None else float(weights[n]) for n in names])
    w = w / w.sum()
    norms = np.stack([np.linalg.norm(np.asarray(inputs[n], dtype=np.float64), axis=1) for n in names], axis=1)
    ratio = np.linalg.norm(average, axis=1) / np.maximum(norms @ w, 1e-12)
    return _norm_stats(ratio)


def concat_norm_ratio(inputs: dict[str, np.ndarray], concat: np.ndarray) -> dict[str, float]:
    """Per-item ||concat|| / sqrt(sum_e ||x_e||^2): the concatenation's analogue of shrinkage, 1 by construction."""
    sq = sum(np.square(np.linalg.norm(np.asarray(v, dtype=np.float64), axis=1)) for v in inputs.values())
    return _norm_stats(np.linalg.norm(concat, axis=1) / np.maximum(np.sqrt(sq), 1e-12))


def _geometry(fused: np.ndarray, native_knn: dict[str, np.ndarray], k: int) -> dict[str, Any]:
    neighbours = metrics.knn_sets(fused, k)
    overlap = {name: metrics.knn_overlap(neighbours, own) for name, own in sorted(native_knn.items())}
    unit = metrics.l2_normalise(fused)
    return {
        "knn_overlap": overlap,
        "mean_knn_overlap": float(np.mean(list(overlap.values()))),
        "effective_rank": metrics.effective_rank(unit),
        "effective_rank_centered": metrics.effective_rank(unit, center=True),
        "width": int(fused.shape[1]),
    }


def fusion_geometry(
    inputs: dict[str, np.ndarray],
    native_knn: dict[str, np.ndarray],
    k: int,
    weights: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Compare average and concatenation of ``inputs`` against each expert's own neighbourhoods ``native_knn``.

    ``native_knn[e]`` holds the k nearest neighbours of every item in expert e's original space (same row order).
    Effective ranks are measured on L2-normalised fused rows, as for single experts.
    """
    average, concat = fuse(inputs, weights)
    return {
        "average": {**_geometry(average, native_knn, k), "norm_shrinkage": norm_shrinkage(inputs, average, weights)},
        "concatenation": {**_geometry(concat, native_knn, k), "norm_shrinkage": concat_norm_ratio(inputs, concat)},
    }
