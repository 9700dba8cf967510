"""``diagnose``: measure, from a store's item vectors, how each expert's space is shaped and what fusing them does.

Everything is computed on one random sample of items shared by all experts (the intersection of their ids), so a
200k-item store takes seconds: the cost is a few SVDs and exact kNN on ``sample`` rows, not on the catalogue.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.diagnose import fusion, geometry
from hetmoe.vectors import l2_normalize
from hetmoe.errors import HetmoeError

log = logging.getLogger(__name__)

TOP_PCS = (1, 10)
DEFAULT_SAMPLE = 5000
DEFAULT_K = 10
KNN_QUERIES = 1000  # items whose neighbourhoods are compared: enough for overlaps to +-0.01, a fifth of the kNN cost


def discover_experts(store_root: Path) -> list[str]:
    """Experts whose ``items.zarr`` is complete; half-written ones are skipped with a warning, not fatal."""
    from hetmoe.store.layout import part_path
    from hetmoe.store.zarr_store import EmbeddingStore

    if not store_root.is_dir():
        raise HetmoeError(f"{store_root}: no such store folder; pass the --store you gave 'hetmoe embed'")
    found = []
    for folder in sorted(p for p in store_root.iterdir() if p.is_dir()):
        path = part_path(store_root, folder.name, "items")
        if not path.is_dir():
            continue
        try:
            EmbeddingStore.open(path)
        except HetmoeError as err:
            log.warning("skipping %s: %s", folder.name, err)
            continue
        found.append(folder.name)
    if not found:
        raise HetmoeError(f"{store_root}: no expert with a complete items.zarr; build one with 'hetmoe embed --expert NAME --data DIR --store {store_root}'")
    return found


def sample_vectors(
    store_root: Path, experts: list[str], sample: int, seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The same ``sample`` random item ids (sorted) from every expert, and each expert's float32 vectors for them."""
    from hetmoe.store.layout import part_path
    from hetmoe.store.zarr_store import EmbeddingStore

    stores = {name: EmbeddingStore.open(part_path(store_root, name, "items")) for name in experts}
    shared = None
    for store in stores.values():  # ids are unique within a store (embed refuses duplicates)
        shared = np.sort(store.ids) if shared is None else np.intersect1d(shared, store.ids, assume_unique=True)
    if len(shared) < 3:
        raise HetmoeError(
            f"{store_root}: only {len(shared)} item id(s) shared by {', '.join(experts)}; embed the same dataset with every expert"
        )
    if sample < len(shared):
        shared = np.sort(np.random.default_rng(seed).choice(shared, size=sample, replace=False))
    from tqdm import tqdm

    # pop each store once read, so only one expert's full float16 matrix is held at a time
    return shared, {name: stores.pop(name).get(shared) for name in tqdm(experts, desc="reading item vectors", leave=False)}


def expert_geometry(x: np.ndarray) -> dict[str, Any]:
    """Anisotropy of one expert, measured on its L2-normalised rows (experts are compared by cosine)."""
    unit = l2_normalize(x, np.float64)
    s = geometry.singular_values(unit)
    variances = geometry.pca_variances(unit)
    return {
        "dim": int(x.shape[1]),
        "mean_pair_cosine": geometry.mean_pair_cosine(unit),
        **{f"pc{k}_variance_share": geometry.top_share_from_variances(variances, k) for k in TOP_PCS},
        "effective_rank": geometry.effective_rank_from_singular_values(s),
        "effective_rank_centered": geometry.effective_rank_from_singular_values(np.sqrt(variances)),
        "isoscore": geometry.isoscore_from_variances(variances, x.shape[1]),
        "mean_norm": float(np.linalg.norm(x, axis=1).mean()),
        "spectrum": [round(float(v), 6) for v in s / max(s[0], 1e-12)],
        "pca_variance_share": [round(float(v), 6) for v in variances / max(variances.sum(), 1e-12)],
    }


def pairwise(vectors: dict[str, np.ndarray], knn: dict[str, np.ndarray]) -> dict[str, Any]:
    """Linear CKA and kNN overlap between every pair of experts, as symmetric matrices in sorted expert order."""
    names = sorted(vectors)
    cka = geometry.cka_matrix([l2_normalize(vectors[n], np.float64) for n in names])
    overlap = np.eye(len(names))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            overlap[i, j] = overlap[j, i] = geometry.knn_overlap(knn[a], knn[names[j]])
    return {"experts": names, "linear_cka": cka.tolist(), "knn_overlap": overlap.tolist()}


def load_model(model_dir: Path, store_root: Path) -> Any:
    """The trained net whose item projections get fused; refuses lgbm heads and models trained on other stores."""
    from hetmoe.moe.artifacts import read_config
    from hetmoe.moe.infer import MoEModel

    kind = read_config(model_dir).get("kind")
    if kind not in ("net", "stacked"):  # a stacked head keeps its net's projections
        raise HetmoeError(f"{model_dir} holds a {kind} model, which has no item projections; pass a net model to --model or leave --model out")
    return MoEModel.load(model_dir, store_root=store_root)


def _fusion_inputs(
    vectors: dict[str, np.ndarray], model: Any
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str]:
    """(inputs to average, inputs to concatenate, description): the model's item projections for both, else
    raw unit vectors, Procrustes-overlaid at one width for the average and as they are for the concatenation."""
    if model is None:
        unit = {name: l2_normalize(v, np.float64) for name, v in vectors.items()}
        return fusion.raw_fusion_inputs(vectors), unit, "raw unit vectors; average after Procrustes rotation, no model"
    projected = {name: np.asarray(model.project_items(name, v), dtype=np.float64) for name, v in vectors.items()}
    return projected, projected, f"item projections of the model {model.model_dir}, trained to {model.spec.fusion}"


def diagnose(
    store_root: str | Path,
    out_dir: str | Path,
    model_dir: str | Path | None = None,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    experts: list[str] | None = None,
    k: int = DEFAULT_K,
) -> dict[str, Any]:
    """Measure the store's experts and write diagnose.json, diagnose.md and PNG figures to ``out_dir``.

    Returns what diagnose.json holds (``seconds`` is the measuring time, without writing figures). ``experts`` defaults to the model's experts with ``model_dir``, else to every
    expert with a complete item store.
    """
    from hetmoe.diagnose.report import write_report

    started = time.perf_counter()
    store_root = Path(store_root)
    model_path = Path(model_dir) if model_dir is not None else None
    if sample < 3:
        raise HetmoeError(f"--sample {sample} is too small; use at least a few hundred items (default {DEFAULT_SAMPLE})")
    available = discover_experts(store_root)
    model = load_model(model_path, store_root) if model_path is not None else None
    chosen = sorted(set(experts or (model.experts if model is not None else available)))
    unknown = [e for e in chosen if e not in available or (model is not None and e not in model.experts)]
    if unknown:
        have = model.experts if model is not None else available
        raise HetmoeError(f"{store_root}: cannot diagnose {', '.join(unknown)}; choose among {', '.join(have)}")
    ids, vectors = sample_vectors(store_root, chosen, sample, seed)
    n = len(ids)
    k_used = min(k, n - 1)
    log.info("diagnosing %d expert(s) on %d shared items (k=%d)", len(chosen), n, k_used)
    queries = np.sort(np.random.default_rng(seed).permutation(n)[:KNN_QUERIES])
    knn = {name: geometry.knn_sets(v, k_used, queries) for name, v in vectors.items()}
    result: dict[str, Any] = {
        "store": str(store_root),
        "model": str(model_path) if model_path is not None else None,
        "n_items": n,
        "sample_seed": seed,
        "k": k_used,
        "knn_queries": len(queries),
        "knn_chance_overlap": geometry.knn_chance_overlap(n, k_used),
        "experts": {name: expert_geometry(v) for name, v in vectors.items()},
        "pairwise": pairwise(vectors, knn),
    }
    if len(chosen) > 1:
        to_average, to_concat, basis = _fusion_inputs(vectors, model)
        fused = fusion.fusion_geometry(to_average, to_concat, knn, k_used, queries=queries)
        if model is not None:
            fused["projection_knn_overlap"] = {
                name: geometry.knn_overlap(geometry.knn_sets(v, k_used, queries), knn[name]) for name, v in sorted(to_concat.items())
            }
        result["fusion"] = {"basis": basis, "weights": "uniform", **fused}
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["files"] = write_report(result, Path(out_dir))
    return result
