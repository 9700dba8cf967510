"""`hetmoe data sample`: a per-market slice that keeps split shares and only the judged items."""
from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.dataset import load_dataset
from hetmoe.data.demo import generate_demo
from hetmoe.data.sample import sample_dataset


def test_sample_caps_queries_per_market_and_keeps_judged_items(tmp_path: Path) -> None:
    src = generate_demo(tmp_path / "src", items_per_market=60, queries_per_market=40, seed=1, markets=["TH", "SG"])
    out = sample_dataset(src, tmp_path / "slice", queries_per_market=10)
    sliced = load_dataset(out)
    per_market = sliced.queries.group_by("market").len()
    assert per_market["len"].max() <= 12  # ceil per split may add one query per split
    assert per_market["len"].min() >= 10
    assert set(sliced.judgments["query_id"]) == set(sliced.queries["query_id"])
    assert set(sliced.items["item_id"]) == set(sliced.judgments["item_id"])
    assert set(sliced.judgments["split"]) == set(load_dataset(src).judgments["split"])
    again = sample_dataset(src, tmp_path / "again", queries_per_market=10)
    assert load_dataset(again).judgments.equals(sliced.judgments)
    other = sample_dataset(src, tmp_path / "other", queries_per_market=10, seed=7)
    assert not load_dataset(other).judgments.sort("query_id", "item_id").equals(sliced.judgments.sort("query_id", "item_id"))


def test_sample_cli_refuses_a_zero_cap(tmp_path: Path) -> None:
    src = generate_demo(tmp_path / "src", items_per_market=30, queries_per_market=10, seed=0, markets=["ID"])
    result = CliRunner().invoke(app, ["data", "sample", str(src), "--out", str(tmp_path / "s"), "--queries-per-market", "0"])
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception) and "queries-per-market" in str(result.exception)
    ok = CliRunner().invoke(app, ["data", "sample", str(src), "--out", str(tmp_path / "s"), "--queries-per-market", "5"])
    assert ok.exit_code == 0, ok.output
    assert 5 <= pl.read_parquet(tmp_path / "s" / "queries.parquet").height <= 5 + 3
