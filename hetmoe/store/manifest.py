"""What a store's ``manifest.json`` says it holds, and whether an existing store is the one a run asks for.

The manifest is the store's identity: card hash + card, per-part input fingerprint, dim, count, chunking and library
versions, sealed with completion and summed timing once every chunk is written. A run whose identity differs is
refused (or, with ``--overwrite``, the old store is wiped) instead of mixing vectors from two inputs.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from hetmoe.errors import HetmoeError
from hetmoe.files import write_json_atomic
from hetmoe.store.identity import StoreIdentity, input_fingerprint
from hetmoe.store.layout import FORMAT_VERSION, MANIFEST, PARTS, read_manifest
from hetmoe.store.lock import clear_folder

if TYPE_CHECKING:
    from hetmoe.experts.card import ExpertCard

log = logging.getLogger(__name__)

KIND = {"items": "document", "queries": "query"}
IDENTITY_KEYS = ("format", "expert", "card_hash", "dim", "chunk_size")


@dataclass(frozen=True)
class PartInput:
    """The ids and texts of one part, kept as polars columns so only one chunk at a time becomes Python strings."""

    part: str
    ids: pl.Series
    texts: pl.Series

    @property
    def count(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        return input_fingerprint(self.ids, self.texts)


def read_inputs(data_dir: str | Path) -> list[PartInput]:
    """Items and queries of a dataset folder, after the full dataset checks (unique ids, no empty texts, ...)."""
    from hetmoe.data.validate import check_dataset

    dataset = check_dataset(data_dir)
    items, queries = dataset.item_texts(), dataset.query_texts()
    return [PartInput("items", items["item_id"], items["text"]), PartInput("queries", queries["query_id"], queries["text"])]


def store_versions(card: ExpertCard) -> dict[str, str]:
    """Library versions that could change the bytes on disk (the card's backend is usually its package name)."""
    versions = {"python": sys.version.split()[0], "numpy": np.__version__}
    for dist in ("hetmoe", "zarr", card.backend):
        try:
            versions[dist] = metadata.version(dist)
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return versions


def new_manifest(card: ExpertCard, inputs: list[PartInput], chunk_size: int, data_dir: Path) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "expert": card.name,
        "card_hash": card.hash,
        "card": card.to_dict(),
        "dim": card.dim,
        "chunk_size": chunk_size,
        "data": str(data_dir.resolve()),
        "versions": store_versions(card),
        "parts": {
            part.part: {
                "kind": KIND[part.part],
                "count": part.count,
                "n_chunks": -(-part.count // chunk_size),
                "input_fingerprint": part.fingerprint(),
            }
            for part in inputs
        },
    }


def mismatch(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why an existing manifest describes a different store than the one asked for (None when it is the same)."""
    for key in IDENTITY_KEYS:
        if old.get(key) != new[key] and not (key == "dim" and new[key] is None):
            label = {"card_hash": "expert card", "chunk_size": "--chunk-size"}.get(key, key)
            mine, theirs = str(old.get(key))[:12], str(new[key])[:12]
            return f"built with {label} {mine}, but this run has {theirs}"
    for part, spec in new["parts"].items():
        had = old.get("parts", {}).get(part, {})
        if StoreIdentity.of(had) != StoreIdentity.of(spec):
            return (
                f"built from other input ({part}: {had.get('count')} rows, fingerprint {str(had.get('input_fingerprint'))[:12]}; "
                f"now {spec['count']} rows, {spec['input_fingerprint'][:12]}; if it only adds rows, --append encodes just those)"
            )
    return None


def existing_manifest(folder: Path, identity: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The store's manifest when it matches this run; a mismatched or damaged store is refused, or wiped with overwrite."""
    try:
        old = read_manifest(folder)
        reason = None if old is None else mismatch(old, identity)
    except HetmoeError:
        old, reason = None, "manifest unreadable"
    if old is None and reason is None and folder.is_dir() and any(p.name.endswith(".zarr") for p in folder.iterdir()):
        reason = "has store data but no manifest"
    if reason is None:
        return old
    if not overwrite:
        raise HetmoeError(f"{folder}: {reason}; pass --overwrite to rebuild it, or choose another --store")
    log.warning("%s: %s; --overwrite: deleting it", folder, reason)
    clear_folder(folder)  # keeps the lock this run holds
    return None


def seal(folder: Path, manifest: dict[str, Any]) -> None:
    """Once every chunk of every part exists, record completion and summed timing in the manifest (idempotent)."""
    from hetmoe.store.layout import chunk_timing

    if manifest.get("complete"):
        return
    timing = {part: chunk_timing(folder / f"{part}.zarr") for part in PARTS}
    write_json_atomic(folder / MANIFEST, {**manifest, "complete": True, "timing": timing})
