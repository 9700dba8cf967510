"""Stage one: run one expert once over a dataset's items and queries and write its vectors to a store.

Chunks are fixed slices of the dataset's row order (chunk ``c`` = rows ``[c*size, (c+1)*size)``), so a chunk's content,
and therefore its float16 vectors, never depend on which shard or which (resumed) run encodes it: a killed-and-resumed
or sharded embed is bit-identical to a single uninterrupted run. Within a chunk, identical texts are encoded once and
unique texts go to the backend longest first, so batches hold texts of similar length.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from hetmoe.errors import HetmoeError
from hetmoe.files import dir_mode, disk_errors, write_json_atomic
from hetmoe.store.lock import embed_lock
from hetmoe.store.identity import TEXT_HASH, text_hashes
from hetmoe.store.verify import id_codecs, vector_codecs
from hetmoe.store.manifest import KIND, PartInput, existing_manifest, new_manifest, read_inputs, seal
from hetmoe.vectors import bad_rows, describe_bad_rows
from hetmoe.store.layout import DEFAULT_STORE, MANIFEST, completed_chunks, done_dir, expert_dir, marker_path, read_manifest

if TYPE_CHECKING:
    from hetmoe.experts.card import ExpertCard
    from hetmoe.experts.registry import Encoder

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 4096
BATCHES_PER_CHUNK = 32  # a chunk holds >= 32 backend batches, so per-call overheads and parallel paths amortise
ID_BLOCK = 65536  # ids written per zarr call when a store is created


def default_chunk_size(card: ExpertCard) -> int:
    """The card's ``chunk_size``, else 4096 texts or 32 of the card's batches when larger: the static expert only goes
    parallel above 10k texts and pays a thread-pool start per call (one A/B on 200k texts, median of 6: 16 batches
    7.1 s, 32 batches 6.2 s)."""
    return card.chunk_size or max(DEFAULT_CHUNK_SIZE, BATCHES_PER_CHUNK * int(card.batch_size))


def resolve_chunk_size(folder: Path, card: ExpertCard, chunk_size: int | None) -> int:
    """The asked chunk size, else the existing store's (so a resume needs no flag), else :func:`default_chunk_size`."""
    if chunk_size is None:
        try:
            chunk_size = int((read_manifest(folder) or {}).get("chunk_size", default_chunk_size(card)))
        except HetmoeError:
            chunk_size = default_chunk_size(card)
    if chunk_size < 1:
        raise HetmoeError(f"--chunk-size {chunk_size}: must be a positive number of texts, e.g. {DEFAULT_CHUNK_SIZE}")
    return chunk_size


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> (i, N), checked; None stays None (the whole store)."""
    if spec is None:
        return None
    try:
        index, total = (int(part) for part in spec.split("/"))
    except ValueError as err:
        raise HetmoeError(f"--shard {spec!r}: expected i/N, e.g. --shard 0/4") from err
    if total < 1 or not 0 <= index < total:
        raise HetmoeError(f"--shard {spec}: need 0 <= i < N, e.g. --shard 0/{max(total, 2)}")
    return index, total


def _create_part(path: Path, part: PartInput, dim: int, chunk_size: int) -> None:
    """Create the Zarr group (ids written, vectors empty) in a temporary folder and rename it into place.

    The rename is atomic and fails when another shard got there first, so concurrent workers never half-create it.
    """
    import zarr

    if path.is_dir():
        return
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        os.chmod(tmp, dir_mode())  # mkdtemp makes it 0700
        group = zarr.open_group(tmp, mode="w")
        rows = max(part.count, 0)
        group.create_array("vectors", shape=(rows, dim), chunks=(chunk_size, dim), dtype="float16",
                           compressors=vector_codecs(), fill_value=0.0)
        ids = group.create_array("ids", shape=(rows,), chunks=(chunk_size,), dtype=str, compressors=id_codecs())
        block = chunk_size * max(1, ID_BLOCK // chunk_size)  # whole zarr chunks per write, bounded memory
        for start in range(0, rows, block):
            ids[start : start + block] = np.asarray(part.ids.slice(start, block).to_list(), dtype=str)
        write_text_hashes(tmp, part, chunk_size)
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_hashes(path: Path, part: PartInput, chunk_size: int) -> None:
    """Add the per-row text hashes to a store part (built aside and renamed in, so a kill leaves none or all)."""
    import zarr

    final = path / TEXT_HASH
    if final.is_dir():
        return
    tmp = Path(tempfile.mkdtemp(dir=path, prefix=f".{TEXT_HASH}."))
    try:
        os.chmod(tmp, dir_mode())
        array = zarr.create_array(tmp, shape=(part.count,), chunks=(max(1, chunk_size),), dtype="uint64", fill_value=0,
                                  compressors=vector_codecs(), overwrite=True)
        array[:] = text_hashes(part.texts)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # another shard may have added them first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def encode_unique(encoder: Encoder, texts: pl.Series | list[str], kind: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 vectors of the distinct texts (longest first; dedup in polars) and each row's position among them."""
    rows = pl.DataFrame({"text": texts}, schema={"text": pl.String})
    unique = (
        rows.unique("text", maintain_order=True)
        .sort(pl.col("text").str.len_chars(), descending=True, maintain_order=True)
        .with_row_index("position")
    )
    batch = unique["text"].to_list()
    vectors = np.asarray(encoder.encode(batch, kind=kind), dtype=np.float32)
    if vectors.shape != (len(batch), dim):
        raise HetmoeError(f"expert returned vectors of shape {vectors.shape} for {len(batch)} texts, card says dim {dim}; fix the expert card")
    position = rows.join(unique, on="text", how="left", maintain_order="left")["position"].to_numpy()
    return vectors, position


def to_float16(vectors: np.ndarray, position: np.ndarray, ids: pl.Series | None = None, expert: str = "the expert") -> np.ndarray:
    """The rows' float16 vectors; refuses NaN, inf, values beyond float16's range (inf once converted) and all-zero
    vectors (nothing of the text reached the model), naming the rows' ``ids``: stored, they would score as garbage."""
    with np.errstate(over="ignore"):  # beyond float16's range becomes inf, refused below
        half = vectors.astype(np.float16)[position]
    bad = bad_rows(half)
    if bad.size:
        raise HetmoeError(f"{expert} produced {describe_bad_rows(half, bad, ids)} (texts it cannot encode, or values "
                          "too large for float16); fix or drop those texts, or normalise the expert's output in its card")
    return half


def _write_chunk(vectors: Any, path: Path, chunk: int, rows: tuple[int, int], encoded: tuple[np.ndarray, np.ndarray],
                 ids: pl.Series, encode_seconds: float, shard: tuple[int, int]) -> None:
    """Convert, write and only then mark one chunk complete (runs on the writer thread)."""
    began = time.perf_counter()
    vectors[rows[0] : rows[1]] = to_float16(*encoded, ids, f"expert '{path.parent.name}'")
    record = {"rows": list(rows), "texts": int(encoded[0].shape[0]),
              "seconds": round(encode_seconds + time.perf_counter() - began, 4),
              "shard": f"{shard[0]}/{shard[1]}", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json_atomic(marker_path(path, chunk), record)


def _fill_part(
    encoder: Encoder | None, path: Path, part: PartInput, manifest: dict[str, Any], shard: tuple[int, int], progress: bool
) -> dict[str, Any]:
    """Encode and write this shard's missing chunks of one part, marking each complete only after its write."""
    import zarr
    from tqdm import tqdm

    size, dim = int(manifest["chunk_size"]), int(manifest["dim"])
    n_chunks = int(manifest["parts"][part.part]["n_chunks"])
    mine = [c for c in range(n_chunks) if c % shard[1] == shard[0]]
    done = completed_chunks(path)
    todo = [c for c in mine if c not in done]
    rows_of = {c: min(size, part.count - c * size) for c in mine}
    vectors = zarr.open_group(path, mode="r+")["vectors"]
    done_dir(path).mkdir(exist_ok=True)
    if len(todo) < len(mine):
        log.info("%s: resuming, %d of %d chunks of this shard already written", path, len(mine) - len(todo), len(mine))
    encoded_rows = encoded_texts = 0
    # Write-behind: chunk c is converted, written and marked on one writer thread while chunk c+1 encodes; at most
    # one chunk waits, so memory stays bounded by two chunks.
    with tqdm(
        total=sum(rows_of.values()), initial=sum(rows_of[c] for c in mine if c in done),
        desc=f"{manifest['expert']} {part.part}", unit="text", disable=not progress, leave=False,
    ) as bar, ThreadPoolExecutor(max_workers=1, thread_name_prefix="hetmoe-write") as writer:
        pending: tuple[Future[None], int] | None = None

        def settle() -> None:
            """Wait for the chunk on the writer thread (re-raising its error) and count it as done."""
            if pending is not None:
                pending[0].result()
                bar.update(pending[1])

        for chunk in todo:
            assert encoder is not None, "embed_dataset builds the encoder whenever a chunk is missing"
            start, stop = chunk * size, chunk * size + rows_of[chunk]
            began = time.perf_counter()
            encoded = encode_unique(encoder, part.texts.slice(start, stop - start), KIND[part.part], dim)
            seconds = time.perf_counter() - began
            settle()
            ids = part.ids.slice(start, stop - start)
            pending = (writer.submit(_write_chunk, vectors, path, chunk, (start, stop), encoded, ids, seconds, shard), stop - start)
            encoded_rows, encoded_texts = encoded_rows + stop - start, encoded_texts + encoded[0].shape[0]
        settle()
    complete = len(completed_chunks(path))
    return {"count": part.count, "chunks": n_chunks, "chunks_complete": complete, "rows_encoded": encoded_rows, "texts_encoded": encoded_texts}


def _embed_locked(data_dir: str | Path, card: ExpertCard, store_root: str | Path, shard: tuple[int, int] | None,
                  overwrite: bool, chunk_size: int | None, encoder: Encoder | None, progress: bool) -> dict[str, Any]:
    """:func:`embed_dataset` once this process holds the store's lock."""
    began = time.perf_counter()
    inputs = read_inputs(data_dir)  # before the folder becomes a plain path: a checked Dataset is not read again
    data_dir, shard = Path(data_dir), shard or (0, 1)
    parse_shard(f"{shard[0]}/{shard[1]}")
    folder = expert_dir(store_root, card.name)
    chunk_size = resolve_chunk_size(folder, card, chunk_size)
    identity = new_manifest(card, inputs, chunk_size, data_dir)
    manifest = existing_manifest(folder, identity, overwrite)
    pending = manifest is None or any(len(completed_chunks(folder / f"{p}.zarr")) < spec["n_chunks"] for p, spec in manifest["parts"].items())
    if pending:  # a finished store is not even opened by the model: re-running it costs seconds
        if encoder is None:
            from hetmoe.experts.registry import build_encoder

            encoder = build_encoder(card)
        if manifest is None:
            manifest = {**identity, "dim": int(encoder.dim)}
            write_json_atomic(folder / MANIFEST, manifest)
        elif int(encoder.dim) != int(manifest["dim"]):
            raise HetmoeError(f"{folder}: store has dim {manifest['dim']} but the expert now produces {encoder.dim}; pass --overwrite to rebuild it")
        for part in inputs:
            _create_part(folder / f"{part.part}.zarr", part, int(manifest["dim"]), chunk_size)
    parts = {part.part: _fill_part(encoder, folder / f"{part.part}.zarr", part, manifest, shard, progress) for part in inputs}
    for part in inputs:  # stores from before per-row text hashes get them now (the input was checked to be the same)
        write_text_hashes(folder / f"{part.part}.zarr", part, int(manifest["chunk_size"]))
    complete = all(info["chunks_complete"] >= info["chunks"] for info in parts.values())
    if complete:
        seal(folder, manifest)
    summary = {"expert": card.name, "store": str(folder), "shard": f"{shard[0]}/{shard[1]}", "complete": complete,
               "seconds": round(time.perf_counter() - began, 3), "parts": parts}
    log.info("%s: %s", folder, "complete" if complete else "this shard done; other shards still missing")
    return summary


def embed_dataset(
    data_dir: str | Path,
    card: ExpertCard,
    store_root: str | Path = DEFAULT_STORE,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
    chunk_size: int | None = None,
    encoder: Encoder | None = None,
    progress: bool = True,
    wait: bool = True,
) -> dict[str, Any]:
    """Embed a dataset's items and queries with one expert into ``STORE/<expert>/``; resumable and shardable.

    ``chunk_size`` defaults to the existing store's, else :func:`default_chunk_size`; ``encoder`` reuses an
    already-built backend. While another process embeds the same shard (it holds the lock of
    :mod:`hetmoe.store.lock`), this one waits and then resumes from its chunks, or with ``wait=False`` fails naming
    it. Returns a summary: per part counts, chunks written by this run, and whether the whole store is now complete.
    """
    held = shard or (0, 1)
    parse_shard(f"{held[0]}/{held[1]}")
    with embed_lock(expert_dir(store_root, card.name), held, wait=wait), disk_errors(expert_dir(store_root, card.name)):
        return _embed_locked(data_dir, card, store_root, shard, overwrite, chunk_size, encoder, progress)
