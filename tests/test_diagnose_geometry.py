"""Anisotropy and similarity metrics on constructed point clouds whose answers are known in closed form."""
from __future__ import annotations

import numpy as np
import pytest

from hetmoe.diagnose import geometry


def _gaussian(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def _rank1_cone(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Positive multiples of one direction, with a whisker of noise so the matrix is not exactly singular."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(d)
    return rng.uniform(0.5, 2.0, size=(n, 1)) * v[None, :] + 1e-6 * rng.standard_normal((n, d))


def _orthogonal(d: int, seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def test_isotropic_gaussian_is_isotropic() -> None:
    x = _gaussian(4000, 32)
    assert abs(geometry.mean_pair_cosine(x)) < 0.01
    assert geometry.effective_rank(x) > 0.97 * 32
    assert geometry.effective_rank(x, center=True) > 0.97 * 32
    assert geometry.isoscore(x) > 0.9
    assert geometry.top_pc_variance_share(x, 1) < 2.0 / 32


def test_rank1_cone_is_maximally_anisotropic() -> None:
    x = _rank1_cone(2000, 32)
    assert geometry.mean_pair_cosine(x) > 0.999
    assert geometry.effective_rank(x) == pytest.approx(1.0, abs=0.01)
    assert geometry.top_pc_variance_share(x, 1) > 0.999
    assert geometry.isoscore(x) < 0.01


def test_shifted_gaussian_raises_mean_cosine_but_not_isoscore() -> None:
    """A common offset is the anisotropy cosine retrieval sees; IsoScore is translation-invariant by design."""
    x = _gaussian(4000, 32) + 5.0
    assert geometry.mean_pair_cosine(x) > 0.9
    assert geometry.effective_rank(x) < 0.5 * geometry.effective_rank(x, center=True)
    assert geometry.isoscore(x) == pytest.approx(geometry.isoscore(x - 5.0), abs=1e-9)


def test_mean_pair_cosine_matches_brute_force() -> None:
    x = _gaussian(50, 8) + np.linspace(0, 2, 8)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = u @ u.T
    brute = (cos.sum() - np.trace(cos)) / (50 * 49)
    assert geometry.mean_pair_cosine(x) == pytest.approx(brute, rel=1e-10)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_effective_rank_of_k_equal_singular_values_is_k(k: int) -> None:
    s = np.zeros(8)
    s[:k] = 2.5
    assert geometry.effective_rank_from_singular_values(s) == pytest.approx(k, rel=1e-12)


@pytest.mark.parametrize("k", [1, 4, 16, 64])
def test_isoscore_with_variance_spread_over_k_of_d_dims(k: int) -> None:
    """Rudman et al.: variance spread evenly over k of d dimensions scores (k - 1) / (d - 1)."""
    d = 64
    var = np.zeros(d)
    var[:k] = 3.0
    assert geometry.isoscore_from_variances(var, d) == pytest.approx((k - 1) / (d - 1), abs=1e-12)


def test_cka_identical_and_invariances() -> None:
    x = _gaussian(500, 24) @ np.diag(np.linspace(0.2, 3, 24))
    assert geometry.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert geometry.linear_cka(x, 7.5 * x @ _orthogonal(24)) == pytest.approx(1.0, abs=1e-10)
    assert geometry.linear_cka(x, x + 3.0) == pytest.approx(1.0, abs=1e-10)


def test_cka_is_low_for_unrelated_and_partial_for_related_spaces() -> None:
    x = _gaussian(2000, 16, seed=0)
    y = _gaussian(2000, 24, seed=1)
    assert geometry.linear_cka(x, y) < 0.05
    half = np.hstack([x[:, :8], _gaussian(2000, 8, seed=2)])
    assert 0.3 < geometry.linear_cka(x, half) < 0.7
    assert geometry.linear_cka(x, y) == pytest.approx(geometry.linear_cka(y, x), abs=1e-12)


def test_knn_sets_exclude_self_and_are_nearest_first() -> None:
    x = np.array([[1.0, 0.0], [0.99, 0.1], [0.9, 0.45], [0.0, 1.0], [-1.0, 0.05]])
    nn = geometry.knn_sets(x, 2)
    assert nn.tolist()[0] == [1, 2]
    assert nn.tolist()[3] == [2, 1]
    assert all(i not in row for i, row in enumerate(nn.tolist()))


def test_knn_overlap_identical_rotated_and_unrelated() -> None:
    x = _gaussian(1500, 16)
    k = 10
    own = geometry.knn_sets(x, k)
    assert geometry.knn_overlap(own, geometry.knn_sets(x, k)) == 1.0
    rotated = geometry.knn_sets(3.0 * x @ _orthogonal(16), k)
    assert geometry.knn_overlap(own, rotated) > 0.999  # float32 search: a rare near-tie may swap the k-th neighbour
    unrelated = geometry.knn_sets(_gaussian(1500, 16, seed=5), k)
    chance = geometry.knn_chance_overlap(1500, k)
    assert geometry.knn_overlap(own, unrelated) < 3 * chance + 0.01


def test_knn_sets_for_a_subset_of_rows_match_the_full_search() -> None:
    x = _gaussian(400, 8)
    rows = np.array([3, 50, 399, 0])
    np.testing.assert_array_equal(geometry.knn_sets(x, 6, rows), geometry.knn_sets(x, 6)[rows])


def test_knn_sets_with_exact_duplicates_still_exclude_self() -> None:
    x = np.repeat(np.eye(3), 4, axis=0)  # three groups of four identical rows
    nn = geometry.knn_sets(x, 3)
    for i, row in enumerate(nn.tolist()):
        assert i not in row and {j // 4 for j in row} == {i // 4}


def test_knn_overlap_counts_shared_neighbours() -> None:
    a = np.array([[1, 2, 3], [0, 2, 3]])
    b = np.array([[3, 2, 1], [1, 4, 5]])
    assert geometry.knn_overlap(a, b) == pytest.approx((3 / 3 + 0 / 3) / 2)


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError):
        geometry.linear_cka(_gaussian(10, 3), _gaussian(11, 3))
    with pytest.raises(ValueError):
        geometry.knn_sets(_gaussian(5, 3), 5)
