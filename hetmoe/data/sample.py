"""A smaller slice of a dataset: some queries per market, their judgments and the items they judge.

For trying the pipeline (or benchmarking it on a CPU budget) on a big catalog: each (market, split) keeps the same
share of its queries, so split proportions and per-market base rates are preserved. Deterministic for a seed.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from hetmoe.data.dataset import load_dataset, write_dataset
from hetmoe.errors import HetmoeError


def sample_dataset(src: str | Path, out: str | Path, queries_per_market: int, seed: int = 0) -> Path:
    """Write to ``out`` a dataset with about ``queries_per_market`` judged queries per market (and their items).

    Each split keeps ceil(its size x share) queries, so a market may get up to one extra query per split.
    """
    if queries_per_market < 1:
        raise HetmoeError(f"--queries-per-market must be >= 1, got {queries_per_market}")
    dataset = load_dataset(src)
    judged = (
        dataset.judgments.select("query_id", "split").unique("query_id")
        .join(dataset.queries.select("query_id", "market"), on="query_id")
    )
    share = (pl.lit(queries_per_market) / pl.len().over("market")).clip(upper_bound=1.0)
    keep = (
        judged.with_columns(key=pl.col("query_id").hash(seed), share=share)
        .with_columns(rank=pl.col("key").rank("ordinal").over("market", "split"), n=pl.len().over("market", "split"))
        .filter(pl.col("rank") <= (pl.col("n") * pl.col("share")).ceil())
        .select("query_id")
    )
    judgments = dataset.judgments.join(keep, on="query_id", how="semi")
    queries = dataset.queries.join(keep, on="query_id", how="semi")
    items = dataset.items.join(judgments.select("item_id").unique(), on="item_id", how="semi")
    return write_dataset(out, items, queries, judgments)
