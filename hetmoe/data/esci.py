"""Import the Amazon ESCI Shopping Queries dataset (github.com/amazon-science/esci-data) into the dataset format.

Mapping: market = ``product_locale`` (us/es/jp; lang en/es/ja); label = ESCI gain E=3, S=2, C=1, I=0;
relevant = E or S (gain >= 2). An example repeating a (query, product) pair is aggregated: label = the mean gain,
relevant = mean gain >= 2 (so E + C counts as relevant, S + I does not); a pair in both official splits is refused.
Product ids repeat across locales with different listings, so ``item_id = "<locale>:<product_id>"`` and
``query_id = "<locale>:<query_id>"``; items are deduplicated per (product_id, locale). The official test split is kept; 'valid' is carved from train by query (stable hash rank).
An item's text joins brand, colour, bullet points and the HTML-stripped description (capped at 2,000 chars).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from hetmoe.data.dataset import write_dataset
from hetmoe.data.importing import aggregate_repeats, carve_splits, collect, require_columns, scan_table
from hetmoe.errors import HetmoeError

log = logging.getLogger(__name__)
ESCI_GAIN = {"E": 3.0, "S": 2.0, "C": 1.0, "I": 0.0}
RELEVANT_GAIN = 2.0  # E or S
LOCALE_LANG = {"us": "en", "es": "es", "jp": "ja"}
EXAMPLE_COLUMNS = ("query", "query_id", "product_id", "product_locale", "esci_label", "split")
PRODUCT_COLUMNS = ("product_id", "product_locale", "product_title")
TEXT_COLUMNS = ("product_brand", "product_color", "product_bullet_point", "product_description")
TEXT_CAP = 2000


def _item_text(columns: Sequence[str]) -> pl.Expr:
    parts = [pl.col(c).cast(pl.String).str.replace_all(r"<[^>]*>", " ").str.replace_all(r"\s+", " ").str.strip_chars()
             for c in TEXT_COLUMNS if c in columns]
    if not parts:
        return pl.lit(None, pl.String).alias("text")
    text = pl.concat_str(parts, separator="\n", ignore_nulls=True).str.slice(0, TEXT_CAP)
    return pl.when(text.str.len_chars() > 0).then(text).otherwise(None).alias("text")


def import_esci(examples: Path, products: Path, out: Path, small: bool = False, valid_fraction: float = 0.1,
                locales: Sequence[str] = ()) -> Path:
    """Convert ESCI examples + products files (Parquet or CSV) into a dataset folder at ``out``."""
    ex = scan_table(examples)
    require_columns(ex, examples, {c: "--examples (an ESCI shopping_queries_dataset_examples file)" for c in EXAMPLE_COLUMNS})
    if small:
        require_columns(ex, examples, {"small_version": "--examples (or drop --small)"})
        ex = ex.filter(pl.col("small_version") == 1)
    if locales:
        ex = ex.filter(pl.col("product_locale").is_in(list(locales)))
    locale = pl.col("product_locale").cast(pl.String)
    judged = collect(ex.select(
        (locale + ":" + pl.col("query_id").cast(pl.String)).alias("query_id"),
        pl.col("query").cast(pl.String).str.strip_chars().alias("text"),
        (locale + ":" + pl.col("product_id").cast(pl.String)).alias("item_id"),
        pl.col("product_id").cast(pl.String),
        locale.alias("market"),
        pl.col("esci_label").cast(pl.String),
        pl.col("split").cast(pl.String).alias("official"),
    ), examples)
    if judged.height == 0:
        raise HetmoeError(f"{examples}: no examples left after filtering (small={small}, locales={list(locales) or 'all'}); check the file and --locale")
    bad = judged.filter(~pl.col("esci_label").is_in(list(ESCI_GAIN)))["esci_label"].unique().head(3).to_list()
    if bad:
        raise HetmoeError(f"{examples}: column 'esci_label' has values other than E/S/C/I (e.g. {', '.join(map(str, bad))}); is this the ESCI examples file?")
    bad = judged.filter(~pl.col("official").is_in(["train", "test"]))["official"].unique().head(3).to_list()
    if bad:
        raise HetmoeError(f"{examples}: column 'split' has values other than train/test (e.g. {', '.join(map(str, bad))}); is this the ESCI examples file?")

    prod = scan_table(products)
    require_columns(prod, products, {c: "--products (an ESCI shopping_queries_dataset_products file)" for c in PRODUCT_COLUMNS})
    wanted = judged.select("product_id", pl.col("market").alias("product_locale")).unique()
    prod = prod.with_columns(pl.col("product_id").cast(pl.String), pl.col("product_locale").cast(pl.String))
    prod = collect(prod.join(wanted.lazy(), on=["product_id", "product_locale"], how="semi"), products)
    items = prod.unique(["product_id", "product_locale"], keep="first", maintain_order=True).select(
        (pl.col("product_locale") + ":" + pl.col("product_id")).alias("item_id"),
        pl.col("product_title").cast(pl.String).str.strip_chars().alias("title"),
        _item_text(prod.columns),
        pl.col("product_locale").alias("market"),
        pl.col("product_locale").replace_strict(LOCALE_LANG, default=None).alias("lang"),
    ).filter(pl.col("title").str.len_chars() > 0)

    before = judged.height
    judged = judged.filter(pl.col("item_id").is_in(items["item_id"].implode()) & (pl.col("text").str.len_chars() > 0))
    if judged.height < before:
        log.warning("dropped %d example(s) whose product is missing/untitled or whose query is empty",
                    before - judged.height)
    items = items.filter(pl.col("item_id").is_in(judged["item_id"].implode()))
    queries = judged.unique("query_id", keep="first", maintain_order=True).select(
        "query_id", "text", "market", pl.col("market").replace_strict(LOCALE_LANG, default=None).alias("lang"))

    gain = pl.col("esci_label").replace_strict(ESCI_GAIN, return_dtype=pl.Float64)
    graded = judged.select("query_id", "item_id", gain.alias("label"), pl.col("official").alias("split"))
    pairs = aggregate_repeats(graded, examples)
    carved = carve_splits(pairs.filter(pl.col("split") == "train")["query_id"], valid_fraction)
    judgments = pairs.rename({"split": "official"}).join(carved, on="query_id", how="left").select(
        "query_id", "item_id", "label",
        (pl.col("label") >= RELEVANT_GAIN).cast(pl.Int8).alias("relevant"),
        pl.when(pl.col("official") == "test").then(pl.lit("test")).otherwise(pl.col("split")).alias("split"),
    )
    log.info("ESCI: %d items, %d queries, %d judgments -> %s", items.height, queries.height, judgments.height, out)
    return write_dataset(out, items, queries, judgments)
