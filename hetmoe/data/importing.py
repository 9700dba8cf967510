"""Helpers shared by the importers: read a CSV/TSV/Parquet file, require mapped columns, carve splits by query,
aggregate repeated judgments."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from hetmoe.errors import HetmoeError

log = logging.getLogger(__name__)


def scan_table(path: str | Path, sep: str = ",") -> pl.LazyFrame:
    """A lazy frame over a Parquet, CSV or TSV file (by suffix), so large logs are filtered before loading."""
    path = Path(path)
    if not path.is_file():
        raise HetmoeError(f"{path}: file not found; pass an existing CSV/TSV/Parquet file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pl.scan_parquet(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return pl.scan_csv(path, separator="\t" if suffix == ".tsv" else sep, infer_schema_length=10_000)
    raise HetmoeError(f"{path}: unknown file type '{suffix}'; use .parquet, .csv or .tsv")


def require_columns(frame: pl.LazyFrame, path: str | Path, wanted: dict[str, str]) -> None:
    """Fail with one line if a mapped column is absent; ``wanted`` maps column name -> the option that names it."""
    have = frame.collect_schema().names()
    for column, option in wanted.items():
        if column not in have:
            raise HetmoeError(f"{path}: no column '{column}' (has: {', '.join(have)}); name the right one with {option}")


def _rank(query_id: str) -> str:
    return hashlib.md5(query_id.encode()).hexdigest()  # stable across runs and machines, unlike hash()


def carve_splits(query_ids: pl.Series, valid: float, test: float = 0.0) -> pl.DataFrame:
    """Assign each query to train/valid/test by a stable hash rank: the same query always lands in the same split.

    Each non-zero share gets at least one query, so small logs still yield a valid split.
    """
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise HetmoeError(f"split shares valid={valid}, test={test} are out of range; use shares in [0, 1) that sum below 1")
    ids = sorted(set(query_ids.drop_nulls().to_list()), key=_rank)
    n = len(ids)
    n_valid = max(1, round(n * valid)) if valid > 0 and n > 1 else 0
    n_test = max(1, round(n * test)) if test > 0 and n > 2 else 0
    splits = ["valid"] * n_valid + ["test"] * n_test + ["train"] * (n - n_valid - n_test)
    return pl.DataFrame({"query_id": ids, "split": splits}, schema={"query_id": pl.String, "split": pl.String})


def aggregate_repeats(rows: pl.DataFrame, source: str | Path, extra: Sequence[pl.Expr] = ()) -> pl.DataFrame:
    """One judgment per (query_id, item_id): real logs judge some pairs twice; the label becomes their mean grade.

    ``rows`` has query_id, item_id, label and split; ``extra`` adds aggregations (e.g. of a relevant flag) for the
    caller to turn into ``relevant`` with its own rule. A pair judged in two splits would leak a query across splits,
    so it is refused rather than assigned to one of them.
    """
    grouped = rows.group_by("query_id", "item_id", maintain_order=True).agg(
        pl.col("label").mean(), pl.col("split").first(), *extra,
        pl.col("split").n_unique().alias("_splits"), pl.len().alias("_rows"))
    spanning = grouped.filter(pl.col("_splits") > 1)
    if spanning.height:
        sample = ", ".join(f"{q} / {i}" for q, i in spanning.select("query_id", "item_id").head(3).iter_rows())
        raise HetmoeError(f"{source}: {spanning.height} (query, item) pair(s) are judged in more than one split "
                          f"(e.g. {sample}); a query belongs to one split, fix the split column")
    repeated = grouped.filter(pl.col("_rows") > 1)
    if repeated.height:
        log.info("%s: %d row(s) repeat a judged (query, item) pair; %d pair(s) aggregated (label = mean grade)",
                 source, int(repeated["_rows"].sum()) - repeated.height, repeated.height)
    return grouped.drop("_splits", "_rows")
