"""The demo generator: deterministic, valid, multilingual, and a task that is neither trivial nor impossible."""
from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.dataset import load_dataset
from hetmoe.data.demo import MARKETS, generate_demo, read_demo_record
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
    assert share["train"] == pytest.approx(0.45, abs=0.02) and share["valid"] == pytest.approx(0.15, abs=0.02)


def test_markets_write_their_own_language_and_script(full: Path) -> None:
    queries = load_dataset(full).queries
    items = load_dataset(full).items
    thai = re.compile("[\u0e00-\u0e7f]")
    th_titles = items.filter(pl.col("market") == "TH")["title"]
    # most Thai sellers write Thai; cross-border sellers write English (15% of listings in every market)
    assert 0.75 < th_titles.map_elements(lambda t: bool(thai.search(t)), return_dtype=pl.Boolean).mean() < 0.95
    sg = queries.filter(pl.col("market") == "SG")["text"]
    assert sg.map_elements(lambda t: t.isascii(), return_dtype=pl.Boolean).mean() > 0.95
    vn = queries.filter(pl.col("market") == "VN")["text"].to_list()
    plain = sum(t == strip_diacritics(t) for t in vn) / len(vn)
    assert 0.3 < plain < 0.9  # many typed without diacritics, many with
    id_queries = " ".join(queries.filter(pl.col("market") == "ID")["text"].to_list())
    assert re.search(r"\b(black|white|red|blue|men|women|kids|bag|case)\b", id_queries)  # code-mixing with English
    assert re.search(r"\b1,8 Liter\b", " ".join(items.filter(pl.col("market") == "ID")["title"]))  # decimal comma


def _compact(text: str) -> str:
    return re.sub(r"[\s-]", "", text.lower())


def test_a_typed_model_number_decides_relevance(full: Path) -> None:
    """Queries that type a model number (HD3128, hd 3128, hd-3128) find relevant only listings of that model."""
    data = load_dataset(full)
    models = {_compact(m) for t in data.items["title"] for m in re.findall(r"\b[A-Z]+(?:-[A-Z])?\d{3,4}\b", t)}
    assert len(models) > 20
    typed = {q: next((m for m in models if m in _compact(text)), None) for q, text in data.queries.select("query_id", "text").iter_rows()}
    typed = {q: m for q, m in typed.items() if m}
    assert 0.03 < len(typed) / data.queries.height < 0.3
    titles = dict(data.items.select("item_id", "title").iter_rows())
    judged = data.judgments.filter(pl.col("query_id").is_in(list(typed)))
    same, other = [], []  # relevance of judged listings of the typed model, and of listings of another model
    for q, i, rel in judged.select("query_id", "item_id", "relevant").iter_rows():
        title = _compact(titles[i])
        if typed[q] in title:
            same.append(rel)
        elif any(m in title for m in models):
            other.append(rel)
    assert len(same) > 50 and len(other) > 200
    # the typed model's listings are relevant unless another typed attribute conflicts (other colours, sizes of it)
    assert sum(same) / len(same) > 0.3 and sum(other) / len(other) < 0.05  # 3% label noise lifts a few others


def test_products_are_listed_by_several_sellers_in_their_own_words(full: Path) -> None:
    """Near-duplicate listings: many items have another listing of the same market whose title shares most of its
    character trigrams without being the same string."""
    items = load_dataset(full).items.filter(pl.col("market") == "ID")
    grams = [{t.lower()[i:i + 3] for i in range(len(t) - 2)} for t in items["title"]]
    titles = items["title"].to_list()
    near = [any(j != i and titles[j] != titles[i] and len(g & grams[j]) / len(g | grams[j]) > 0.7
                for j in range(len(grams))) for i, g in enumerate(grams)]
    assert 0.3 < sum(near) / len(near) < 0.95


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


def test_the_demo_records_its_seed_for_reports_and_forgets_it_when_the_tables_change(tmp_path: Path) -> None:
    data = generate_demo(tmp_path / "d", items_per_market=40, queries_per_market=10, seed=5, markets=["TH"])
    record = read_demo_record(data)
    assert record is not None and record["seed"] == 5 and record["markets"] == ["TH"]
    assert read_demo_record(tmp_path) is None  # no record: not a generated dataset
    queries = pl.read_parquet(data / "queries.parquet")
    queries.with_columns(pl.col("text") + "!").write_parquet(data / "queries.parquet")
    assert read_demo_record(data) is None  # the record describes other tables: the seed is no longer known
    (data / "demo.json").write_text("{not json")
    with pytest.raises(HetmoeError, match="demo.json: not valid JSON"):
        read_demo_record(data)


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
