"""File digests for a folder of artifacts: written beside the files, checked before any of them is read.

Why: a model folder, a lexical model or a table built once and read for months can lose or change bytes (a truncated
copy, a disk error, a hand edit). Libraries read such files without a word (random weights behind an intact
safetensors header score garbage) or abort the process (LightGBM on a truncated model file). ``digests.json`` holds
the sha256 and size of each file; a reader calls :func:`verify_digests` first and gets one line naming the damaged or
missing file and the command that rebuilds it.

Usage::

    write_digests(folder, ["config.json", "weights.safetensors"])        # after the files are in place
    verify_digests(folder, ["weights.safetensors"], rebuild="'hetmoe fit-head ...'")   # before reading them

A folder written before digests existed has no ``digests.json``: it is read as before, and a warning says once per
process that it is unverified (``required=True`` refuses it instead, for artifacts that always carry one).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hetmoe.errors import HetmoeError
from hetmoe.files import write_json_atomic

log = logging.getLogger(__name__)
DIGESTS = "digests.json"
FORMAT = "hetmoe-digests/1"
BLOCK = 1 << 20
_warned: set[Path] = set()
_warned_lock = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (memory stays flat for large files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_digests(folder: str | Path, files: Iterable[str]) -> Path:
    """Record the sha256 and size of ``files`` (names relative to ``folder``) in ``folder/digests.json``, atomically."""
    folder = Path(folder)
    entries = {name: {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size} for name in files}
    write_json_atomic(folder / DIGESTS, {"format": FORMAT, "files": entries})
    return folder / DIGESTS


def read_digests(folder: str | Path, rebuild: str) -> dict[str, Any] | None:
    """The folder's recorded digests ({name: {sha256, bytes}}), or None when it has no ``digests.json``."""
    path = Path(folder) / DIGESTS
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        files = record["files"] if record.get("format") == FORMAT else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError):
        files = None
    if not isinstance(files, dict):
        raise HetmoeError(f"{path}: damaged digest record (not {FORMAT} JSON); rebuild the folder with {rebuild}")
    return files


def verify_digests(folder: str | Path, files: Iterable[str], rebuild: str, required: bool = False) -> bool:
    """Check ``files`` against ``folder/digests.json`` before anything reads them: True when verified; False (and a
    warning once per folder) when the folder predates digests. A missing, resized or changed file, or one the record
    does not cover, raises one line naming it and ``rebuild`` (the command that writes the folder again)."""
    folder = Path(folder)
    recorded = read_digests(folder, rebuild)
    if recorded is None:
        if required:
            raise HetmoeError(f"{folder / DIGESTS}: missing (the folder was not completely written); rebuild it with {rebuild}")
        unverified(folder, f"no {DIGESTS}", rebuild)
        return False
    for name in files:
        path = folder / name
        entry = recorded.get(name)
        if not path.is_file():
            raise HetmoeError(f"{path}: missing; rebuild it with {rebuild}")
        if not isinstance(entry, dict):
            raise HetmoeError(f"{path}: not covered by {folder / DIGESTS} (copied in from elsewhere?); rebuild it with {rebuild}")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise HetmoeError(f"{path}: damaged ({size} bytes, {entry.get('bytes')} written); rebuild it with {rebuild}")
        if file_sha256(path) != entry.get("sha256"):
            raise HetmoeError(f"{path}: damaged (its sha256 differs from the one written); rebuild it with {rebuild}")
    return True


def unverified(path: str | Path, why: str, rebuild: str) -> None:
    """Warn once per process that ``path`` is read without checks (it was written before they existed)."""
    path = Path(path)
    with _warned_lock:
        if path in _warned:
            return
        _warned.add(path)
    log.warning("%s: read unverified (%s: written before hetmoe checked its bytes); %s adds the checks", path, why,
                rebuild)
