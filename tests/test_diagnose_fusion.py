"""Average versus concatenation on constructed experts: agreeing, unrelated, and partly shared spaces."""
from __future__ import annotations

import numpy as np
import pytest

from hetmoe.diagnose import fusion, geometry
from hetmoe.vectors import l2_normalize


def _gaussian(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def _isometry(d_in: int, d_out: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d_out, d_in)))
    return q.T


def test_procrustes_recovers_a_known_isometry() -> None:
    x = _gaussian(200, 6, 0)
    r = _isometry(6, 15, seed=1)
    found = fusion.procrustes_isometry(x, x @ r)
    np.testing.assert_allclose(found, r, atol=1e-10)
    np.testing.assert_allclose(found @ found.T, np.eye(6), atol=1e-12)


def test_raw_inputs_share_a_width_and_keep_each_experts_cosines() -> None:
    vectors = {"small": _gaussian(300, 8, 0) * 4.0, "wide": _gaussian(300, 20, 1)}
    inputs = fusion.raw_fusion_inputs(vectors)
    for name, raw in vectors.items():
        mapped = inputs[name]
        assert mapped.shape == (300, 20)
        np.testing.assert_allclose(np.linalg.norm(mapped, axis=1), 1.0, atol=1e-12)
        u = l2_normalize(raw, np.float64)
        np.testing.assert_allclose(mapped @ mapped.T, u @ u.T, atol=1e-10)


def test_rotated_copies_of_one_space_are_aligned_and_average_without_loss() -> None:
    """Same geometry in different coordinates and widths: Procrustes undoes the rotation, so nothing cancels."""
    x = _gaussian(600, 10, 0)
    vectors = {"a": x, "b": 2.0 * x @ _isometry(10, 10, seed=3), "c": x @ _isometry(10, 24, seed=4)}
    inputs = fusion.raw_fusion_inputs(vectors)
    own = {name: geometry.knn_sets(v, 5) for name, v in vectors.items()}
    report = fusion.fusion_geometry(inputs, inputs, own, k=5)
    assert report["average"]["norm_shrinkage"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert report["average"]["mean_knn_overlap"] > 0.999
    assert report["concatenation"]["mean_knn_overlap"] > 0.999


def test_identical_experts_fuse_without_loss() -> None:
    x = l2_normalize(_gaussian(800, 12, 0), np.float64)
    inputs = {"a": x, "b": x.copy(), "c": x.copy()}
    own = {name: geometry.knn_sets(v, 5) for name, v in inputs.items()}
    report = fusion.fusion_geometry(inputs, inputs, own, k=5)
    for kind in ("average", "concatenation"):
        assert report[kind]["mean_knn_overlap"] == 1.0
        assert report[kind]["norm_shrinkage"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert report["average"]["effective_rank"] == pytest.approx(geometry.effective_rank(x), rel=1e-9)


def test_unrelated_experts_average_shrinks_to_about_one_over_sqrt_e_and_loses_rank() -> None:
    vectors = {f"e{i}": _gaussian(1500, 32, seed=i) for i in range(4)}
    inputs = fusion.raw_fusion_inputs(vectors)
    own = {name: geometry.knn_sets(v, 10) for name, v in vectors.items()}
    unit = {name: l2_normalize(v, np.float64) for name, v in vectors.items()}
    report = fusion.fusion_geometry(inputs, unit, own, k=10)
    avg, cat = report["average"], report["concatenation"]
    assert 0.5 <= avg["norm_shrinkage"]["mean"] < 0.6  # Procrustes finds only chance alignment between noise clouds
    assert cat["norm_shrinkage"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert avg["width"] == 32 and cat["width"] == 128
    assert cat["effective_rank"] > 3.0 * avg["effective_rank"] * 0.9
    assert avg["effective_rank"] <= 32.0


def test_concatenation_keeps_more_of_each_experts_neighbourhood_than_the_average() -> None:
    """Experts share a common signal plus their own: concat's cosine is the mean of theirs, the average adds cross-talk."""
    n = 1500
    shared = _gaussian(n, 8, seed=10)
    vectors = {f"e{i}": np.hstack([shared @ _gaussian(8, 8, seed=20 + i), _gaussian(n, 24, seed=i)]) for i in range(3)}
    inputs = fusion.raw_fusion_inputs(vectors)
    own = {name: geometry.knn_sets(v, 10) for name, v in vectors.items()}
    unit = {name: l2_normalize(v, np.float64) for name, v in vectors.items()}
    report = fusion.fusion_geometry(inputs, unit, own, k=10)
    assert report["concatenation"]["mean_knn_overlap"] > report["average"]["mean_knn_overlap"]
    assert set(report["average"]["knn_overlap"]) == set(vectors)


def test_weights_are_normalised_and_used() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [1.0, 0.0]])
    avg = fusion.average({"a": a, "b": b}, weights={"a": 3.0, "b": 1.0})
    np.testing.assert_allclose(avg, [[0.75, 0.25], [0.25, 0.75]])
    np.testing.assert_allclose(fusion.concatenate({"b": b, "a": a}), np.hstack([a, b]))
    shrink = fusion.norm_shrinkage({"a": a, "b": b}, avg, weights={"a": 3.0, "b": 1.0})
    assert shrink["mean"] == pytest.approx(np.hypot(0.75, 0.25))
