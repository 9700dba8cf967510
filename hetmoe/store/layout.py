"""Where an expert's vectors live on disk, and the small JSON records that make a store trustworthy.

Layout of one expert (``STORE/<expert>/``)::

    manifest.json          identity: card hash + card, per-part input fingerprint, dim, count, chunking, versions;
                           sealed with completion + timing once every chunk is written
    items.zarr/            Zarr v3 group: ``vectors`` float16 (n, dim), one zarr chunk per embed chunk; ``ids`` str (n,)
    items.zarr.done/000012 one marker per completed chunk, written only after its vectors (race-free across shards)
    queries.zarr/ ...      the same for queries
    items.faiss(.json)     optional FAISS index over the item vectors (``hetmoe index``)
    append.json            only while ``hetmoe embed --append`` runs (or was killed): rows past the manifest's count
                           belong to it and are not part of the store yet (:mod:`hetmoe.store.append`)

Markers are the source of truth for completion: concurrent shards each create their own files and never rewrite a
shared one, so no completion record can be lost.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hetmoe.errors import HetmoeError

DEFAULT_STORE = Path("stores")
PARTS: tuple[str, ...] = ("items", "queries")
MANIFEST = "manifest.json"
APPEND_PLAN = "append.json"
FORMAT_VERSION = 1


def expert_dir(store_root: str | Path, expert: str) -> Path:
    """The folder holding everything one expert wrote into a store."""
    return Path(store_root) / expert


def part_path(store_root: str | Path, expert: str, part: str) -> Path:
    """``STORE/<expert>/<part>.zarr`` for part ``items`` or ``queries``."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    return expert_dir(store_root, expert) / f"{part}.zarr"


def done_dir(zarr_path: Path) -> Path:
    """The marker folder that records which chunks of ``zarr_path`` are complete."""
    return zarr_path.with_name(zarr_path.name + ".done")


def marker_path(zarr_path: Path, chunk: int) -> Path:
    return done_dir(zarr_path) / f"{chunk:06d}"


def completed_chunks(zarr_path: Path) -> set[int]:
    """Indices of the chunks whose marker exists (temporary files of an interrupted marker write do not count)."""
    folder = done_dir(zarr_path)
    if not folder.is_dir():
        return set()
    return {int(name) for name in os.listdir(folder) if name.isdigit()}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The expert's manifest, or None when the folder has none yet."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise HetmoeError(f"{path}: unreadable manifest ({err}); run 'hetmoe embed' with --overwrite to rebuild the store") from err


def chunk_timing(zarr_path: Path) -> dict[str, float]:
    """Seconds spent encoding (summed over chunks, all shards) and texts encoded, from the chunk markers."""
    seconds, texts, rows = 0.0, 0, 0
    folder = done_dir(zarr_path)
    for chunk in sorted(completed_chunks(zarr_path)):
        record = json.loads((folder / f"{chunk:06d}").read_text(encoding="utf-8"))
        seconds += float(record.get("seconds", 0.0))
        texts += int(record.get("texts", 0))
        rows += int(record.get("rows", [0, 0])[1]) - int(record.get("rows", [0, 0])[0])
    return {"encode_seconds": round(seconds, 3), "texts_encoded": texts, "rows": rows}
