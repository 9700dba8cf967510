"""``hetmoe index --append``: add the rows ``hetmoe embed --append`` gave an item store to its FAISS index.

Why: rebuilding an HNSW or IVF-PQ index over millions of items takes far longer than adding a day's new items. The
index's metadata names the store state it covers (input fingerprint and row count); the store's append history
(:mod:`hetmoe.store.append`) says whether that state is an earlier one of this store, and so which rows are new:
always the rows past the covered count, because appends only add rows at the end. Flat and HNSW indexes simply
add them; IVF-PQ adds them with the quantiser it was trained with (the coarse lists and PQ codebooks are not
retrained, so recall can drift when the catalog grows far past what they were trained on: rebuild then).
Approximate kinds are tuned again to the recall target on the grown index, as a build would be.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from hetmoe.errors import HetmoeError
from hetmoe.store.identity import StoreIdentity
from hetmoe.store.index import (
    TARGET_RECALL,
    _apply_params,
    _save,
    index_path,
    normalize,
    tune_and_measure,
)
from hetmoe.store.layout import part_path
from hetmoe.store.zarr_store import EmbeddingStore

log = logging.getLogger(__name__)


def append_index(store_root: str | Path, expert: str, kind: str = "auto", seed: int = 0,
                 target_recall: float = TARGET_RECALL) -> dict[str, Any]:
    """Add the item rows appended since the index was built; returns kind, path, count, rows added and (approximate
    kinds) recall@10 after re-tuning. The index keeps its kind: ``kind`` other than auto must name it."""
    import faiss

    path = index_path(store_root, expert)
    meta_path = path.with_name(path.name + ".json")
    build = f"'hetmoe index --expert {expert} --store {store_root}' (without --append)"
    if not path.is_file() or not meta_path.is_file():
        raise HetmoeError(f"{path}: no item index to append to; build it with {build}")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if kind not in ("auto", meta["kind"]):
        raise HetmoeError(f"{path}: the index is {meta['kind']} and --append keeps its kind; drop --kind {kind}, or "
                          f"rebuild it with 'hetmoe index --expert {expert} --store {store_root} --kind {kind}'")
    store = EmbeddingStore.open(part_path(store_root, expert, "items"))
    grown = StoreIdentity.of(meta).grown_from(store.manifest)
    if grown is None or meta.get("bytes") != path.stat().st_size:
        raise HetmoeError(f"{path}: the index is not over an earlier state of this item store (rebuilt from other "
                          f"input since?), so rows cannot be added to it; rebuild it with {build}")
    covered = len(store) - grown
    index = faiss.read_index(str(path))
    if index.ntotal != covered:
        raise HetmoeError(f"{path}: holds {index.ntotal} vectors but its metadata says {covered}; rebuild it with {build}")
    summary = {"expert": expert, "kind": meta["kind"], "path": str(path), "from": covered, "rows_added": len(store) - covered}
    if covered == len(store):
        log.info("%s: already covers all %d items", path, covered)
        return {**summary, "count": covered}
    began = time.perf_counter()
    x = normalize(store.load(), store.dim)
    index.add(x[covered:])
    params = dict(meta.get("params", {}))
    _apply_params(index, meta["kind"], params)
    result = {key: meta[key] for key in ("expert", "kind", "requested", "dim") if key in meta}
    result.update({"count": len(x), "params": params, "build_seconds": meta.get("build_seconds"),
                   "appended": [*meta.get("appended", []), {"from": covered, "rows_added": len(x) - covered,
                                                            "seconds": round(time.perf_counter() - began, 3)}]})
    if meta["kind"] != "flat":
        result.update(tune_and_measure(store_root, expert, index, meta["kind"], params, x, seed, target_recall))
    _save(index, path, {**result, "card_hash": store.manifest["card_hash"], "input_fingerprint": store.manifest["input_fingerprint"]})
    log.info("%s: added %d items (now %d)", path, len(x) - covered, len(x))
    return {**result, **summary}
