"""Import relevance logs of any shape (CSV/TSV/Parquet) with an explicit column mapping.

The pairs file holds one judged (query, item) per row: query text, item id, label, and optionally a query id,
item title/text (if there is no separate items file), market, language and split. Rows repeating a (query, item)
pair are aggregated: label = their mean grade, relevant recomputed from it (mean label >= ``--relevant-min``, or with a
mapped 0/1 relevant column a majority of the repeats: mean flag >= 0.5); a pair judged in two splits is refused.
Without a query id column, ids are a stable hash of market + query text. Without a split column,
queries are assigned to train/valid/test by a stable hash rank (``--valid-fraction``, ``--test-fraction``).
relevant = label >= ``--relevant-min`` unless a 0/1 relevant column is mapped.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from hetmoe.data.dataset import write_dataset
from hetmoe.data.importing import aggregate_repeats, carve_splits, collect, require_columns, scan_table
from hetmoe.errors import HetmoeError

log = logging.getLogger(__name__)
SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid", "validation": "valid",
                 "dev": "valid", "test": "test", "eval": "test"}


@dataclass(frozen=True)
class Mapping:
    """Which source column plays which role; None: absent (a default or derived value is used)."""

    query: str = "query"
    item_id: str = "item_id"
    label: str = "label"
    title: str | None = "title"
    query_id: str | None = None
    text: str | None = None
    market: str | None = None
    lang: str | None = None
    split: str | None = None
    relevant: str | None = None
    # The catalog file's own column names, when they differ from the log's (a catalog keyed product_id, a log sku).
    items_item_id: str | None = None
    items_title: str | None = None
    items_text: str | None = None
    items_market: str | None = None

    def catalog(self) -> Mapping:
        """The mapping that reads the items file: its own column names, else the log's."""
        return Mapping(query=self.query, label=self.label, item_id=self.items_item_id or self.item_id,
                       title=self.items_title or self.title, text=self.items_text or self.text,
                       market=self.items_market or self.market)


def _mapped(mapping: Mapping, *roles: str) -> dict[str, str]:
    return {getattr(mapping, r): f"--{r.replace('_', '-')}-col" for r in roles if getattr(mapping, r) is not None}


def import_table(pairs: Path, out: Path, mapping: Mapping, items_file: Path | None = None, default_market: str = "default",
                 default_lang: str | None = None, relevant_min: float = 1.0, valid_fraction: float = 0.15,
                 test_fraction: float = 0.15, sep: str = ",", encoding: str = "utf-8") -> Path:
    """Convert a pairs log (+ optional item catalog) into a dataset folder at ``out`` (both files in ``encoding``)."""
    src = scan_table(pairs, sep, encoding)
    require_columns(src, pairs, _mapped(mapping, "query", "item_id", "label", "query_id", "market", "lang", "split", "relevant"))
    if items_file is None:
        require_columns(src, pairs, _mapped(mapping, "title", "text") or {"title": "--title-col (or pass --items)"})
    market = pl.col(mapping.market).cast(pl.String) if mapping.market else pl.lit(default_market)
    lang = pl.col(mapping.lang).cast(pl.String) if mapping.lang else pl.lit(default_lang, pl.String)
    rows = collect(src.select(
        pl.col(mapping.query).cast(pl.String).str.strip_chars().alias("text"),
        pl.col(mapping.item_id).cast(pl.String).alias("item_id"),
        pl.col(mapping.label).cast(pl.Float64).alias("label"),
        market.alias("market"), lang.alias("lang"),
        *([pl.col(mapping.query_id).cast(pl.String).alias("query_id")] if mapping.query_id else []),
        *([pl.col(mapping.split).cast(pl.String).str.to_lowercase().str.strip_chars().alias("split")] if mapping.split else []),
        *([pl.col(mapping.relevant).cast(pl.Int8).alias("relevant")] if mapping.relevant else []),
        *([pl.col(mapping.title).cast(pl.String).alias("title")] if items_file is None and mapping.title else []),
        *([pl.col(mapping.text).cast(pl.String).alias("item_text")] if items_file is None and mapping.text else []),
    ), pairs)
    rows = rows.filter((pl.col("text").str.len_chars() > 0) & pl.col("item_id").is_not_null() & pl.col("label").is_not_null())
    if rows.height == 0:
        raise HetmoeError(f"{pairs}: no usable rows (every row lacks a query text, item id or label); check the column mapping")
    if "query_id" not in rows.columns:
        rows = rows.with_columns(("q_" + (pl.col("market") + "\t" + pl.col("text")).map_elements(
            lambda key: hashlib.md5(key.encode()).hexdigest()[:16], return_dtype=pl.String)).alias("query_id"))
    if "split" in rows.columns:
        bad = rows.filter(~pl.col("split").is_in(list(SPLIT_ALIASES)))["split"].unique().head(3).to_list()
        if bad:
            raise HetmoeError(f"{pairs}: column '{mapping.split}' has unknown split value(s) {', '.join(map(str, bad))}; use train/valid/test (or dev/validation/eval)")
        rows = rows.with_columns(pl.col("split").replace_strict(SPLIT_ALIASES))
    else:
        rows = rows.join(carve_splits(rows["query_id"], valid_fraction, test_fraction), on="query_id", how="left")

    flagged = "relevant" in rows.columns
    judgments = aggregate_repeats(rows, pairs, [pl.col("relevant").mean()] if flagged else [])
    relevant = pl.col("relevant") >= 0.5 if flagged else pl.col("label") >= relevant_min
    judgments = judgments.select("query_id", "item_id", "label", relevant.cast(pl.Int8).alias("relevant"), "split")
    queries = rows.unique("query_id", keep="first", maintain_order=True).select("query_id", "text", "market", "lang")
    items = _items(rows, mapping, items_file, sep, encoding)
    if rows["lang"].null_count() == rows.height:  # no language known: leave the optional column out
        queries, items = queries.drop("lang"), items.drop("lang")
    log.info("import: %d items, %d queries, %d judgments -> %s", items.height, queries.height, judgments.height, out)
    return write_dataset(out, items, queries, judgments)


def _items(rows: pl.DataFrame, mapping: Mapping, items_file: Path | None, sep: str, encoding: str) -> pl.DataFrame:
    """The catalog: from the items file when given (market from its column or the pairs), else from the pairs rows."""
    first = rows.unique("item_id", keep="first", maintain_order=True)
    if items_file is None:
        title = pl.col("title") if "title" in rows.columns else pl.col("item_text")
        text = [pl.col("item_text").alias("text")] if "title" in rows.columns and "item_text" in rows.columns else []
        return first.select("item_id", title.str.strip_chars().alias("title"), *text, "market", "lang")
    mapping = mapping.catalog()
    src = scan_table(items_file, sep, encoding)
    require_columns(src, items_file, {column: f"--items-{role}-col" for column, role in (
        (mapping.item_id, "id"), (mapping.title, "title"), (mapping.text, "text")) if column is not None})
    cat = collect(src.select(
        pl.col(mapping.item_id).cast(pl.String).alias("item_id"),
        pl.col(mapping.title or "title").cast(pl.String).str.strip_chars().alias("title"),
        *([pl.col(mapping.text).cast(pl.String).alias("text")] if mapping.text else []),
        *([pl.col(mapping.market).cast(pl.String).alias("market")] if mapping.market and mapping.market in src.collect_schema().names() else []),
    ), items_file).unique("item_id", keep="first", maintain_order=True)
    if "market" not in cat.columns:
        cat = cat.join(first.select("item_id", "market"), on="item_id", how="left").with_columns(
            pl.col("market").fill_null(rows["market"][0]))
    return cat.join(first.select("item_id", "lang"), on="item_id", how="left")
