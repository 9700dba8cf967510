"""FAISS index over an expert's item vectors: cosine (inner product on L2-normalised vectors), rows mapped to item ids.

``auto`` uses exact search up to :data:`FLAT_MAX` items (it is fast enough and never wrong) and HNSW above. An
approximate index is tuned, not just measured: its search-time knob (HNSW ``efSearch``, IVF ``nprobe``) doubles until
recall@10 against exact search reaches the target (0.95) on half of a sample of the expert's own query vectors, and
the recall reported is the other half's, so nobody ships an index that silently loses hits. Why tune: one fixed
``efSearch`` is not enough for every expert's geometry (128 gave recall@10 0.88-0.90 on 100k near-duplicate synthetic
titles with the static experts, 0.96-0.99 on real catalogs).
The index is saved next to the store (``items.faiss`` + ``items.faiss.json``) and refuses to load against a store that
was rebuilt since.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.files import publish, write_json_atomic
from hetmoe.store.layout import expert_dir, part_path
from hetmoe.store.identity import StoreIdentity
from hetmoe.store.zarr_store import EmbeddingStore
from hetmoe.vectors import l2_normalize

log = logging.getLogger(__name__)
logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines about CPU builds are noise to users

KINDS = ("flat", "hnsw", "ivf-pq")
FLAT_MAX = 50_000
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
HNSW_EF_MAX = 1024  # tuning's ceiling: 100k 64-d items, one query: 0.84 ms at efSearch 1024, exact search 1.1 ms
TARGET_RECALL = 0.95
IVF_PROBE_FRACTION, REFINE_FACTOR = 12, 8
RECALL_SAMPLE = 1000
IVF_MIN = 39 * 256  # points k-means needs to train 256 PQ centroids per sub-space


def index_path(store_root: str | Path, expert: str) -> Path:
    return expert_dir(store_root, expert) / "items.faiss"


def normalize(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Contiguous float32 unit rows (one copy); the dimension is checked here, at the boundary."""
    x = np.array(vectors, dtype=np.float32, order="C", ndmin=2, copy=True)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {np.shape(vectors)}")
    return l2_normalize(x, inplace=True)


def _gpu_resources() -> Any | None:
    """FAISS GPU resources when faiss-gpu is installed and a GPU is visible, else None."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    return faiss.StandardGpuResources()


def _ivf_params(n: int, dim: int) -> dict[str, int]:
    """nlist ~ 2 sqrt(n), probing 1/12 of the lists (what reaches recall@10 >= 0.95 at 200k in bench/index.py);
    PQ codes of <= 64 bytes with sub-vectors of >= 4 dims, then the top 8k candidates re-ranked exactly."""
    nlist = max(1, min(int(2 * math.sqrt(n)), n // 39))
    m = next((m for m in (dim // 4, dim // 8, dim // 16, dim // 32) if 1 <= m <= 64 and dim % m == 0), 1)
    return {"nlist": nlist, "pq_m": m, "nprobe": max(1, nlist // IVF_PROBE_FRACTION), "refine_k_factor": REFINE_FACTOR}


def make_index(kind: str, x: np.ndarray) -> tuple[Any, dict[str, int]]:
    """Build and fill an index of ``kind`` over the unit rows ``x``; returns it with its search parameters."""
    import faiss

    n, dim = x.shape
    if kind == "flat":
        index, params = faiss.IndexFlatIP(dim), {}
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": HNSW_EF_SEARCH}
    else:
        params = _ivf_params(n, dim)
        index = faiss.index_factory(dim, f"IVF{params['nlist']},PQ{params['pq_m']}x8np,RFlat", faiss.METRIC_INNER_PRODUCT)
        index.train(x)
    index.add(x)
    _apply_params(index, kind, params)
    return index, params


def _apply_params(index: Any, kind: str, params: dict[str, int]) -> None:
    import faiss

    if kind == "hnsw":
        index.hnsw.efSearch = params["efSearch"]
    elif kind == "ivf-pq":
        faiss.extract_index_ivf(index).nprobe = params["nprobe"]
        faiss.downcast_index(index).k_factor = params["refine_k_factor"]


def exact_neighbours(x: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Rows (n_queries, k) of the exact top-k items by inner product over ``x``."""
    import faiss

    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    return exact.search(queries, k)[1]


def recall_against(index: Any, queries: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the exact neighbours ``truth`` (rows, -1 = none) that ``index`` also returns for ``queries``."""
    _, found = index.search(queries, truth.shape[1])
    hits = sum(len(set(t[t >= 0]) & set(f[f >= 0])) for t, f in zip(truth, found))
    return hits / max(1, int((truth >= 0).sum()))


def tune(index: Any, kind: str, params: dict[str, int], queries: np.ndarray, truth: np.ndarray,
         target: float = TARGET_RECALL) -> float:
    """Double the kind's search-time knob (HNSW efSearch up to :data:`HNSW_EF_MAX`, IVF nprobe up to nlist) until
    recall against ``truth`` reaches ``target``; updates ``params`` and the index, returns the recall reached."""
    knob, ceiling = ("efSearch", HNSW_EF_MAX) if kind == "hnsw" else ("nprobe", params["nlist"])
    while True:
        _apply_params(index, kind, params)
        recall = recall_against(index, queries, truth)
        if recall >= target or params[knob] >= ceiling:
            return recall
        params[knob] = min(ceiling, 2 * params[knob])


def tune_held_out(index: Any, kind: str, params: dict[str, int], queries: np.ndarray, truth: np.ndarray,
                  target: float = TARGET_RECALL) -> tuple[float, float]:
    """:func:`tune` on every other query, then the recall of the others: (tuning recall, held-out recall), so the
    figure reported was not used to choose the setting (one query: both are its recall)."""
    tuned = tune(index, kind, params, queries[::2], truth[::2], target)
    return tuned, (recall_against(index, queries[1::2], truth[1::2]) if len(queries) > 1 else tuned)


def _sample_queries(store_root: str | Path, expert: str, x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Up to RECALL_SAMPLE of the expert's query vectors (item vectors when there are no query vectors)."""
    rng = np.random.default_rng(seed)
    try:
        pool = EmbeddingStore.open(part_path(store_root, expert, "queries")).load()
    except HetmoeError:
        pool = x
    if len(pool) == 0:
        pool = x
    pick = rng.choice(len(pool), size=min(RECALL_SAMPLE, len(pool)), replace=False)
    return normalize(pool[np.sort(pick)], dim)


def _save(index: Any, path: Path, meta: dict[str, Any]) -> None:
    """Index file first (temporary name, then rename), then its metadata naming the file size it describes."""
    import faiss

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        meta["bytes"] = os.path.getsize(tmp)
        publish(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    write_json_atomic(path.with_name(path.name + ".json"), meta)


def tune_and_measure(store_root: str | Path, expert: str, index: Any, kind: str, params: dict[str, int], x: np.ndarray,
                     seed: int, target_recall: float) -> dict[str, Any]:
    """Tune an approximate index over the unit rows ``x`` on sample queries (:func:`tune_held_out`), warn when it misses
    the target; returns recall@10 on the held-out half, its query count and the batched search time."""
    queries = _sample_queries(store_root, expert, x, x.shape[1], seed)
    truth = exact_neighbours(x, queries)
    tuned, recall = tune_held_out(index, kind, params, queries, truth, target_recall)
    began = time.perf_counter()
    index.search(queries, 10)
    result = {"recall@10": round(recall, 4), "target_recall": target_recall, "recall_queries": max(1, len(queries) // 2),
              "ms_per_query_batched": round(1000 * (time.perf_counter() - began) / len(queries), 4)}
    knobs = ", ".join(f"{name} {params[name]}" for name in ("efSearch", "nprobe") if name in params)
    log.info("%s index over %d items (%s): recall@10 %.4f vs exact on %d held-out queries",
             kind, len(x), knobs, recall, result["recall_queries"])
    if recall < target_recall:
        reason = f"even at {knobs}" if tuned < target_recall else f"on held-out queries ({knobs} reached it on the others)"
        log.warning("%s index of %s: recall@10 %.4f is under the target %.2f %s; raise --target-recall for margin "
                    "or use --kind flat for exact search", kind, expert, recall, target_recall, reason)
    return result


def build_index(store_root: str | Path, expert: str, kind: str = "auto", seed: int = 0,
                target_recall: float = TARGET_RECALL) -> dict[str, Any]:
    """Build, tune, check and save the item index; returns kind, path, count, parameters and (approximate kinds)
    recall@10 vs exact on held-out sample queries."""
    if kind not in ("auto", *KINDS):
        raise HetmoeError(f"--kind {kind!r} is unknown; use one of auto, {', '.join(KINDS)}")
    if not 0.0 < target_recall <= 1.0:
        raise HetmoeError(f"--target-recall {target_recall}: must be in (0, 1], e.g. {TARGET_RECALL}")
    store = EmbeddingStore.open(part_path(store_root, expert, "items"))
    x = normalize(store.load(), store.dim)
    chosen = kind if kind != "auto" else ("flat" if len(x) <= FLAT_MAX else "hnsw")
    if chosen == "ivf-pq" and len(x) < IVF_MIN:
        raise HetmoeError(f"{store.path}: {len(x)} items are too few to train ivf-pq (needs {IVF_MIN}); use --kind flat or hnsw")
    began = time.perf_counter()
    index, params = make_index(chosen, x)
    result: dict[str, Any] = {"expert": expert, "kind": chosen, "requested": kind, "count": len(x), "dim": store.dim,
                              "params": params, "build_seconds": round(time.perf_counter() - began, 3)}
    if chosen != "flat":
        result.update(tune_and_measure(store_root, expert, index, chosen, params, x, seed, target_recall))
    path = index_path(store_root, expert)
    meta = {**result, "card_hash": store.manifest["card_hash"], "input_fingerprint": store.manifest["input_fingerprint"]}
    _save(index, path, meta)
    return {**result, "path": str(path)}


class ItemIndex:
    """A loaded item index: ``search`` maps query vectors to the nearest item ids by cosine."""

    def __init__(self, index: Any, ids: np.ndarray, meta: dict[str, Any], gpu: Any | None = None) -> None:
        self.index, self.ids, self.meta = index, ids, meta
        self._gpu = gpu  # GPU resources must outlive a GPU index
        self.dim, self.kind = int(meta["dim"]), str(meta["kind"])

    @classmethod
    def load(cls, store_root: str | Path, expert: str, store: EmbeddingStore | None = None) -> ItemIndex:
        """Load ``STORE/<expert>/items.faiss``; refuse one built over an older version of the item store (``store``:
        that item store, when the caller has it open already)."""
        import faiss

        path = index_path(store_root, expert)
        rebuild = f"rebuild it with 'hetmoe index --expert {expert} --store {store_root}'"
        meta_path = path.with_name(path.name + ".json")
        if not path.is_file() or not meta_path.is_file():
            raise HetmoeError(f"{path}: no item index; {rebuild}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        store = store or EmbeddingStore.open(part_path(store_root, expert, "items"))
        grown = StoreIdentity.of(meta).grown_from(store.manifest) if meta.get("bytes") == path.stat().st_size else None
        if grown:
            raise HetmoeError(f"{path}: the item store grew by {grown} items since the index was built; add them with "
                              f"'hetmoe index --expert {expert} --store {store_root} --append'")
        if grown is None:
            raise HetmoeError(f"{path}: index does not match the current item store (store rebuilt since?); {rebuild}")
        index = faiss.read_index(str(path))
        _apply_params(index, meta["kind"], meta.get("params", {}))
        resources = _gpu_resources() if meta["kind"] != "hnsw" else None
        if resources is not None:
            try:
                index = faiss.index_cpu_to_gpu(resources, 0, index)
            except RuntimeError as err:  # not every index type has a GPU version
                log.info("%s: staying on CPU (%s)", path, err)
                resources = None
        return cls(index, store.ids, meta, resources)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item ids (n, k) str and cosine scores (n, k) float32; rows padded with '' / -inf if k > items."""
        x = normalize(vectors, self.dim)
        scores, rows = self.index.search(x, min(k, len(self)))
        if k > rows.shape[1]:
            pad = k - rows.shape[1]
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.where(rows >= 0, self.ids[np.maximum(rows, 0)], "")
        return ids, np.where(rows >= 0, scores, -np.inf).astype(np.float32)
