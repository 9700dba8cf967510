"""Resumable output of ``hetmoe score``: one Parquet part per block in ``OUT.parts/``, then one file ``OUT``.

Layout::

    OUT.parts/manifest.json       what the parts belong to: model and pairs fingerprints, block size, dataset
    OUT.parts/part-00007.parquet  the scored rows of block 7 (tmp + rename)
    OUT.parts/part-00007.json     its counts (pairs, scored, unknowns), its block index, a digest of its input rows
                                  (their positions in the pairs file) and the part file's sha256; written after the
                                  part: a block is done when this exists, so a killed run leaves no half part that counts
    OUT                           every part in block order, written to a temporary file and renamed

Why a manifest: parts of another model or another pairs file must never be stitched into this run's output. Why the
per-part record: a part copied over another block's, or damaged, is found on resume and that block scored again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from hetmoe.files import disk_errors, write_json_atomic
from hetmoe.errors import HetmoeError
from hetmoe.integrity import file_sha256
from hetmoe.scale.pairs import BLOCK, ROW

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def part_file(parts: Path, block: int) -> Path:
    return parts / f"part-{block:05d}.parquet"


def stats_file(parts: Path, block: int) -> Path:
    return parts / f"part-{block:05d}.json"


def model_fingerprint(model_dir: Path) -> str:
    """sha256 over the model's config and weights (any retraining changes it)."""
    from hetmoe.moe.artifacts import CONFIG, WEIGHTS

    digest = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def check_out(out: Path, pairs: Path) -> None:
    """Refuse an ``--out`` that would overwrite the pairs file or that names a folder (before anything is written)."""
    if out.resolve() == Path(pairs).resolve():
        raise HetmoeError(f"--out {out} is the --pairs file; write the scores to another file (score never overwrites its input)")
    if out.is_dir():
        raise HetmoeError(f"--out {out} is a folder; name the Parquet file to write, e.g. {out / 'scores.parquet'}")


def block_identity(block: pl.DataFrame) -> dict[str, Any]:
    """What a part records of its input: its block index and a digest of its rows' positions in the pairs file (whose
    sha256 the manifest holds, so together they pin the rows)."""
    rows = block[ROW].to_numpy().astype("<i8")
    return {"block": int(block[BLOCK][0]), "rows": hashlib.sha256(rows.tobytes()).hexdigest()}


def open_parts(parts: Path, identity: dict[str, Any], overwrite: bool, blocks: Mapping[int, pl.DataFrame]) -> set[int]:
    """The blocks already done in ``parts``; parts of another run are refused (or deleted with ``overwrite``). A part
    whose record does not match its planned block (``blocks``, by index), or whose file is damaged or missing, is
    deleted so that its block is scored again."""
    manifest = parts / MANIFEST
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        differ = [key for key in identity if old.get(key) != identity[key]]
        if differ and not overwrite:
            raise HetmoeError(f"{parts}: holds parts of another score run ({', '.join(differ)} differ); pass --overwrite "
                              "to start over, or choose another --out")
        if differ:
            shutil.rmtree(parts)
    elif parts.is_dir() and any(parts.iterdir()):
        if not overwrite:
            raise HetmoeError(f"{parts}: has files but no {MANIFEST}; pass --overwrite to start over, or choose another --out")
        shutil.rmtree(parts)
    if not manifest.is_file():
        write_json_atomic(manifest, identity)
    done = {int(p.name[5:10]) for p in parts.glob("part-*.json")}
    for block in sorted(done):
        reason = _mismatch(parts, block, blocks.get(block))
        if reason:
            log.warning("%s: %s; scoring block %d again", part_file(parts, block), reason, block)
            stats_file(parts, block).unlink()
            part_file(parts, block).unlink(missing_ok=True)
            done.discard(block)
    return done


def _mismatch(parts: Path, block: int, planned: pl.DataFrame | None) -> str | None:
    """Why a finished part cannot be kept (None when it can): not a planned block, another block's rows, damaged."""
    if planned is None:
        return "not a block of this pairs file"
    try:
        stats = json.loads(stats_file(parts, block).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "its record is unreadable"
    expected = block_identity(planned)
    if not isinstance(stats, dict) or {k: stats.get(k) for k in expected} != expected:
        return "it records other input rows than its block's"
    path = part_file(parts, block)
    if not path.is_file():
        return "the part file is missing"
    if file_sha256(path) != stats.get("part_sha256"):
        return "the part file is damaged or was replaced (its sha256 differs from the one recorded)"
    return None


def write_part(parts: Path, block: int, frame: pl.DataFrame, stats: dict[str, Any]) -> None:
    """Write the block's rows, then its record (counts, input identity, the part's sha256: the done marker); both
    atomic."""
    fd, tmp = tempfile.mkstemp(dir=parts, prefix=f".part-{block:05d}.", suffix=".tmp")
    os.close(fd)
    try:
        with disk_errors(part_file(parts, block)):
            frame.write_parquet(tmp)
        digest = file_sha256(tmp)
        os.replace(tmp, part_file(parts, block))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_json_atomic(stats_file(parts, block), {**stats, "part_sha256": digest})


def gather(parts: Path, blocks: list[int], out: Path) -> dict[str, Any]:
    """Concatenate the parts in block order into ``out`` (one part in memory at a time); returns the summed counts."""
    import pyarrow.parquet as pq

    totals: dict[str, Any] = {"unknown_market_names": []}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    writer = None
    try:
        with disk_errors(out):
            try:
                for block in blocks:
                    table = pq.read_table(part_file(parts, block))
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    stats = json.loads(stats_file(parts, block).read_text(encoding="utf-8"))
                    for key, value in stats.items():
                        if key == "unknown_market_names":
                            totals[key] = sorted(set(totals[key]) | set(value))
                        elif isinstance(value, (int, float)) and key != "block":
                            totals[key] = totals.get(key, 0) + value
            finally:
                if writer is not None:
                    writer.close()
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return totals
