"""Stores are checked against the dataset they are used with: per-row text hashes, a renamed folder, old stores."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.dataset import load_dataset, write_dataset
from hetmoe.data.demo import generate_demo
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import get_card
from hetmoe.moe.features import load_pairs
from hetmoe.store.embed import embed_dataset
from hetmoe.store.identity import TEXT_HASH, StoreIdentity, text_hashes
from hetmoe.store.zarr_store import open_expert

EXPERT = "static"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("identity")
    generate_demo(root / "data", items_per_market=30, queries_per_market=10, seed=0, markets=["TH", "ID"])
    embed_dataset(root / "data", get_card(EXPERT), root / "stores", progress=False)
    return root


def _pairs(data: Path, stores: Path) -> object:
    return load_pairs(load_dataset(data), stores, [EXPERT], ["train"], EXPERT)


def test_each_row_keeps_the_hash_of_the_text_it_encoded(built: Path) -> None:
    items = open_expert(built / "stores", EXPERT).items
    texts = load_dataset(built / "data").item_texts()
    assert (items.text_hashes() == text_hashes(texts["text"])).all()
    assert text_hashes(["a"])[0] != text_hashes(["b"])[0]


def test_a_store_built_from_another_dataset_with_the_same_ids_is_refused(built: Path, tmp_path: Path) -> None:
    other = generate_demo(tmp_path / "d2", items_per_market=30, queries_per_market=10, seed=3, markets=["TH", "ID"])
    with pytest.raises(HetmoeError, match="vectors of other texts .* built from another dataset"):
        _pairs(other, built / "stores")


def test_one_markets_slice_uses_the_multi_market_store(built: Path, tmp_path: Path) -> None:
    ds = load_dataset(built / "data")
    items = ds.items.filter(pl.col("market") == "TH")
    queries = ds.queries.filter(pl.col("market") == "TH")
    judgments = ds.judgments.filter(pl.col("query_id").is_in(queries["query_id"].to_list()))
    sliced = write_dataset(tmp_path / "th", items, queries, judgments)
    pairs = _pairs(sliced, built / "stores")
    assert set(pairs.market_names.tolist()) == {"TH"} and len(pairs) > 0


def test_a_renamed_store_folder_is_refused(built: Path, tmp_path: Path) -> None:
    shutil.copytree(built / "stores" / EXPERT, tmp_path / "stores" / "wordllama")
    with pytest.raises(HetmoeError, match="manifest says expert 'static' built it, not 'wordllama'"):
        open_expert(tmp_path / "stores", "wordllama")


def test_an_old_store_without_hashes_works_for_its_own_input_and_embed_adds_them(built: Path, tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    shutil.copytree(built / "stores", stores)
    for part in ("items", "queries"):
        shutil.rmtree(stores / EXPERT / f"{part}.zarr" / TEXT_HASH)
    assert open_expert(stores, EXPERT).items.text_hashes() is None
    assert len(_pairs(built / "data", stores)) > 0  # same input: the manifest fingerprint vouches for every row
    embed_dataset(built / "data", get_card(EXPERT), stores, progress=False)
    assert open_expert(stores, EXPERT).items.text_hashes() is not None


def test_eval_on_another_dataset_exits_2_with_one_line(built: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    model = tmp_path / "model"
    args = ["fit-head", "--data", str(built / "data"), "--store", str(built / "stores"), "--out", str(model), "-e", EXPERT]
    no_lexical = runner.invoke(app, args)  # the lexical expert is on by default, and these stores have none
    assert isinstance(no_lexical.exception, HetmoeError) and "--lexical none" in str(no_lexical.exception)
    fit = runner.invoke(app, ["fit-head", "--data", str(built / "data"), "--store", str(built / "stores"), "--out", str(model),
                              "-e", EXPERT, "--k", "1", "--variants", "none", "--router-expert", EXPERT, "--split", "test", "--lexical", "none",
                              "--market-power", "1"])
    assert fit.exit_code == 0, fit.output
    assert json.loads((model / "fit.json").read_text())["train_config"]["market_power"] == 1.0  # the option reaches training
    other = generate_demo(tmp_path / "d2", items_per_market=30, queries_per_market=10, seed=3, markets=["TH", "ID"])
    result = runner.invoke(app, ["eval", "--model", str(model), "--data", str(other), "--split", "test"])
    assert result.exit_code != 0 and isinstance(result.exception, HetmoeError)
    assert "built from another dataset" in str(result.exception)


def test_store_identity_accepts_the_same_store_and_one_grown_by_appends_only() -> None:
    grown = {"card_hash": "c1", "input_fingerprint": "f2", "count": 15,
             "history": [{"from": 10, "previous_fingerprint": "f1"}]}
    assert StoreIdentity("c1", "f2", 15).grown_from(grown) == 0  # the very store
    assert StoreIdentity("c1", "f1", 10).grown_from(grown) == 5  # it was this store before 5 rows were appended
    assert StoreIdentity(None, "f1").grown_from(grown) == 5  # a model records no count
    assert StoreIdentity("c2", "f2", 15).grown_from(grown) is None  # another card
    assert StoreIdentity("c1", "f1", 9).grown_from(grown) is None  # never had this fingerprint with 9 rows
    assert StoreIdentity("c1", "f0", 10).grown_from(grown) is None  # other input: rebuilt since
    assert StoreIdentity.of(grown) == StoreIdentity("c1", "f2", 15)
