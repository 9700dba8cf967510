"""``embed --engine ray``: the store of :mod:`hetmoe.store.embed`, filled by a Ray Data actor pool instead of one process.

Why it is the same store: the driver does what a single-process run does before encoding (dataset checks, identity and
fingerprints, manifest, empty Zarr parts) with the same functions, and each actor runs the same per-chunk code
(dedup + longest-first encode, float16, write, then the chunk's marker). Chunk k is rows [k*C, (k+1)*C) whichever actor
encodes it, so the vectors are bit-identical on CPU and the manifest is the same. Resume is the markers': marked
chunks are never sent, a retried unit skips a chunk marked meanwhile, and a run ended by a dead worker leaves only
complete chunks behind, so running the command again finishes the rest.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from hetmoe.files import write_json_atomic
from hetmoe.scale.session import PoolSpec, map_units, pool_size, ray_session
from hetmoe.store.embed import _create_part, _write_chunk, encode_unique, resolve_chunk_size
from hetmoe.store.manifest import KIND, PartInput, existing_manifest, new_manifest, read_inputs, seal
from hetmoe.store.layout import DEFAULT_STORE, MANIFEST, completed_chunks, expert_dir, marker_path

if TYPE_CHECKING:
    import pyarrow as pa

    from hetmoe.experts.card import ExpertCard

log = logging.getLogger(__name__)
# Test hook: each actor exits (os._exit, a real process death) after writing this many chunks.
DIE_AFTER_ENV = "HETMOE_TEST_WORKER_EXIT_AFTER"


class EmbedWorker:
    """One Ray actor: builds the expert once (on its GPU when it reserved one), then encodes and writes whole chunks."""

    def __init__(self, card: dict[str, Any], folder: str, dim: int, threads: int, die_after: int = 0) -> None:
        from hetmoe.experts.card import ExpertCard
        from hetmoe.experts.registry import build_encoder

        self.encoder = build_encoder(ExpertCard.from_dict({**card, "threads": threads}))
        self.folder, self.dim, self.die_after, self.written = Path(folder), dim, die_after, 0
        self.vectors: dict[str, Any] = {}

    def _array(self, part: str) -> Any:
        import zarr

        if part not in self.vectors:
            self.vectors[part] = zarr.open_group(self.folder / f"{part}.zarr", mode="r+")["vectors"]
        return self.vectors[part]

    def __call__(self, unit: pa.Table) -> dict[str, list[Any]]:
        """Encode and write the unit's chunk (a retry of a chunk marked meanwhile writes nothing)."""
        part, chunk, start = unit["part"][0].as_py(), unit["chunk"][0].as_py(), unit["start"][0].as_py()
        path, began, cpu = self.folder / f"{part}.zarr", time.time(), time.process_time()
        if marker_path(path, chunk).exists():
            return {"part": [part], "chunk": [chunk], "rows": [0], "texts": [0], "began": [began], "ended": [began], "cpu": [0.0]}
        texts, ids = (pl.from_arrow(unit[name].combine_chunks().flatten()) for name in ("texts", "ids"))
        clock = time.perf_counter()
        encoded = encode_unique(self.encoder, texts, KIND[part], self.dim)
        rows = (start, start + len(texts))
        _write_chunk(self._array(part), path, chunk, rows, encoded, ids, time.perf_counter() - clock, (0, 1))
        self.written += 1
        if self.die_after and self.written >= self.die_after:
            os._exit(3)
        return {"part": [part], "chunk": [chunk], "rows": [len(texts)], "texts": [int(encoded[0].shape[0])],
                "began": [began], "ended": [time.time()], "cpu": [time.process_time() - cpu]}


def _dim_of(card: dict[str, Any]) -> int:
    """The expert's output width, for a card that does not declare ``dim`` (run as a Ray task, on a worker's resources)."""
    from hetmoe.experts.card import ExpertCard
    from hetmoe.experts.registry import build_encoder

    return int(build_encoder(ExpertCard.from_dict(card)).dim)


def _units(inputs: list[PartInput], folder: Path, manifest: dict[str, Any]) -> list[pa.Table]:
    """One Arrow table per missing chunk: its part, index, first row, texts and ids (an error about a vector names
    its id)."""
    import pyarrow as pa

    size, units = int(manifest["chunk_size"]), []
    for part in inputs:
        done = completed_chunks(folder / f"{part.part}.zarr")
        for chunk in range(int(manifest["parts"][part.part]["n_chunks"])):
            if chunk not in done:
                texts, ids = (column.slice(chunk * size, size).to_arrow() for column in (part.texts, part.ids))
                listed = {name: pa.ListArray.from_arrays(pa.array([0, len(texts)], pa.int32()), values)
                          for name, values in (("texts", texts), ("ids", ids))}
                units.append(pa.table({"part": [part.part], "chunk": [chunk], "start": [chunk * size], **listed}))
    return units


def embed_dataset_ray(
    data_dir: str | Path,
    card: ExpertCard,
    store_root: str | Path = DEFAULT_STORE,
    pool: PoolSpec | None = None,
    overwrite: bool = False,
    chunk_size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed a dataset with one expert into ``STORE/<expert>/`` on a Ray actor pool; same store, same resume as
    :func:`hetmoe.store.embed.embed_dataset`. Returns its summary plus the pool size, Ray's start seconds, and
    ``work_seconds``: from the first chunk's start to the last one's end (actor start and model loads excluded), and
    ``cpu_seconds``: the workers' CPU time in those chunks (every thread's), what a plan per core is worked from."""
    from tqdm import tqdm

    began, pool = time.perf_counter(), pool or PoolSpec()
    inputs = read_inputs(data_dir)  # a checked Dataset is not read again
    data_dir, folder = Path(data_dir), expert_dir(store_root, card.name)
    chunk_size = resolve_chunk_size(folder, card, chunk_size)
    identity = new_manifest(card, inputs, chunk_size, data_dir)
    manifest = existing_manifest(folder, identity, overwrite)
    encoded = {part.part: [0, 0] for part in inputs}
    workers, start_seconds, cpu = 0, 0.0, 0.0
    window = [float("inf"), 0.0]  # first unit's start, last unit's end (wall clock)
    pending = manifest is None or any(len(completed_chunks(folder / f"{p}.zarr")) < s["n_chunks"] for p, s in manifest["parts"].items())
    if pending:  # a finished store does not even start Ray
        with ray_session(pool.address) as start_seconds:
            if manifest is None:
                manifest = {**identity, "dim": card.dim or _probe_dim(card, pool)}
                write_json_atomic(folder / MANIFEST, manifest)
            for part in inputs:
                _create_part(folder / f"{part.part}.zarr", part, int(manifest["dim"]), chunk_size)
            units = _units(inputs, folder, manifest)
            workers = min(pool_size(pool), len(units))
            log.info("%s: %d chunks to encode on %d Ray workers", folder, len(units), workers)
            die_after = int(os.environ.get(DIE_AFTER_ENV, "0"))
            args = (card.to_dict(), str(folder), int(manifest["dim"]), pool.threads, die_after)
            total = sum(len(u["texts"][0]) for u in units)
            with tqdm(total=total, desc=f"{card.name} (ray x{workers})", unit="text", disable=not progress, leave=False) as bar:
                for row in map_units(units, EmbedWorker, args, pool):
                    encoded[row["part"]][0] += row["rows"]
                    encoded[row["part"]][1] += row["texts"]
                    window = [min(window[0], row["began"]), max(window[1], row["ended"])]
                    cpu += row["cpu"]
                    bar.update(row["rows"])
    assert manifest is not None
    parts = {
        part.part: {"count": part.count, "chunks": int(manifest["parts"][part.part]["n_chunks"]),
                    "chunks_complete": len(completed_chunks(folder / f"{part.part}.zarr")),
                    "rows_encoded": encoded[part.part][0], "texts_encoded": encoded[part.part][1]}
        for part in inputs
    }
    complete = all(info["chunks_complete"] >= info["chunks"] for info in parts.values())
    if complete:
        seal(folder, manifest)
    log.info("%s: %s", folder, "complete" if complete else "incomplete; run the same command again to finish")
    work = max(window[1] - window[0], 0.0)
    rows = sum(info["rows_encoded"] for info in parts.values())
    return {"expert": card.name, "store": str(folder), "engine": "ray", "workers": workers, "complete": complete,
            "seconds": round(time.perf_counter() - began, 3), "ray_start_seconds": round(start_seconds, 3),
            "work_seconds": round(work, 3), "texts_per_s": round(rows / work, 1) if rows and work else None,
            "cpu_seconds": round(cpu, 3), "parts": parts}


def _probe_dim(card: ExpertCard, pool: PoolSpec) -> int:
    import ray

    task = ray.remote(num_cpus=pool.cpus_per_worker, num_gpus=pool.gpus_per_worker or None)(_dim_of)
    return int(ray.get(task.remote(card.to_dict())))
