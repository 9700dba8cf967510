"""The pairs file of ``hetmoe score``: columns checked, each row's query resolved, rows cut into blocks of whole queries.

Why whole queries per block: the head's per-query features (a cosine's z-score and rank among the query's candidates)
are taken over the query's pairs, as in training and ``eval``; a query split across blocks would be scored against
half its list. A query is a (query, market) group of rows: its ``query_id`` when the row has one, else its text.

How a row's query is resolved: a ``query_id`` of the dataset the model's stores were embedded from uses the stored
query vectors, as ``eval`` does, so the scores equal eval's; any other row needs a text (its ``query``, else the
``--data`` dataset's text for its id), which is encoded. Its market is the row's ``market``, else the dataset's for its
id. Rows whose query or market cannot be resolved stay in the output, with a null score.

What is refused, in one line naming a row and the count (as strictly as ``hetmoe data validate`` checks a dataset):
id, text and market columns that are not strings (ids given as numbers would be cast and match nothing), blank query
texts, and a ``query_id`` of the dataset given with another text or market than the dataset's (its stored vectors
and the row's text would be mixed in one score).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl

from hetmoe.data.dataset import STRING, _kind, read_parquet
from hetmoe.errors import HetmoeError

QUERY_ID, QUERY, MARKET, ITEM = "query_id", "query", "market", "item_id"
OUTPUT = ("score", "experts")
# Helper columns the driver adds (dropped from the output): text, market, stored?, group key, block, input row.
TEXT, MKT, STORED, KEY, BLOCK, ROW = "_text", "_market", "_stored", "_key", "_block", "_row"
HELPERS = (TEXT, MKT, STORED, KEY, BLOCK, ROW)
SHOWN = 60  # characters of a value an error shows


def read_pairs(path: str | Path) -> pl.DataFrame:
    """The pairs table with its id and text columns as strings; refuses a file that cannot be scored."""
    path = Path(path)
    if not path.is_file():
        raise HetmoeError(f"{path}: pairs file not found; pass a Parquet file with query_id or query, market, item_id")
    frame = read_parquet(path, "pass a Parquet file with query_id or query, market, item_id")
    if frame.height == 0:
        raise HetmoeError(f"{path}: no pairs to score")
    reserved = [c for c in frame.columns if c.startswith("_") or c in OUTPUT]
    if reserved:
        raise HetmoeError(f"{path}: column(s) {reserved} are written by score; rename them in the pairs file")
    if ITEM not in frame.columns or not {QUERY_ID, QUERY} & set(frame.columns):
        raise HetmoeError(f"{path}: needs an item_id column and a query_id or query column (has {frame.columns})")
    if QUERY_ID not in frame.columns and MARKET not in frame.columns:
        raise HetmoeError(f"{path}: rows without query_id need a market column (the model routes by market)")
    for column in (c for c in (QUERY_ID, QUERY, MARKET, ITEM) if c in frame.columns):
        dtype = frame.schema[column]
        if _kind(dtype) != STRING and dtype != pl.Null:
            sample = ", ".join(repr(v)[:SHOWN] for v in frame[column].drop_nulls().head(3).to_list())
            raise HetmoeError(f"{path}: column '{column}' has type {dtype}, expected string (e.g. {sample}); cast it to "
                              "string in the file: score does not guess ids or texts from other types")
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in (QUERY_ID, QUERY, MARKET, ITEM) if c in frame.columns)
    if QUERY in frame.columns:
        _refuse(frame.with_row_index(ROW).filter(pl.col(QUERY).str.strip_chars() == ""), str(path),
                "have a blank query text", "give them a text, or a query_id and a null query")
    return frame


def fingerprint(path: str | Path) -> str:
    """sha256 of the file's bytes: a resumed run must score the very same pairs."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(frame: pl.DataFrame, queries: pl.DataFrame | None, stored_ids: np.ndarray | None) -> pl.DataFrame:
    """Add each row's query text, market, whether its vectors are stored, and its query key (null: unknown query).

    ``queries``: the dataset's (query_id, text, market), looked up by id; ``stored_ids``: ids with stored vectors.
    """
    has_id, cols = QUERY_ID in frame.columns, frame.columns
    if has_id and queries is not None:
        lookup = queries.select(pl.col(QUERY_ID).cast(pl.String), pl.col("text").alias("_dt"), pl.col(MARKET).alias("_dm"))
        frame = frame.join(lookup, on=QUERY_ID, how="left", maintain_order="left")
        for given, known, what in ((QUERY, "_dt", "query text"), (MARKET, "_dm", "market")):
            if given in cols:
                conflict = frame.with_row_index(ROW).filter(pl.col(given) != pl.col(known))
                _refuse(conflict, "the pairs file", f"give a query_id of the dataset with another {what} than the "
                        "dataset's", f"drop the {given} of those rows, or their query_id to score the row's own {what}",
                        known)
    else:
        frame = frame.with_columns(_dt=pl.lit(None, pl.String), _dm=pl.lit(None, pl.String))
    text = pl.coalesce(pl.col(QUERY) if QUERY in cols else pl.lit(None, pl.String), pl.col("_dt"))
    market = pl.coalesce(pl.col(MARKET) if MARKET in cols else pl.lit(None, pl.String), pl.col("_dm"))
    qid = pl.col(QUERY_ID) if has_id else pl.lit(None, pl.String)
    stored = qid.is_in(pl.Series(stored_ids, dtype=pl.String).implode()).fill_null(False) if has_id and stored_ids is not None else pl.lit(False)
    frame = frame.with_columns(text.alias(TEXT), market.alias(MKT), stored.alias(STORED))
    key = (pl.when(qid.is_not_null() & (pl.col(STORED) | pl.col(TEXT).is_not_null())).then(pl.lit("i:") + qid)
           .when(pl.col(TEXT).is_not_null()).then(pl.lit("t:") + pl.col(TEXT)))
    return frame.with_columns(key.alias(KEY)).drop("_dt", "_dm")


def _refuse(bad: pl.DataFrame, where: str, problem: str, fix: str, known: str | None = None) -> None:
    """One line when ``bad`` (rows with their ``ROW`` index) is not empty: their count, the first one's index and
    values (and its dataset value, column ``known``), then how to fix it."""
    if bad.height:
        first = bad.row(0, named=True)
        shown = ", ".join(f"{c} {str(first[c])[:SHOWN]!r}" for c in (QUERY_ID, QUERY, MARKET) if c in first)
        dataset = f"; the dataset's: {str(first[known])[:SHOWN]!r}" if known else ""
        raise HetmoeError(f"{where}: {bad.height} row(s) {problem} (row {first[ROW]}: {shown}{dataset}); {fix}")


def plan_blocks(frame: pl.DataFrame, block_pairs: int) -> pl.DataFrame:
    """Add the block of each row: whole queries, in order of first appearance, about ``block_pairs`` pairs a block;
    rows are sorted by block, then input order (an input grouped by query keeps its order). ``_row`` keeps each row's
    position in the pairs file: a part records them, so resume knows a part holds its block's rows."""
    if block_pairs < 1:
        raise HetmoeError(f"--block-pairs {block_pairs}: must be a positive number of pairs, e.g. 50000")
    rows = frame.with_row_index(ROW)
    group = pl.concat_str([pl.col(KEY).fill_null(pl.lit("\x00") + pl.col(ROW).cast(pl.String)),
                           pl.col(MKT).fill_null("\x00")], separator="\x1f")
    rows = rows.with_columns(group.alias("_g"))
    sizes = rows.group_by("_g", maintain_order=True).agg(pl.len().alias("_n"))
    sizes = sizes.with_columns(((pl.col("_n").cum_sum() - pl.col("_n")) // block_pairs).cast(pl.Int64).alias(BLOCK))
    rows = rows.join(sizes.select("_g", BLOCK), on="_g", how="left")
    return rows.sort([BLOCK, ROW]).drop("_g")
