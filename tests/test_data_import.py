"""Importers: Amazon ESCI (fixture in its schema) and import-csv with an explicit column mapping."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.dataset import load_dataset
from hetmoe.data.esci import import_esci
from hetmoe.data.importing import carve_splits
from hetmoe.data.tabular import Mapping, import_table
from hetmoe.data.validate import validate
from hetmoe.errors import HetmoeError


def _esci(root: Path) -> tuple[Path, Path]:
    """ESCI-shaped files: 12 train queries and 2 test queries over us/jp; product B1 exists in both locales."""
    rows = []
    for q in range(14):
        locale = "jp" if q % 4 == 3 else "us"
        split = "test" if q >= 12 else "train"
        for p, label in enumerate("ESCI"):
            rows.append({"example_id": len(rows), "query": f"query {q}", "query_id": q, "product_id": f"B{p + 1}", "product_locale": locale,
                         "esci_label": label, "small_version": int(q % 2 == 0), "large_version": 1, "split": split})
    examples = pl.DataFrame(rows)
    products = pl.DataFrame({
        "product_id": ["B1", "B2", "B3", "B4", "B1", "B2", "B3", "B4", "B1"],
        "product_locale": ["us"] * 4 + ["jp"] * 4 + ["us"],  # last row repeats (B1, us)
        "product_title": ["Black tee", "Grey tee", "Tee hanger", "Kettle", "黒 Tシャツ", "灰色 Tシャツ", "ハンガー", "ケトル", "Black tee (dup)"],
        "product_description": ["<p>Soft <b>cotton</b></p>", None, None, None, None, None, None, None, None],
        "product_bullet_point": ["100% cotton", None, None, None, None, None, None, None, None],
        "product_brand": ["Acme", "Acme", None, "Boil", None, None, None, None, None],
        "product_color": ["black", "grey", None, None, None, None, None, None, None],
    })
    examples.write_parquet(root / "examples.parquet")
    products.write_parquet(root / "products.parquet")
    return root / "examples.parquet", root / "products.parquet"


def test_esci_import_maps_labels_markets_ids_and_splits(tmp_path: Path) -> None:
    examples, products = _esci(tmp_path)
    out = import_esci(examples, products, tmp_path / "out", valid_fraction=0.25)
    assert validate(out) == []
    data = load_dataset(out)
    assert sorted(data.items["item_id"].to_list()) == sorted(f"{loc}:B{i}" for loc in ("us", "jp") for i in range(1, 5))
    b1 = data.items.filter(pl.col("item_id") == "us:B1").row(0, named=True)
    assert b1["title"] == "Black tee" and b1["market"] == "us" and b1["lang"] == "en"  # first of the duplicate rows
    assert "Acme" in b1["text"] and "cotton" in b1["text"] and "<" not in b1["text"]
    assert data.items.filter(pl.col("item_id") == "jp:B1")["title"].item() == "黒 Tシャツ"
    j = data.judgments.join(data.queries.select("query_id", "market"), on="query_id")
    gains = dict(j.filter(pl.col("query_id") == "us:0").select(pl.col("item_id").str.slice(3), "label").iter_rows())
    assert gains == {"B1": 3.0, "B2": 2.0, "B3": 1.0, "B4": 0.0}
    assert (j["relevant"] == j["label"].is_in([2.0, 3.0]).cast(pl.Int8)).all()
    assert set(j.filter(pl.col("query_id").is_in(["us:12", "us:13"]))["split"]) == {"test"}
    split_of = j.group_by("query_id").agg(pl.col("split").unique())
    assert split_of["split"].list.len().max() == 1  # valid carved by query
    splits = j.unique("query_id")["split"].value_counts()
    assert dict(splits.iter_rows()) == {"train": 9, "valid": 3, "test": 2}
    assert set(j.filter(pl.col("query_id").str.starts_with("jp:"))["market"]) == {"jp"}


def test_esci_small_and_locale_filters_via_cli(tmp_path: Path) -> None:
    examples, products = _esci(tmp_path)
    out = tmp_path / "small"
    result = CliRunner().invoke(app, ["data", "import-esci", "--examples", str(examples), "--products", str(products), "--out", str(out), "--small", "--locale", "us"])
    assert result.exit_code == 0, result.output
    queries = load_dataset(out).queries
    assert set(queries["query_id"]) == {f"us:{q}" for q in range(0, 14, 2)}
    assert "ok:" in result.stdout


def test_esci_wrong_file_is_one_line_error(tmp_path: Path) -> None:
    examples, products = _esci(tmp_path)
    pl.read_parquet(examples).drop("esci_label").write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(HetmoeError, match=r"bad.parquet: no column 'esci_label'.*--examples"):
        import_esci(tmp_path / "bad.parquet", products, tmp_path / "out")


def _log(path: Path) -> Path:
    pl.DataFrame({
        "q": ["red kettle", "red kettle", "red kettle", "tee", "tee", "mug", "mug", "lamp", "lamp", "sofa", "sofa"],
        "sku": ["k1", "k2", "k1", "t1", "t2", "m1", "k1", "l1", "l2", "s1", "s2"],
        "name": ["Red Kettle", "Blue Kettle", "Red Kettle", "Tee", "Cap", "Mug", "Red Kettle", "Lamp", "Lamp shade", "Sofa",
                 "Sofa cover"],
        "grade": [3, 0, 2, 2, 0, 3, 0, 2, 1, 3, 0],  # every query has a relevant and a non-relevant item
        "country": ["SG", "SG", "SG", "MY", "MY", "SG", "SG", "MY", "MY", "SG", "SG"],
    }).write_csv(path)
    return path


def test_import_csv_with_column_mapping(tmp_path: Path) -> None:
    log = _log(tmp_path / "log.csv")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["data", "import-csv", str(log), "--out", str(out), "--query-col", "q", "--item-id-col", "sku",
                                      "--title-col", "name", "--label-col", "grade", "--market-col", "country", "--relevant-min", "2",
                                      "--valid-fraction", "0.2", "--test-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    data = load_dataset(out)
    assert data.items.height == 9 and data.queries.height == 5 and data.judgments.height == 10
    kettle = data.queries.filter(pl.col("text") == "red kettle").row(0, named=True)
    assert kettle["market"] == "SG" and kettle["query_id"].startswith("q_")
    pair = data.judgments.filter((pl.col("query_id") == kettle["query_id"]) & (pl.col("item_id") == "k1")).row(0, named=True)
    assert pair["label"] == 2.5 and pair["relevant"] == 1  # repeated pair averaged, then label >= 2
    assert data.judgments.filter(pl.col("item_id") == "l2")["relevant"].item() == 0
    assert set(data.judgments["split"]) == {"train", "valid", "test"}
    again = import_table(log, tmp_path / "again", Mapping(query="q", item_id="sku", title="name", label="grade", market="country"),
                         relevant_min=2, valid_fraction=0.2, test_fraction=0.2)
    assert load_dataset(again).judgments.sort("query_id", "item_id").equals(data.judgments.sort("query_id", "item_id"))  # stable ids and splits


def test_import_csv_with_items_file_and_split_column(tmp_path: Path) -> None:
    pl.DataFrame({"qid": ["a", "a", "b", "b"], "query": ["tee", "tee", "mug", "mug"], "item_id": ["1", "2", "3", "1"],
                  "rel": [1, 0, 1, 0], "score": [1.0, 0.0, 1.0, 0.0], "part": ["train", "train", "dev", "dev"]}).write_parquet(tmp_path / "pairs.parquet")
    pl.DataFrame({"item_id": ["1", "2", "3", "4"], "title": ["Tee", "Cap", "Mug", "Bowl"], "desc": ["cotton", None, "ceramic", None]}).write_csv(tmp_path / "items.csv")
    out = import_table(tmp_path / "pairs.parquet", tmp_path / "out", Mapping(query_id="qid", label="score", relevant="rel", split="part", text="desc"),
                       items_file=tmp_path / "items.csv", default_market="PH", default_lang="fil")
    assert validate(out) == []
    data = load_dataset(out)
    assert data.items.height == 4 and set(data.items["market"]) == {"PH"}
    assert data.item_texts().filter(pl.col("item_id") == "1")["text"].item() == "Tee\ncotton"
    assert dict(data.judgments.unique("query_id").select("query_id", "split").iter_rows()) == {"a": "train", "b": "valid"}


def test_import_csv_names_the_missing_column_and_option(tmp_path: Path) -> None:
    log = _log(tmp_path / "log.csv")
    with pytest.raises(HetmoeError, match=r"log.csv: no column 'query' .*--query-col"):
        import_table(log, tmp_path / "out", Mapping(item_id="sku", label="grade", title="name"))


def test_carve_splits_is_stable_and_never_empty() -> None:
    ids = pl.Series([f"q{i}" for i in range(40)])
    first = carve_splits(ids, 0.15, 0.15)
    assert first.equals(carve_splits(ids.reverse(), 0.15, 0.15))
    assert dict(first["split"].value_counts().iter_rows()) == {"train": 28, "valid": 6, "test": 6}
    assert set(carve_splits(pl.Series(["a", "b", "c"]), 0.01, 0.01)["split"]) == {"train", "valid", "test"}
    with pytest.raises(HetmoeError):
        carve_splits(ids, 0.6, 0.5)


def _latin1_log(path: Path) -> Path:
    """The mapping test's log with accented queries and titles, written in ISO-8859-1."""
    frame = pl.read_csv(_log(path.with_suffix(".utf8.csv")))
    frame = frame.with_columns(pl.col("q").str.replace("tee", "café crème"), pl.col("name").str.replace("Tee", "Thé vert"))
    path.write_bytes(frame.write_csv().encode("latin-1"))
    return path


def test_import_csv_reads_other_encodings_with_encoding_option(tmp_path: Path) -> None:
    log = _latin1_log(tmp_path / "latin.csv")
    args = ["data", "import-csv", str(log), "--query-col", "q", "--item-id-col", "sku", "--title-col", "name",
            "--label-col", "grade", "--market-col", "country", "--relevant-min", "2"]
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "plain")])
    assert isinstance(refused.exception, HetmoeError) and not (tmp_path / "plain").exists()
    assert "not valid UTF-8 (byte 0xe9 at offset" in str(refused.exception) and "--encoding latin-1" in str(refused.exception)
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out"), "--encoding", "latin-1"])
    assert result.exit_code == 0, result.output
    data = load_dataset(tmp_path / "out")
    assert "café crème" in data.queries["text"].to_list() and "Thé vert" in data.items["title"].to_list()


def test_garbage_file_is_one_clean_line_without_its_bytes(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 20)
    ascii_garbage = tmp_path / "ascii.csv"  # valid UTF-8 but a wall of control characters and no columns we know
    ascii_garbage.write_bytes(bytes(range(1, 32)) * 30 + b"\n" + b"x" * 500)
    for path in (garbage, ascii_garbage):
        with pytest.raises(HetmoeError) as err:
            import_table(path, tmp_path / "out", Mapping())
        message = str(err.value)
        assert message.isprintable() and len(message) < 400, message
        assert not (tmp_path / "out").exists()
def test_esci_repeated_pairs_average_their_gain(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    examples, products = _esci(tmp_path)
    ex = pl.read_parquet(examples)
    repeats = pl.DataFrame([  # (us:0, B1) judged E then C; (us:1, B2) S then I twice
        {**ex.row(0, named=True), "example_id": 900, "esci_label": "C"},
        {**ex.row(5, named=True), "example_id": 901, "esci_label": "I"},
        {**ex.row(5, named=True), "example_id": 902, "esci_label": "I"},
    ], schema=ex.schema)
    pl.concat([ex, repeats]).write_parquet(examples)
    with caplog.at_level("INFO"):
        out = import_esci(examples, products, tmp_path / "out", valid_fraction=0.25)
    assert validate(out) == []
    j = load_dataset(out).judgments
    pair = {(r["query_id"], r["item_id"]): (r["label"], r["relevant"]) for r in j.iter_rows(named=True)}
    assert pair[("us:0", "us:B1")] == (2.0, 1) and pair[("us:1", "us:B2")] == (2 / 3, 0)
    assert j.height == ex.height
    assert "3 row(s) repeat a judged (query, item) pair; 2 pair(s) aggregated" in caplog.text

    in_test = pl.DataFrame([{**ex.row(0, named=True), "example_id": 903, "split": "test"}], schema=ex.schema)
    pl.concat([ex, in_test]).write_parquet(examples)
    with pytest.raises(HetmoeError, match=r"1 \(query, item\) pair\(s\) are judged in more than one split \(e.g. us:0 "):
        import_esci(examples, products, tmp_path / "out2")


def test_import_csv_repeats_take_the_majority_of_a_relevant_flag(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pl.DataFrame({"qid": ["a", "a", "a", "a", "b", "b", "b"], "query": ["tee"] * 4 + ["mug"] * 3,
                  "item_id": ["1", "1", "1", "2", "3", "3", "1"], "rel": [1, 0, 1, 0, 1, 0, 0],
                  "score": [3.0, 1.0, 2.0, 0.0, 2.0, 1.0, 0.0], "part": ["train"] * 4 + ["dev"] * 3,
                  "title": ["Tee", "Tee", "Tee", "Cap", "Mug", "Mug", "Tee"]}).write_csv(tmp_path / "pairs.csv")
    mapping = Mapping(query_id="qid", label="score", relevant="rel", split="part")
    with caplog.at_level("INFO"):
        out = import_table(tmp_path / "pairs.csv", tmp_path / "out", mapping)
    assert validate(out) == []
    rows = load_dataset(out).judgments.iter_rows(named=True)
    j = {(r["query_id"], r["item_id"]): (r["label"], r["relevant"]) for r in rows}
    assert j == {("a", "1"): (2.0, 1), ("a", "2"): (0.0, 0), ("b", "3"): (1.5, 1), ("b", "1"): (0.0, 0)}  # 2/3, 1/2
    assert "3 row(s) repeat a judged (query, item) pair; 2 pair(s) aggregated" in caplog.text
    pl.DataFrame({"qid": ["a", "a"], "query": ["tee", "tee"], "item_id": ["1", "1"], "score": [1.0, 0.0],
                  "part": ["train", "test"], "title": ["Tee", "Tee"]}).write_csv(tmp_path / "span.csv")
    with pytest.raises(HetmoeError, match=r"span.csv: 1 \(query, item\) pair\(s\) are judged in more than one split"):
        import_table(tmp_path / "span.csv", tmp_path / "out2", Mapping(query_id="qid", label="score", split="part"))


def test_import_csv_joins_a_catalog_keyed_by_another_column(tmp_path: Path) -> None:
    """The log's item column is `sku`, the catalog's `product_id` (and its title `name`): each file gets its own."""
    pl.DataFrame({"q": ["tee", "tee", "mug", "mug"], "sku": ["A1", "A2", "B1", "A1"], "grade": [2.0, 0.0, 3.0, 1.0],
                  "part": ["train", "train", "dev", "dev"]}).write_csv(tmp_path / "log.csv")
    pl.DataFrame({"product_id": ["A1", "A2", "B1"], "name": ["Tee", "Cap", "Mug"]}).write_csv(tmp_path / "catalog.csv")
    out = tmp_path / "out"
    args = ["data", "import-csv", str(tmp_path / "log.csv"), "--out", str(out), "--query-col", "q", "--item-id-col", "sku",
            "--label-col", "grade", "--split-col", "part", "--items", str(tmp_path / "catalog.csv"), "--items-title-col",
            "name", "--default-market", "SG", "--relevant-min", "2"]
    missing = CliRunner().invoke(app, args)
    assert isinstance(missing.exception, HetmoeError)
    assert "catalog.csv: no column 'sku'" in str(missing.exception) and "--items-id-col" in str(missing.exception)
    result = CliRunner().invoke(app, [*args, "--items-id-col", "product_id"])
    assert result.exit_code == 0, result.output
    data = load_dataset(out)
    assert dict(data.items.select("item_id", "title").iter_rows()) == {"A1": "Tee", "A2": "Cap", "B1": "Mug"}
    assert set(data.judgments["item_id"]) == {"A1", "A2", "B1"} and set(data.items["market"]) == {"SG"}
