"""`hetmoe data validate` and check_dataset: each kind of broken dataset is refused with one clear line."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from bad_data import Tables
from bad_data import write as _write
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.validate import check_dataset, summary, validate
from hetmoe.errors import HetmoeError


def _tables() -> Tables:
    """A tiny valid dataset: two markets, four queries, train/valid/test."""
    items = pl.DataFrame({"item_id": ["i1", "i2", "i3", "i4", "i5"], "title": ["black tee", "white tee", "เสื้อยืด สีดำ", "เสื้อยืด สีขาว", "red tee"],
                          "market": ["SG", "SG", "TH", "TH", "SG"], "lang": ["en", "en", "th", "th", "en"]})
    queries = pl.DataFrame({"query_id": ["q1", "q2", "q3", "q4"], "text": ["black tshirt", "white tee", "เสื้อยืดดำ", "red tee"],
                            "market": ["SG", "SG", "TH", "SG"]})
    judgments = pl.DataFrame({
        "query_id": ["q1", "q1", "q2", "q2", "q3", "q3", "q4"],
        "item_id": ["i1", "i2", "i1", "i2", "i3", "i4", "i5"],
        "label": [3.0, 1.0, 1.0, 3.0, 3.0, 0.0, 2.0],
        "relevant": pl.Series([1, 0, 0, 1, 1, 0, 1], dtype=pl.Int8),
        "split": ["train", "train", "valid", "valid", "train", "train", "test"],
    })
    return {"items": items, "queries": queries, "judgments": judgments}


def _broken(change: Callable[[Tables], None]) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        tables = _tables()
        change(tables)
        return _write(root, tables)
    return make


def _set(table: str, **columns: pl.Expr) -> Callable[[Tables], None]:
    def change(tables: Tables) -> None:
        tables[table] = tables[table].with_columns(**columns)
    return change


def _append(table: str, **row: object) -> Callable[[Tables], None]:
    def change(tables: Tables) -> None:
        tables[table] = pl.concat([tables[table], pl.DataFrame([row], schema=tables[table].schema)])
    return change


CASES = {
    # name: (how to break it, file, column, an offending id expected in the line)
    "label as text": (_set("judgments", label=pl.col("label").cast(pl.String)), "judgments.parquet", "label", "3.0"),
    "missing title": (lambda t: t.__setitem__("items", t["items"].drop("title")), "items.parquet", "title", None),
    "duplicate item id": (_append("items", item_id="i2", title="grey tee", market="SG", lang="en"), "items.parquet", "item_id", "i2"),
    "unknown item id": (_append("judgments", query_id="q1", item_id="ghost7", label=0.0, relevant=0, split="train"), "judgments.parquet", "item_id", "ghost7"),
    "unknown query id": (_append("judgments", query_id="q404", item_id="i1", label=0.0, relevant=0, split="train"), "judgments.parquet", "query_id", "q404"),
    "query in two splits": (_append("judgments", query_id="q1", item_id="i5", label=0.0, relevant=0, split="test"), "judgments.parquet", "split", "q1"),
    "empty query text": (_set("queries", text=pl.when(pl.col("query_id") == "q2").then(pl.lit("  ")).otherwise(pl.col("text"))), "queries.parquet", "text", "q2"),
    "empty title": (_set("items", title=pl.when(pl.col("item_id") == "i4").then(pl.lit("")).otherwise(pl.col("title"))), "items.parquet", "title", "i4"),
    "market without judgments": (_append("items", item_id="v1", title="áo thun", market="VN", lang="vi"), "judgments.parquet", "query_id", "VN"),
    "bad split name": (_set("judgments", split=pl.when(pl.col("query_id") == "q4").then(pl.lit("dev")).otherwise(pl.col("split"))), "judgments.parquet", "split", "dev"),
    "relevant not 0/1": (_set("judgments", relevant=pl.when(pl.col("query_id") == "q4").then(2).otherwise(pl.col("relevant")).cast(pl.Int8)), "judgments.parquet", "relevant", "q4 / i5"),
    "repeated pair": (_append("judgments", query_id="q3", item_id="i3", label=2.0, relevant=1, split="train"), "judgments.parquet", "item_id", "q3 / i3"),
    "null label": (_set("judgments", label=pl.when(pl.col("query_id") == "q2").then(None).otherwise(pl.col("label"))), "judgments.parquet", "label", "q2"),
    "no positives at all": (_set("judgments", relevant=pl.lit(0, pl.Int8)), "judgments.parquet", "relevant", None),
    "market without positives": (_set("judgments", relevant=pl.when(pl.col("query_id") == "q3").then(0).otherwise(pl.col("relevant")).cast(pl.Int8)), "judgments.parquet", "relevant", "TH"),
    "market without negatives": (_set("judgments", relevant=pl.when(pl.col("query_id") == "q3").then(1).otherwise(pl.col("relevant")).cast(pl.Int8)), "judgments.parquet", "relevant", "TH"),
    "valid without positives": (_set("judgments", relevant=pl.when(pl.col("split") == "valid").then(0).otherwise(pl.col("relevant")).cast(pl.Int8)), "judgments.parquet", "relevant", "valid"),
    "no valid split": (_set("judgments", split=pl.when(pl.col("split") == "valid").then(pl.lit("train")).otherwise(pl.col("split"))), "judgments.parquet", "split", None),
}


def test_tiny_dataset_is_valid(tmp_path: Path) -> None:
    root = _write(tmp_path, _tables())
    assert validate(root) == []
    assert check_dataset(root).markets == ["SG", "TH"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_refuses_with_one_line_naming_file_column_ids(tmp_path: Path, case: str) -> None:
    change, file, column, offending = CASES[case]
    root = _broken(change)(tmp_path / "data")
    result = CliRunner().invoke(app, ["data", "validate", str(root)])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:") and "problem(s) in" not in line]
    assert len(lines) == 1, result.stderr
    assert f"{file}: column '{column}'" in lines[0]
    if offending is not None:
        assert offending in lines[0]
    with pytest.raises(HetmoeError) as err:
        check_dataset(root)
    assert f"hetmoe data validate {root}" in str(err.value) and "\n" not in str(err.value)


def test_all_problems_are_listed_not_just_the_first(tmp_path: Path) -> None:
    tables = _tables()
    for name in ("duplicate item id", "unknown query id", "empty query text"):
        CASES[name][0](tables)
    problems = validate(_write(tmp_path, tables))
    assert {(Path(p.file).name, p.column) for p in problems} == {("items.parquet", "item_id"), ("judgments.parquet", "query_id"), ("queries.parquet", "text")}


def test_missing_file_and_missing_folder(tmp_path: Path) -> None:
    root = _write(tmp_path / "d", _tables())
    (root / "queries.parquet").unlink()
    result = CliRunner().invoke(app, ["data", "validate", str(root)])
    assert result.exit_code == 2 and "queries.parquet: file not found" in result.stderr
    assert "no such dataset folder" in str(validate(tmp_path / "nowhere")[0])


def test_summary_counts_per_market(tmp_path: Path) -> None:
    table = summary(check_dataset(_write(tmp_path, _tables())))
    rows = {r["market"]: r for r in table.to_dicts()}
    assert rows["SG"]["items"] == 3 and rows["SG"]["queries"] == 3 and rows["SG"]["pairs"] == 5
    assert rows["SG"]["positive_rate"] == pytest.approx(3 / 5, abs=1e-3)
    assert (rows["SG"]["train"], rows["SG"]["valid"], rows["SG"]["test"]) == (2, 2, 1)
    assert rows["TH"]["pairs"] == 2 and rows["TH"]["positive_rate"] == pytest.approx(0.5)


def test_repeated_pairs_are_refused_with_the_importers_named(tmp_path: Path) -> None:
    tables = _tables()
    CASES["repeated pair"][0](tables)
    problem = str(validate(_write(tmp_path, tables))[0])
    assert "repeat a (query_id, item_id) pair" in problem
    assert "hetmoe data import-csv" in problem and "hetmoe data import-esci" in problem and "aggregate" in problem


def test_validate_warns_per_weak_market(tmp_path: Path) -> None:
    """Valid, but: a market whose judged items all belong to another market (no items), a market whose queries are
    all in valid/test (no train judgments), a market whose train judgments are all non-relevant."""
    tables = _tables()
    tables["queries"] = pl.concat([tables["queries"], pl.DataFrame(
        {"query_id": ["q5", "q6"], "text": ["tee", "mug"], "market": ["MY", "PH"]})])
    tables["items"] = pl.concat([tables["items"], pl.DataFrame(
        {"item_id": ["p1", "p2"], "title": ["mug", "cup"], "market": ["PH", "PH"], "lang": ["en", "en"]})])
    tables["judgments"] = pl.concat([tables["judgments"], pl.DataFrame({
        "query_id": ["q5", "q5", "q6", "q6"], "item_id": ["i1", "i2", "p1", "p2"], "label": [2.0, 0.0, 3.0, 0.0],
        "relevant": pl.Series([1, 0, 1, 0], dtype=pl.Int8), "split": ["test", "test", "train", "train"]})])
    tables["judgments"] = tables["judgments"].with_columns(  # TH's one train query: nothing relevant any more
        relevant=pl.when(pl.col("item_id") == "i3").then(0).otherwise(pl.col("relevant")).cast(pl.Int8))
    tables["judgments"] = pl.concat([tables["judgments"], pl.DataFrame({  # ... but TH keeps a positive in test
        "query_id": ["q7"], "item_id": ["i3"], "label": [3.0], "relevant": pl.Series([1], dtype=pl.Int8), "split": ["test"]})])
    tables["queries"] = pl.concat([tables["queries"], pl.DataFrame({"query_id": ["q7"], "text": ["เสื้อ"], "market": ["TH"]})])
    root = _write(tmp_path, tables)
    assert validate(root) == []
    result = CliRunner().invoke(app, ["data", "validate", str(root), "--json"])
    assert result.exit_code == 0, result.output
    warnings = " | ".join(json.loads(result.stdout)["warnings"])
    assert "market MY: no items" in warnings and "market MY: no train judgments" in warnings
    assert "market TH: no relevant train judgment" in warnings
    assert "PH" not in warnings and "SG" not in warnings
    table = CliRunner().invoke(app, ["data", "validate", str(root)])
    assert table.exit_code == 0 and "3 warning(s) above" in table.output


def test_a_checked_dataset_is_its_folder_in_paths_and_messages(tmp_path: Path) -> None:
    root = _write(tmp_path, _tables())
    dataset = check_dataset(root)
    assert dataset.checked and check_dataset(dataset) is dataset  # validated once, passed on
    assert Path(dataset) == root and f"{dataset}" == str(root)
