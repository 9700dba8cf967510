"""The demo generator: deterministic, valid, multilingual, and a task that is neither trivial nor impossible."""
from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.dataset import load_dataset
from hetmoe.data.demo import MARKETS, generate_demo
from hetmoe.data.demo_grammar import strip_diacritics
from hetmoe.data.demo_vocab import ITEMS_PER_MARKET, QUERIES_PER_MARKET
from hetmoe.data.validate import validate
from hetmoe.errors import HetmoeError

TABLES = ("items", "queries", "judgments")


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default-size demo (it takes about a second)."""
    return generate_demo(tmp_path_factory.mktemp("demo") / "full")


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    a = generate_demo(tmp_path / "a", items_per_market=60, queries_per_market=12, seed=7)
    b = generate_demo(tmp_path / "b", items_per_market=60, queries_per_market=12, seed=7)
    c = generate_demo(tmp_path / "c", items_per_market=60, queries_per_market=12, seed=8)
    for table in TABLES:
        assert (a / f"{table}.parquet").read_bytes() == (b / f"{table}.parquet").read_bytes()
        assert not pl.read_parquet(a / f"{table}.parquet").equals(pl.read_parquet(c / f"{table}.parquet"))


def test_default_demo_is_valid_and_sized(full: Path) -> None:
    assert validate(full) == []
    data = load_dataset(full)
    assert data.markets == sorted(MARKETS)
    assert data.items.height == 6 * ITEMS_PER_MARKET and data.queries.height == 6 * QUERIES_PER_MARKET
    assert 18 * data.queries.height <= data.judgments.height <= 26 * data.queries.height
    langs = dict(data.queries.select("market", "lang").unique().iter_rows())
    assert langs == {"ID": "id", "TH": "th", "VN": "vi", "MY": "ms", "PH": "fil", "SG": "en"}
    assert data.items["item_id"].n_unique() == data.items.height
    assert 0.5 < data.items["text"].is_not_null().mean() < 0.9  # the optional text column is exercised both ways


def test_labels_positives_and_splits(full: Path) -> None:
    data = load_dataset(full)
    j = data.judgments.join(data.queries.select("query_id", "market"), on="query_id")
    assert set(j["label"].unique().to_list()) == {0.0, 1.0, 2.0, 3.0}
    assert (j["relevant"] == (j["label"] >= 2).cast(pl.Int8)).all()
    rates = j.group_by("market").agg(pl.col("relevant").cast(pl.Float64).mean())["relevant"]
    assert rates.min() > 0.10 and rates.max() < 0.30
    per_query = j.group_by("query_id").agg(pl.len().alias("n"), pl.col("split").n_unique().alias("splits"), (pl.col("label") == 1).sum().alias("hard"))
    assert per_query["n"].min() >= 20 and per_query["n"].max() <= 25
    assert (per_query["splits"] == 1).all()
    assert per_query["hard"].mean() > 3  # hard negatives: same category, one conflicting attribute
    shares = data.judgments.unique("query_id")["split"].value_counts(normalize=True)
    share = dict(zip(shares["split"], shares["proportion"]))
    assert share["train"] == pytest.approx(0.70, abs=0.02) and share["valid"] == pytest.approx(0.15, abs=0.02)


def test_markets_write_their_own_language_and_script(full: Path) -> None:
    queries = load_dataset(full).queries
    items = load_dataset(full).items
    thai = re.compile("[\u0e00-\u0e7f]")
    th_titles = items.filter(pl.col("market") == "TH")["title"]
    assert th_titles.map_elements(lambda t: bool(thai.search(t)), return_dtype=pl.Boolean).mean() > 0.9
    sg = queries.filter(pl.col("market") == "SG")["text"]
    assert sg.map_elements(lambda t: t.isascii(), return_dtype=pl.Boolean).mean() > 0.95
    vn = queries.filter(pl.col("market") == "VN")["text"].to_list()
    plain = sum(t == strip_diacritics(t) for t in vn) / len(vn)
    assert 0.3 < plain < 0.9  # many typed without diacritics, many with
    id_queries = " ".join(queries.filter(pl.col("market") == "ID")["text"].to_list())
    assert re.search(r"\b(black|white|red|blue|men|women|kids|bag|case)\b", id_queries)  # code-mixing with English
    assert re.search(r"\b1,8 Liter\b", " ".join(items.filter(pl.col("market") == "ID")["title"]))  # decimal comma


def _overlap_auc(data_root: Path, market: str) -> float:
    """ROC AUC of character-trigram Jaccard between query and title, as a rank statistic (Mann-Whitney)."""
    data = load_dataset(data_root)
    j = data.judgments.join(data.queries.filter(pl.col("market") == market).select("query_id", pl.col("text").alias("q")), on="query_id").join(
        data.items.select("item_id", "title"), on="item_id")
    grams: dict[str, set[str]] = {}
    for text in set(j["q"]) | set(j["title"]):
        padded = f" {text.lower()} "
        grams[text] = {padded[i:i + 3] for i in range(len(padded) - 2)}
    overlap = [len(grams[q] & grams[t]) / len(grams[q] | grams[t]) for q, t in zip(j["q"], j["title"])]
    ranked = j.select("relevant").with_columns(pl.Series("rank", overlap).rank())
    n_pos = int(ranked["relevant"].sum())
    n_neg = ranked.height - n_pos
    return (float(ranked.filter(pl.col("relevant") == 1)["rank"].sum()) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@pytest.mark.parametrize("market", ["SG", "TH"])
def test_string_overlap_does_not_solve_it(full: Path, market: str) -> None:
    """Hard negatives share most words with the query: character overlap ranks far from perfectly, yet above chance."""
    assert 0.6 < _overlap_auc(full, market) < 0.85


def test_too_small_or_unknown_market_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HetmoeError, match="too small"):
        generate_demo(tmp_path, items_per_market=5)
    with pytest.raises(HetmoeError, match="unknown demo market"):
        generate_demo(tmp_path, markets=["XX"])


def test_cli_demo_then_validate_prints_summary(tmp_path: Path) -> None:
    out = tmp_path / "d"
    runner = CliRunner()
    made = runner.invoke(app, ["data", "demo", "--out", str(out), "--items-per-market", "40", "--queries-per-market", "10", "--market", "th", "--market", "SG"])
    assert made.exit_code == 0, made.output
    checked = runner.invoke(app, ["data", "validate", str(out)])
    assert checked.exit_code == 0, checked.output
    assert "TH" in checked.stdout and "SG" in checked.stdout and "ok:" in checked.stdout
    as_json = runner.invoke(app, ["data", "validate", str(out), "--json"])
    assert '"market": "TH"' in as_json.stdout and '"valid": true' in as_json.stdout
