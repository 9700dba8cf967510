"""End to end through the CLI: embed + index + fit on a demo catalog, then a day's new items and queries arrive:
``embed --append`` and ``index --append``, and a Scorer loaded afterwards (same model) scores and finds them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.dataset import load_dataset, write_dataset
from hetmoe.data.demo import generate_demo
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import get_card
from hetmoe.experts.registry import build_encoder
from hetmoe.moe.fit import fit
from hetmoe.moe.train import TrainConfig
from hetmoe.online.scorer import Scorer
from hetmoe.store.embed import embed_dataset

EXPERT = "static"


def _run(*args: str) -> dict:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.output.strip().splitlines()[-1])


def _refused(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert isinstance(result.exception, HetmoeError), (result.output, result.exception)
    assert "\n" not in str(result.exception)
    return str(result.exception)


def test_cli_append_then_a_reloaded_scorer_finds_the_new_items(tmp_path: Path) -> None:
    base = generate_demo(tmp_path / "base", items_per_market=30, queries_per_market=10, seed=0, markets=["TH", "ID"])
    extra = load_dataset(generate_demo(tmp_path / "extra", items_per_market=30, queries_per_market=10, seed=4, markets=["TH", "ID"]))
    ds = load_dataset(base)
    grown = write_dataset(tmp_path / "grown", pl.concat([ds.items, extra.items.with_columns(("new_" + pl.col("item_id")).alias("item_id"))]),
                          pl.concat([ds.queries, extra.queries.with_columns(("new_" + pl.col("query_id")).alias("query_id"))]),
                          ds.judgments)
    store, model = str(tmp_path / "stores"), tmp_path / "model"
    encoder = build_encoder(get_card(EXPERT))  # built once here (model2vec loads slowly); the CLI append builds its own
    embed_dataset(base, encoder.card, store, encoder=encoder, progress=False)
    _run("index", "-e", EXPERT, "--store", store)
    fit(base, store, model, [EXPERT], k=1, variants=(), router_expert=EXPERT, train_config=TrainConfig(max_epochs=2), stack=False)
    n_before = Scorer.load(model, with_indexes=False, encoders={EXPERT: encoder}).n_items

    assert "--append encodes just those" in _refused("embed", "-e", EXPERT, "--data", str(grown), "--store", store)
    assert "drop --overwrite" in _refused("embed", "-e", EXPERT, "--data", str(grown), "--store", store, "--append", "--overwrite")
    summary = _run("embed", "-e", EXPERT, "--data", str(grown), "--store", store, "--append")
    assert summary["appended"]["items"]["rows_added"] == extra.items.height == summary["appended"]["items"]["rows_encoded"]
    assert summary["appended"]["queries"]["rows_added"] == extra.queries.height
    with pytest.raises(HetmoeError, match="grew by 60 items since the index was built"):
        Scorer.load(model, data_dir=grown, encoders={EXPERT: encoder})
    assert _run("index", "-e", EXPERT, "--store", store, "--append")["rows_added"] == 60

    scorer = Scorer.load(model, data_dir=grown, encoders={EXPERT: encoder})  # the model from before the append, over the grown stores
    assert scorer.n_items == n_before + 60
    new_id, title, market = extra.items.select(("new_" + pl.col("item_id")), "title", "market").row(0)
    assert scorer.score(title, [new_id], market).unknown_item_ids == []
    assert new_id in scorer.search(title, market, k=100).item_ids  # retrieved from the grown index
    scorer.close()


def test_a_model_with_the_lexical_expert_and_neighbourhoods_serves_a_days_new_items(tmp_path: Path) -> None:
    """The whole append path: items embedded and the market indexes grown by them, the lexical expert grown (fitted
    statistics kept, old items' features unchanged); the model fitted before serves the new items."""
    from hetmoe.lexical.store import fit_lexical_store, open_lexical

    base = generate_demo(tmp_path / "base", items_per_market=40, queries_per_market=12, seed=0, markets=["TH", "ID"])
    extra = load_dataset(generate_demo(tmp_path / "extra", items_per_market=30, queries_per_market=10, seed=4,
                                       markets=["TH", "ID"]))
    ds = load_dataset(base)
    new_items = extra.items.with_columns(("new_" + pl.col("item_id")).alias("item_id"),
                                         (pl.col("title") + " Zorblax").alias("title"))  # a brand first seen today
    grown = write_dataset(tmp_path / "grown", pl.concat([ds.items, new_items]), ds.queries, ds.judgments)
    store, model = str(tmp_path / "stores"), tmp_path / "model"
    encoder = build_encoder(get_card(EXPERT))
    embed_dataset(base, encoder.card, store, encoder=encoder, progress=False)
    fit_lexical_store(base, store, name="lexical")
    fit(base, store, model, [EXPERT], k=1, variants=(), router_expert=EXPERT, train_config=TrainConfig(max_epochs=2),
        spec_overrides={"lexical_store": "lexical"})
    before = open_lexical(store, "lexical")
    old_rows = before.rows(ds.items["item_id"].to_list())
    old = before.features(["kaos zorblax"], old_rows, np.zeros(old_rows.size, np.int64))

    grew = _run("embed", "-e", EXPERT, "--data", str(grown), "--store", store, "--append")["neighbours"]
    assert {k: v["items"] for k, v in grew.items()} == {f"{EXPERT}/ID": 70, f"{EXPERT}/TH": 70}  # its indexes grew
    assert all("append_seconds" in v for v in grew.values())
    with pytest.raises(HetmoeError, match="items appended after it was fitted"):
        Scorer.load(model, data_dir=grown, encoders={EXPERT: encoder}, with_indexes=False)
    assert _run("embed", "-e", "lexical", "--data", str(grown), "--store", store, "--append")["items_added"] == 60
    after = open_lexical(store, "lexical")
    np.testing.assert_array_equal(after.features(["kaos zorblax"], old_rows, np.zeros(old_rows.size, np.int64)), old)
    new_rows = after.rows(new_items["item_id"].to_list())
    coverage = after.features(["zorblax"], new_rows, np.zeros(new_rows.size, np.int64))[:, after.feature_names.index("query_coverage")]
    assert (coverage == 1.0).all()  # the new brand matches the new items at once
    scorer = Scorer.load(model, data_dir=grown, encoders={EXPERT: encoder}, with_indexes=False)  # fitted before
    new_id, title, market = new_items.select("item_id", "title", "market").row(0)
    result = scorer.score(title, [new_id], market)
    assert result.unknown_item_ids == [] and np.isfinite(result.scores).all()
    scorer.close()
    changed = write_dataset(tmp_path / "changed", pl.concat([ds.items.with_columns(pl.col("title") + " v2"), new_items]),
                            ds.queries, ds.judgments)
    assert "changed their text" in _refused("embed", "-e", "lexical", "--data", str(changed), "--store", store, "--append")
