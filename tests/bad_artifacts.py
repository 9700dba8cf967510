"""Damaged artifacts and untrustworthy score inputs: the fault corpus of ``test_faults.py``.

A :class:`Fault` damages a copy of a built workspace (``ws/stores`` and ``ws/model``) the way a disk error, a bad copy
or a hand edit would, and names the fragment the refusal must hold. A :class:`PairsFault` turns a valid pairs table
into one ``hetmoe score`` must refuse. Add a case for every damaged file found to be read without a word.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from hetmoe.integrity import read_digests, write_digests


@dataclass(frozen=True)
class Fault:
    name: str
    damage: Callable[[Path], None]  # the workspace holding stores/ and model/
    fragment: str


@dataclass(frozen=True)
class PairsFault:
    name: str
    change: Callable[[pl.DataFrame], pl.DataFrame]
    fragment: str


def chunk(expert: str, part: str, array: str, row: int = 0) -> str:
    """A chunk file of a store part, relative to the workspace (vectors are chunked by rows only)."""
    key = f"{row}/0" if array == "vectors" else str(row)
    return f"stores/{expert}/{part}.zarr/{array}/c/{key}"


def delete(rel: str) -> Callable[[Path], None]:
    return lambda ws: (ws / rel).unlink()


def truncate(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    """Cut a file to ``keep`` of its size (an interrupted copy)."""

    def damage(ws: Path) -> None:
        path = ws / rel
        os.truncate(path, int(path.stat().st_size * keep))

    return damage


def scramble(rel: str, skip: int = 0) -> Callable[[Path], None]:
    """Overwrite a file with random bytes after its first ``skip`` bytes, keeping its size (a header stays intact)."""

    def damage(ws: Path) -> None:
        path = ws / rel
        data = bytearray(path.read_bytes())
        data[skip:] = random.Random(0).randbytes(len(data) - skip)
        path.write_bytes(bytes(data))

    return damage


def set_rows(expert: str, part: str, rows: slice, value: float) -> Callable[[Path], None]:
    """Write ``value`` into some vectors through Zarr itself, so the chunks' checksums stay valid."""

    def damage(ws: Path) -> None:
        import zarr

        vectors = zarr.open_group(ws / "stores" / expert / f"{part}.zarr", mode="r+")["vectors"]
        vectors[rows] = value

    return damage


def reseal(model: Path) -> None:
    """Rewrite a model folder's digests over its current files: a whole (if wrong) artifact, not a damaged one."""
    write_digests(model, read_digests(model, "") or {})


def edit_config(change: Callable[[dict], None], sealed: bool = False, folder: str = "model") -> Callable[[Path], None]:
    """Edit a model's config.json by hand; ``sealed``: rewrite its digests after (as if it had been written so)."""

    def damage(ws: Path) -> None:
        path = ws / folder / "config.json"
        config = json.loads(path.read_text())
        change(config)
        path.write_text(json.dumps(config, indent=2))
        if sealed:
            reseal(ws / folder)

    return damage


def _reorder(config: dict) -> None:
    config["spec"]["experts"] = config["spec"]["experts"][::-1]


def nan_weights(ws: Path) -> None:
    """A model whose training diverged: NaN in one weight, written and sealed as a whole."""
    from safetensors.numpy import load_file, save_file

    path = ws / "model" / "weights.safetensors"
    weights = load_file(str(path))
    name = sorted(weights)[0]
    weights[name] = np.full_like(weights[name], np.nan)
    save_file(weights, str(path))
    reseal(ws / "model")


STORE_FAULTS = [
    Fault("vectors chunk deleted", delete(chunk("wordllama", "items", "vectors", 1)), "vectors/c/1/0: chunk missing"),
    Fault("ids chunk deleted", delete(chunk("wordllama", "items", "ids", 1)), "ids/c/1: chunk missing"),
    Fault("query-store chunk deleted", delete(chunk("static", "queries", "vectors", 0)), "vectors/c/0/0: chunk missing"),
    Fault("vectors chunk truncated", truncate(chunk("static", "items", "vectors", 1)),
          "vectors/c/1/0: damaged chunk (its crc32c checksum does not match)"),
    Fault("vectors overwritten with random bytes", scramble(chunk("wordllama", "items", "vectors", 2)),
          "vectors/c/2/0: damaged chunk (its crc32c checksum does not match)"),
    Fault("ids chunk truncated", truncate(chunk("static", "items", "ids", 0)), "ids/c/0: damaged chunk"),
    Fault("60 rows zeroed", set_rows("wordllama", "items", slice(2, 62), 0.0), "60 all-zero vectors"),
    Fault("query rows set to NaN", set_rows("static", "queries", slice(3, 5), float("nan")),
          "2 non-finite vectors (NaN or inf)"),
]
MODEL_FAULTS = [
    Fault("weights missing", delete("model/weights.safetensors"), "weights.safetensors: missing"),
    Fault("weights truncated", truncate("model/weights.safetensors"), "weights.safetensors: damaged"),
    Fault("weights random behind an intact header", scramble("model/weights.safetensors", skip=2000),
          "weights.safetensors: damaged (its sha256 differs"),
    Fault("NaN weights (sealed)", nan_weights, "hold NaN or inf"),
    Fault("LightGBM binary.txt truncated", truncate("model/variants/lightgbm/binary.txt"), "binary.txt: damaged"),
    Fault("stacked head truncated", truncate("model/stack.txt", keep=0.9), "stack.txt: damaged"),
    Fault("lexical arrays.npz truncated", truncate("stores/lexical/model/arrays.npz"), "arrays.npz: damaged"),
    Fault("spec.experts reordered", edit_config(_reorder), "config.json: damaged (its sha256 differs"),
    Fault("spec.experts reordered (sealed)", edit_config(_reorder, sealed=True), "spec.experts reordered or edited?"),
    Fault("digests.json deleted", delete("model/digests.json"), "digests.json: missing (the folder was not completely"),
]


def _first(frame: pl.DataFrame, column: str, value: object, where: pl.Expr) -> pl.DataFrame:
    """``value`` in ``column`` of the first row matching ``where``."""
    first = frame.with_row_index("_i").filter(where)["_i"][0]
    return frame.with_columns(pl.when(pl.int_range(pl.len()) == first).then(pl.lit(value)).otherwise(pl.col(column))
                              .alias(column))


BY_ID = pl.col("query_id").is_not_null()
PAIRS_FAULTS = [
    PairsFault("item_id as integers", lambda f: f.with_columns(item_id=pl.int_range(pl.len())),
               "column 'item_id' has type Int64, expected string"),
    PairsFault("query_id as floats", lambda f: f.with_columns(query_id=pl.int_range(pl.len()).cast(pl.Float64)),
               "column 'query_id' has type Float64, expected string"),
    PairsFault("market as integers", lambda f: f.with_columns(market=pl.lit(1)),
               "column 'market' has type Int32, expected string"),
    PairsFault("query as a list", lambda f: f.with_columns(query=pl.concat_list(pl.col("query"))),
               "column 'query' has type List(String), expected string"),
    PairsFault("stored query_id with another text", lambda f: _first(f, "query", "blue kettle", BY_ID),
               "1 row(s) give a query_id of the dataset with another query text than the dataset's (row 0:"),
    PairsFault("query_id with another market", lambda f: _first(f, "market", "VN", BY_ID & (pl.col("market") != "VN")),
               "give a query_id of the dataset with another market than the dataset's"),
    PairsFault("blank query text", lambda f: _first(f, "query", "   ", ~BY_ID), "1 row(s) have a blank query text (row"),
]
