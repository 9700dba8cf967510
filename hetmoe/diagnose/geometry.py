"""Geometry of one embedding space and of pairs of spaces: numpy, plus FAISS for exact kNN search.

Every function takes a sample of row vectors (n, d). Callers decide what the rows are; the diagnostics L2-normalise
them first (see :mod:`hetmoe.diagnose.run`) because experts are compared by cosine. Arithmetic runs in float64 so
sums over thousands of float16 store rows lose nothing.

References:
- Ethayarajh 2019, "How Contextual are Contextualized Word Representations?": anisotropy as the mean cosine between
  random pairs.
- Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality": exp of the Shannon entropy of the
  L1-normalised singular values.
- Rudman, Gillman, Rayne & Eickhoff 2022, "IsoScore: Measuring the Uniformity of Embedding Space Utilization"
  (Findings of ACL): IsoScore, 1 for isotropic variance, 0 for variance in a single direction.
- Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of Neural Network Representations Revisited": linear CKA.
"""
from __future__ import annotations

import numpy as np

from hetmoe.vectors import l2_normalize

_EPS = 1e-12


def _as64(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"expected a (n >= 2, d) matrix, got shape {arr.shape}")
    return arr


def mean_pair_cosine(x: np.ndarray) -> float:
    """Mean cosine over all ordered pairs i != j of the sample.

    Exact rather than estimated from random pairs: with unit rows u_i, sum_{i!=j} <u_i,u_j> = ||sum u||^2 - n, so the
    expectation over random pairs costs O(n d). Zero rows count as cosine 0.
    """
    u = l2_normalize(_as64(x), np.float64)
    n = u.shape[0]
    total = float(np.square(u.sum(axis=0)).sum())
    self_terms = float(np.square(u).sum())
    return (total - self_terms) / (n * (n - 1))


def singular_values(x: np.ndarray, center: bool = False) -> np.ndarray:
    """Singular values of the sample matrix (optionally column-centred), largest first, length min(n, d).

    Taken as square roots of the eigenvalues of the smaller Gram matrix: several times faster than an SVD on these
    shapes, and in float64 accurate to about 1e-8 of the largest singular value, plenty for spectra and ranks.
    """
    arr = _as64(x)
    if center:
        arr = arr - arr.mean(axis=0, keepdims=True)
    gram = arr.T @ arr if arr.shape[1] <= arr.shape[0] else arr @ arr.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None))


def effective_rank_from_singular_values(s: np.ndarray) -> float:
    """Roy & Vetterli 2007: exp(H(p)) with p = s / sum(s); 1 for rank one, d for d equal singular values."""
    s = np.asarray(s, dtype=np.float64)
    total = s.sum()
    if total <= _EPS:
        return 0.0
    p = s[s > _EPS * total] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def effective_rank(x: np.ndarray, center: bool = False) -> float:
    """Effective rank of the sample matrix (Roy & Vetterli 2007).

    Uncentred (the default) it counts a shared mean direction as one dominant dimension, which is the anisotropy that
    cosine retrieval sees; centred it counts the directions along which items actually differ.
    """
    return effective_rank_from_singular_values(singular_values(x, center=center))


def pca_variances(x: np.ndarray) -> np.ndarray:
    """Variance along each principal component (eigenvalues of the covariance), largest first, length min(n, d)."""
    s = singular_values(x, center=True)
    return np.square(s) / (x.shape[0] - 1)


def top_pc_variance_share(x: np.ndarray, k: int = 1) -> float:
    """Share of the total variance carried by the top ``k`` principal components (centred PCA)."""
    return top_share_from_variances(pca_variances(x), k)


def top_share_from_variances(variances: np.ndarray, k: int) -> float:
    """Share of the total variance in the ``k`` largest entries of a descending variance vector."""
    total = float(np.sum(variances))
    return float(np.sum(variances[:k]) / total) if total > _EPS else 0.0


def isoscore_from_variances(variances: np.ndarray, dim: int) -> float:
    """IsoScore (Rudman et al. 2022, Algorithm 1) from the PCA variances of a point cloud in ``dim`` dimensions.

    Steps 3-6 of the paper: normalise the variance vector to length sqrt(d), measure its distance to the all-ones
    vector (isotropy defect delta), turn that into the fraction of dimensions used phi, and rescale to [0, 1].
    Components beyond the sample's rank have variance 0 and are padded in, as the paper's PCA would.
    IsoScore is invariant to translation, so a tight cone around one direction can still score high: read it
    together with :func:`mean_pair_cosine`.
    """
    if dim < 2:
        return 0.0
    var = np.zeros(dim, dtype=np.float64)
    var[: min(dim, len(variances))] = np.asarray(variances, dtype=np.float64)[:dim]
    norm = np.linalg.norm(var)
    if norm <= _EPS:
        return 0.0
    normalised = np.sqrt(dim) * var / norm
    defect_sq = np.square(normalised - 1.0).sum() / (2.0 * (dim - np.sqrt(dim)))
    phi = (dim - defect_sq * (dim - np.sqrt(dim))) ** 2 / dim**2
    return float(np.clip((dim * phi - 1.0) / (dim - 1.0), 0.0, 1.0))


def isoscore(x: np.ndarray) -> float:
    """IsoScore of a sample (see :func:`isoscore_from_variances`); needs n > d samples to be meaningful."""
    arr = _as64(x)
    return isoscore_from_variances(pca_variances(arr), arr.shape[1])


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) between two representations of the same n items (rows aligned).

    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) on column-centred matrices: 1 for identical spaces, invariant to
    orthogonal maps and isotropic scaling, and defined across different widths.
    """
    return float(cka_matrix([x, y])[0, 1])


def cka_matrix(representations: list[np.ndarray]) -> np.ndarray:
    """Symmetric matrix of linear CKA between every pair, centring each matrix and its self-similarity once."""
    centred = [a - a.mean(axis=0, keepdims=True) for a in map(_as64, representations)]
    if len({a.shape[0] for a in centred}) != 1:
        raise ValueError(f"CKA needs the same items in all: rows {[a.shape[0] for a in centred]}")
    self_norm = [float(np.linalg.norm(a.T @ a)) for a in centred]
    m = len(centred)
    out = np.eye(m)
    for i in range(m):
        for j in range(i + 1, m):
            denom = self_norm[i] * self_norm[j]
            value = float(np.square(centred[j].T @ centred[i]).sum() / denom) if denom > _EPS else 0.0
            out[i, j] = out[j, i] = value
    return out


def knn_sets(x: np.ndarray, k: int, queries: np.ndarray | None = None) -> np.ndarray:
    """Indices (m, k) of the k nearest other rows by cosine, nearest first, for each row in ``queries`` (default all).

    Exact search over all n rows; asking only for a subset of rows cuts the cost proportionally while the
    neighbourhoods stay as fine-grained. FAISS's flat inner-product search (BLAS plus a heap) is several times faster
    than sorting similarities in numpy. It asks for k + 1 neighbours and drops the row itself, or the last one when
    exact duplicates pushed the row out of its own list.
    """
    import faiss

    u = np.ascontiguousarray(l2_normalize(_as64(x), np.float64), dtype=np.float32)
    n = u.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, n-1] = [1, {n - 1}], got {k}")
    rows = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    index = faiss.IndexFlatIP(u.shape[1])
    index.add(u)
    _, found = index.search(np.ascontiguousarray(u[rows]), k + 1)
    keep = found != rows[:, None]
    keep[keep.all(axis=1), k] = False
    return found[keep].reshape(len(rows), k).astype(np.int64)


def knn_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of |A_i & B_i| / k for two (n, k) neighbour-index arrays of the same items."""
    if a.shape != b.shape:
        raise ValueError(f"neighbour sets differ in shape: {a.shape} vs {b.shape}")
    shared = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
    return float(shared.mean() / a.shape[1])


def knn_chance_overlap(n: int, k: int) -> float:
    """Expected overlap of two unrelated random k-neighbour sets among the other n-1 items."""
    return k / (n - 1)
