"""Reading the dataset contract: a folder with items/queries/judgments Parquet files.

Columns (required unless marked optional):
- ``items.parquet``: item_id (str), title (str), text (str, optional), market (str), lang (str, optional)
- ``queries.parquet``: query_id (str), text (str), market (str), lang (str, optional)
- ``judgments.parquet``: query_id (str), item_id (str), label (float), relevant (int 0/1), split (train|valid|test)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from hetmoe.errors import HetmoeError
from hetmoe.files import disk_errors

STRING, FLOAT, INT = "string", "float", "int"
SCHEMA: dict[str, dict[str, str]] = {
    "items": {"item_id": STRING, "title": STRING, "market": STRING},
    "queries": {"query_id": STRING, "text": STRING, "market": STRING},
    "judgments": {"query_id": STRING, "item_id": STRING, "label": FLOAT, "relevant": INT, "split": STRING},
}
OPTIONAL: dict[str, dict[str, str]] = {
    "items": {"text": STRING, "lang": STRING},
    "queries": {"lang": STRING},
    "judgments": {},
}
SPLITS = ("train", "valid", "test")


def _kind(dtype: pl.DataType) -> str:
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return STRING
    if dtype.is_float():
        return FLOAT
    if dtype.is_integer() or dtype == pl.Boolean:
        return INT
    return str(dtype)


def _coerce(frame: pl.DataFrame, table: str, path: Path) -> pl.DataFrame:
    """Check required columns and kinds, then cast to canonical dtypes (str / float64 / int8)."""
    wanted = {**SCHEMA[table], **{c: k for c, k in OPTIONAL[table].items() if c in frame.columns}}
    missing = [c for c in SCHEMA[table] if c not in frame.columns]
    if missing:
        raise HetmoeError(
            f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(frame.columns)}); "
            f"{table}.parquet needs {', '.join(SCHEMA[table])}"
        )
    casts = []
    for column, kind in wanted.items():
        have = _kind(frame.schema[column])
        ok = have == kind or (kind == FLOAT and have == INT)
        if not ok:
            raise HetmoeError(f"{path}: column '{column}' has type {frame.schema[column]}, expected {kind}")
        target = {STRING: pl.String, FLOAT: pl.Float64, INT: pl.Int8}[kind]
        casts.append(pl.col(column).cast(target))
    return frame.with_columns(casts)


@dataclass(frozen=True)
class Dataset(os.PathLike[str]):
    """The three tables of a dataset folder, with canonical dtypes.

    A dataset is path-like (its folder), so a command that has validated one passes it where a dataset folder is
    taken, and :func:`hetmoe.data.validate.check_dataset` returns a ``checked`` one as it is instead of reading and
    validating the folder again.
    """

    root: Path
    items: pl.DataFrame
    queries: pl.DataFrame
    judgments: pl.DataFrame
    checked: bool = field(default=False, compare=False)

    def __fspath__(self) -> str:
        return str(self.root)

    def __str__(self) -> str:  # messages that name "the dataset folder" name its folder, not its frames
        return str(self.root)

    @property
    def markets(self) -> list[str]:
        return sorted(self.queries["market"].unique().to_list())

    def item_texts(self) -> pl.DataFrame:
        """item_id and the text an expert encodes for it: title, plus the optional text after a newline."""
        if "text" in self.items.columns:
            body = pl.col("text").fill_null("").str.strip_chars()
            text = pl.when(body.str.len_chars() > 0).then(pl.col("title") + "\n" + body).otherwise(pl.col("title"))
        else:
            text = pl.col("title")
        return self.items.select("item_id", text.alias("text"))

    def query_texts(self) -> pl.DataFrame:
        return self.queries.select("query_id", "text")

    def has_split(self, split: str) -> bool:
        return bool((self.judgments["split"] == split).any())


def read_table(root: Path, table: str) -> pl.DataFrame:
    path = Path(root) / f"{table}.parquet"
    frame = read_parquet(path, "a dataset folder needs items.parquet, queries.parquet and judgments.parquet")
    return _coerce(frame, table, path)


def read_parquet(path: Path, needs: str) -> pl.DataFrame:
    """The Parquet file, or one line saying it is missing (then ``needs``: what the caller wants there) or corrupt."""
    if not path.is_file():
        raise HetmoeError(f"{path}: file not found; {needs}")
    try:
        return pl.read_parquet(path)
    except Exception as err:  # polars raises several types for a corrupt file
        raise HetmoeError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from err


def load_dataset(root: str | os.PathLike[str]) -> Dataset:
    """Read a dataset folder, checking columns and types (full checks: :func:`hetmoe.data.validate.validate`); a
    :class:`Dataset` given is returned as it is."""
    if isinstance(root, Dataset):
        return root
    root = Path(root)
    if not root.is_dir():
        raise HetmoeError(f"{root}: no such dataset folder; create one with 'hetmoe data demo --out {root}'")
    return Dataset(root, read_table(root, "items"), read_table(root, "queries"), read_table(root, "judgments"))


def write_dataset(root: str | Path, items: pl.DataFrame, queries: pl.DataFrame, judgments: pl.DataFrame) -> Path:
    """Write the three tables with canonical dtypes, so generators and importers all produce the same contract."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tables = {table: _coerce(frame, table, root / f"{table}.parquet")
              for table, frame in (("items", items), ("queries", queries), ("judgments", judgments))}
    written: list[Path] = []
    try:
        with disk_errors(root):
            for table, frame in tables.items():
                written.append(root / f".{table}.parquet.tmp")
                frame.write_parquet(written[-1])
    except BaseException:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        raise
    for tmp in written:  # only once all three are written: a crash or a full disk never leaves half a dataset behind
        tmp.replace(root / tmp.name[1:].removesuffix(".tmp"))
    return root
