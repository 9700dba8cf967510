"""Growing a finished store by the rows a dataset adds (``hetmoe embed --append``): only the new ids are encoded.

Why: catalogs change every day, and one new item used to invalidate a whole store (``--overwrite`` re-embeds all).

- The dataset must give every id of the store the same text (checked against each row's ``text_hash``); its other
  rows are new and go, in dataset order, to the end of each part. A changed or removed id is refused: that needs
  ``--overwrite``.
- Chunk boundaries stay ``[c*C, (c+1)*C)``. A partial last chunk gets its tail rows encoded on their own and its
  marker rewritten over the grown extent; old vectors are never rewritten, so models and indexes built on them stay
  exact. Later chunks are the very chunks a full rebuild encodes, so an expert whose vector of a text does not depend
  on the rest of its batch (static / model2vec) gives a store bit-identical to a full rebuild; for the others only
  that tail may differ, in the last bits.
- Fingerprints chain: a part's new ``input_fingerprint`` is ``sha256(previous + rows)`` over the two hex digests as
  ASCII, where ``rows`` is :meth:`PartInput.fingerprint` of the appended rows in store order. ``parts.<part>.history``
  records each append (previous_fingerprint, rows_fingerprint, fingerprint, from, rows_added, data, appended,
  versions), so what was built on an earlier state (a model, an index) can tell "grown since" from "rebuilt".
- Crash safety: a plan (``append.json``) is written first; then the arrays grow, the new ids and text hashes are
  written, and each chunk is encoded and marked with the plan's id; the manifest is replaced atomically last and the
  plan deleted. Until then readers see the old store. Rerunning resumes from the marked chunks; a rerun with another
  dataset first rolls the unfinished append back.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from hetmoe.files import disk_errors, write_json_atomic
from hetmoe.errors import HetmoeError
from hetmoe.store.embed import embed_dataset, encode_unique, to_float16
from hetmoe.store.manifest import IDENTITY_KEYS, KIND, PartInput, read_inputs, store_versions
from hetmoe.store.identity import TEXT_HASH, VERIFIED, text_hashes
from hetmoe.store.layout import APPEND_PLAN, DEFAULT_STORE, FORMAT_VERSION, MANIFEST, PARTS, completed_chunks, done_dir
from hetmoe.store.layout import expert_dir, marker_path, read_manifest
from hetmoe.store.lock import embed_lock

if TYPE_CHECKING:
    from hetmoe.experts.card import ExpertCard
    from hetmoe.experts.registry import Encoder

log = logging.getLogger(__name__)
ARRAYS = ("vectors", "ids", TEXT_HASH)
MAX_NAMED = 3


def chain_fingerprint(previous: str, rows: str) -> str:
    """A part's input fingerprint after appending rows whose own fingerprint is ``rows``."""
    return hashlib.sha256((previous + rows).encode("ascii")).hexdigest()


def append_dataset(data_dir: str | Path, card: ExpertCard, store_root: str | Path = DEFAULT_STORE,
                   chunk_size: int | None = None, encoder: Encoder | None = None, progress: bool = True,
                   wait: bool = True) -> dict[str, Any]:
    """Append the dataset's new items and queries to ``STORE/<expert>/`` (built in full when there is no store yet);
    resumable. Returns a summary with, per part, the rows it had, the rows added and what was encoded."""
    folder = expert_dir(store_root, card.name)
    if read_manifest(folder) is None:
        log.info("%s: no store yet, so --append embeds the whole dataset", folder)
        return {**embed_dataset(data_dir, card, store_root, chunk_size=chunk_size, encoder=encoder, progress=progress,
                                wait=wait), "appended": {}}
    with embed_lock(folder, (0, 1), wait=wait), disk_errors(folder):  # the lock of an unsharded embed: never both
        return _append_locked(data_dir, card, folder, chunk_size, encoder, progress)


def _append_locked(data_dir: str | Path, card: ExpertCard, folder: Path, chunk_size: int | None, encoder: Encoder | None,
                   progress: bool) -> dict[str, Any]:
    """:func:`append_dataset` once this process holds the store's lock."""
    began = time.perf_counter()
    manifest = read_manifest(folder) or {}
    _check_store(folder, manifest, card, chunk_size)
    pending = _read_plan(folder)
    if pending is not None and all(manifest["parts"][p]["input_fingerprint"] == _target(s) for p, s in pending["parts"].items()):
        (folder / APPEND_PLAN).unlink()  # killed after its manifest landed: nothing left to do
        pending = None
    inputs = read_inputs(data_dir)
    new = {part.part: _new_rows(folder, part) for part in inputs}
    core = {p: {"from": int(manifest["parts"][p]["count"]), "count": int(manifest["parts"][p]["count"]) + rows.count,
                "previous_fingerprint": manifest["parts"][p]["input_fingerprint"], "rows_fingerprint": rows.fingerprint()}
            for p, (rows, _) in new.items() if rows.count}
    plan_id = hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]
    if pending is not None and pending["id"] != plan_id:
        log.warning("%s: an unfinished append of other rows is rolled back first", folder)
        _rollback(folder, pending, int(manifest["chunk_size"]))
        pending = None
    summary = {"expert": card.name, "store": str(folder), "complete": True,
               "appended": {p: {"from": s["from"], "rows_added": s["count"] - s["from"]} for p, s in core.items()}}
    if not core:
        log.info("%s: the dataset adds no items or queries; nothing to append", folder)
        return {**summary, "seconds": round(time.perf_counter() - began, 3)}
    plan = pending or {"id": plan_id, "data": str(Path(data_dir).resolve()),
                       "parts": {p: {**s, "tail": _tail(folder / f"{p}.zarr", s, manifest)} for p, s in core.items()}}
    checked = {part.part: part.fingerprint() for part in inputs}  # every row of each part now matches this input
    if pending is None:
        write_json_atomic(folder / APPEND_PLAN, plan)
    else:
        log.info("%s: resuming an unfinished append", folder)
    encoder = encoder or _build(card, manifest)
    now, then = store_versions(card), manifest.get("versions", {})
    if now.get(card.backend) != then.get(card.backend):
        log.warning("%s: the store was built with %s %s, this run has %s; new rows may not match old ones bit for bit",
                    folder, card.backend, then.get(card.backend), now.get(card.backend))
    for part, spec in plan["parts"].items():
        rows, hashes = new[part]
        summary["appended"][part].update(_extend(encoder, folder / f"{part}.zarr", rows, hashes, spec, plan["id"], manifest, progress))
    _publish(folder, manifest, plan, card, checked)
    (folder / APPEND_PLAN).unlink()
    log.info("%s: appended %s", folder, ", ".join(f"{s['rows_added']} {p}" for p, s in summary["appended"].items()))
    return {**summary, "seconds": round(time.perf_counter() - began, 3)}


def _check_store(folder: Path, manifest: dict[str, Any], card: ExpertCard, chunk_size: int | None) -> None:
    """Refuse a store of another card or chunk size, or one not finished yet (appending needs its every old row)."""
    asked = {"format": FORMAT_VERSION, "expert": card.name, "card_hash": card.hash, "dim": card.dim or manifest.get("dim"),
             "chunk_size": chunk_size or manifest.get("chunk_size")}
    for key in IDENTITY_KEYS:
        if manifest.get(key) != asked[key]:
            label = {"card_hash": "expert card", "chunk_size": "--chunk-size"}.get(key, key)
            raise HetmoeError(f"{folder}: built with {label} {str(manifest.get(key))[:12]}, but this run has {str(asked[key])[:12]}; "
                              f"--append only adds rows to a store of the same expert: pass --overwrite instead of --append to rebuild it")
    unfinished = [p for p, s in manifest["parts"].items() if len(completed_chunks(folder / f"{p}.zarr")) < s["n_chunks"]]
    if unfinished or not manifest.get("complete"):
        raise HetmoeError(f"{folder}: incomplete store ({', '.join(unfinished) or 'not sealed'}); finish it first by running "
                          f"'hetmoe embed' without --append on the dataset it was started with ({manifest.get('data')})")


def _read_plan(folder: Path) -> dict[str, Any] | None:
    path = folder / APPEND_PLAN
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _target(spec: Mapping[str, Any]) -> str:
    return chain_fingerprint(spec["previous_fingerprint"], spec["rows_fingerprint"])


def _new_rows(folder: Path, part: PartInput) -> tuple[PartInput, np.ndarray]:
    """The dataset's rows whose ids the store lacks, and their text hashes; refuses a removed or changed old id."""
    from hetmoe.store.zarr_store import EmbeddingStore

    store = EmbeddingStore.open(folder / f"{part.part}.zarr")
    held = store.text_hashes()
    rebuild = "pass --overwrite instead of --append to rebuild the store from this dataset"
    if held is None:
        raise HetmoeError(f"{store.path} records no per-row text hashes (built by an older hetmoe), so its rows cannot be "
                          f"checked; run 'hetmoe embed' once on the dataset it was built from to add them, or {rebuild}")
    rows = pl.DataFrame({"id": part.ids, "hash": text_hashes(part.texts)}).with_row_index("row")
    old = pl.DataFrame({"id": store.ids.tolist(), "held": held}, schema={"id": pl.String, "held": pl.UInt64})
    joined = old.join(rows, on="id", how="left", maintain_order="left")
    for what, bad in (("lacks", joined.filter(pl.col("row").is_null())),
                      ("gives other texts for", joined.filter(pl.col("hash") != pl.col("held")))):
        if bad.height:
            named = ", ".join(bad["id"].head(MAX_NAMED).to_list()) + (" ..." if bad.height > MAX_NAMED else "")
            raise HetmoeError(f"{store.path}: the dataset {what} {bad.height} of the store's {len(store)} {part.part} "
                              f"({named}); --append only adds rows: {rebuild}")
    fresh = rows.join(old.select("id"), on="id", how="anti", maintain_order="left")
    picked = fresh["row"]
    return PartInput(part.part, part.ids.gather(picked), part.texts.gather(picked)), fresh["hash"].to_numpy()


def _tail(path: Path, spec: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """The marker of a partially filled last chunk as the store had it (the append rewrites it; a rollback restores it)."""
    size = int(manifest["chunk_size"])
    if spec["from"] % size == 0:
        return None
    return json.loads(marker_path(path, spec["from"] // size).read_text(encoding="utf-8"))


def _rollback(folder: Path, plan: Mapping[str, Any], size: int) -> None:
    """Undo an unfinished append: arrays back to the old row count, its markers removed, partial chunks' restored."""
    import zarr

    for part, spec in plan["parts"].items():
        path = folder / f"{part}.zarr"
        for name in ARRAYS:
            array = zarr.open_array(path / name, mode="r+")
            if array.shape[0] != spec["from"]:
                array.resize((spec["from"], *array.shape[1:]))
        for chunk in completed_chunks(path):
            if chunk >= -(-spec["from"] // size):
                marker_path(path, chunk).unlink(missing_ok=True)
        if spec.get("tail") is not None:
            write_json_atomic(marker_path(path, spec["from"] // size), spec["tail"])
    (folder / APPEND_PLAN).unlink()


def _build(card: ExpertCard, manifest: Mapping[str, Any]) -> Encoder:
    from hetmoe.experts.registry import build_encoder

    encoder = build_encoder(card)
    if int(encoder.dim) != int(manifest["dim"]):
        raise HetmoeError(f"store has dim {manifest['dim']} but the expert now produces {encoder.dim}; pass --overwrite "
                          f"instead of --append to rebuild it")
    return encoder


def _extend(encoder: Encoder, path: Path, rows: PartInput, hashes: np.ndarray, spec: Mapping[str, Any], plan_id: str,
            manifest: Mapping[str, Any], progress: bool) -> dict[str, int]:
    """Grow one part's arrays, write the new ids and hashes, then encode and mark the chunks this plan has not yet."""
    import zarr
    from tqdm import tqdm

    size, dim, start_row, end_row = int(manifest["chunk_size"]), int(manifest["dim"]), int(spec["from"]), int(spec["count"])
    arrays = {name: zarr.open_array(path / name, mode="r+") for name in ARRAYS}
    for array in arrays.values():
        if array.shape[0] != end_row:
            array.resize((end_row, *array.shape[1:]))
    arrays["ids"][start_row:end_row] = np.asarray(rows.ids.to_list(), dtype=str)
    arrays[TEXT_HASH][start_row:end_row] = hashes
    chunks = range(start_row // size, -(-end_row // size))
    todo = [c for c in chunks if _marker(path, c).get("append") != plan_id]
    done_dir(path).mkdir(exist_ok=True)
    span = {c: (max(c * size, start_row), min((c + 1) * size, end_row)) for c in chunks}
    texts = 0
    with tqdm(total=end_row - start_row, initial=sum(b - a for c, (a, b) in span.items() if c not in todo),
              desc=f"{manifest['expert']} {rows.part} (append)", unit="text", disable=not progress, leave=False) as bar:
        for chunk in todo:
            first, stop = span[chunk]
            began = time.perf_counter()
            encoded = encode_unique(encoder, rows.texts.slice(first - start_row, stop - first), KIND[rows.part], dim)
            arrays["vectors"][first:stop] = to_float16(*encoded, rows.ids.slice(first - start_row, stop - first),
                                                       f"expert '{manifest['expert']}'")
            before = spec["tail"] if first > chunk * size else {}  # the old rows' share of a partial chunk's record
            write_json_atomic(marker_path(path, chunk), {
                "rows": [chunk * size, stop], "texts": int(before.get("texts", 0)) + int(encoded[0].shape[0]),
                "seconds": round(float(before.get("seconds", 0.0)) + time.perf_counter() - began, 4), "shard": "0/1",
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "append": plan_id})
            texts += int(encoded[0].shape[0])
            bar.update(stop - first)
    return {"chunks_encoded": len(todo), "rows_encoded": sum(span[c][1] - span[c][0] for c in todo), "texts_encoded": texts}


def _marker(path: Path, chunk: int) -> dict[str, Any]:
    try:
        return json.loads(marker_path(path, chunk).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _publish(folder: Path, manifest: dict[str, Any], plan: Mapping[str, Any], card: ExpertCard,
             checked: Mapping[str, str]) -> None:
    """Replace the manifest (atomically, last): grown counts, chained fingerprints, history, timing, and per part the
    fingerprint of the dataset its every row was just checked against (``checked``), so readers of that dataset skip
    checking each row again."""
    from hetmoe.store.layout import chunk_timing

    size = int(manifest["chunk_size"])
    parts = {p: {**entry, VERIFIED: checked[p]} if p in checked else entry for p, entry in manifest["parts"].items()}
    for part, spec in plan["parts"].items():
        entry = {key: spec[key] for key in ("previous_fingerprint", "rows_fingerprint", "from")}
        entry.update({"fingerprint": _target(spec), "rows_added": spec["count"] - spec["from"], "data": plan["data"],
                      "appended": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": store_versions(card)})
        parts[part] = {**parts[part], "count": spec["count"], "n_chunks": -(-spec["count"] // size),
                       "input_fingerprint": entry["fingerprint"], "history": [*parts[part].get("history", []), entry]}
    timing = {part: chunk_timing(folder / f"{part}.zarr") for part in PARTS}
    write_json_atomic(folder / MANIFEST, {**manifest, "parts": parts, "data": plan["data"], "complete": True, "timing": timing})
