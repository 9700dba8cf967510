"""The lexical expert inside stage two: fed to the net, the stacked head and LightGBM, served by the Scorer."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hetmoe.data.dataset import load_dataset, write_dataset
from hetmoe.errors import HetmoeError
from hetmoe.moe.evaluate import evaluate, model_pairs, score_net
from hetmoe.moe.infer import MoEModel
from hetmoe.pairs.features import PairFeatures
from hetmoe.moe.train import TrainConfig

EXPERTS = ["static", "wordllama"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from hetmoe.data.demo import generate_demo
    from hetmoe.experts.card import get_card
    from hetmoe.lexical.store import fit_lexical_store
    from hetmoe.moe.fit import fit
    from hetmoe.store.embed import embed_dataset

    root = tmp_path_factory.mktemp("lexmoe")
    # 24 queries per market: with 16 the early-stopping slice holds 2-3 queries per market and the stacked booster can
    # stop at one tree, which would leave the served == eval check below nothing to compare
    data = generate_demo(root / "data", items_per_market=40, queries_per_market=24, seed=2, markets=("ID", "TH"))
    for expert in EXPERTS:
        embed_dataset(data, get_card(expert), root / "stores", progress=False)
    fit_lexical_store(data, root / "stores")
    model = fit(data, root / "stores", root / "model", EXPERTS, k=1, seed=0, router_expert="static",
                variants=["lightgbm", "rule"], spec_overrides={"lexical_store": "lexical"},
                train_config=TrainConfig(max_epochs=3, patience=2))
    return {"data": data, "stores": root / "stores", "model": model}


def test_every_head_reads_the_lexical_features(built: dict[str, Path]) -> None:
    from hetmoe.lexical import FEATURE_NAMES

    model = MoEModel.load(built["model"])
    assert model.spec.lexical == FEATURE_NAMES and model.spec.lexical_store == "lexical"
    lgbm = json.loads((built["model"] / "variants" / "lightgbm" / "config.json").read_text())
    assert lgbm["lexical"] == FEATURE_NAMES
    pairs = model_pairs(model, load_dataset(built["data"]), ["test"], built["stores"])
    assert pairs.lex is not None and pairs.lex.shape == (len(pairs), len(FEATURE_NAMES))
    scores, _ = score_net(model, pairs)
    blank = pairs.lex.copy()
    blank[:] = pairs.lex.mean(0)  # the same pairs without lexical information score differently
    moved, _ = score_net(model, replace(pairs, features=pairs.features.with_block("lexical", None, blank)))
    assert np.abs(scores - moved).max() > 1e-4
    bare = PairFeatures(pairs.features.batch, pairs.features.context,
                        {k: v for k, v in pairs.features.blocks.items() if k != "lexical"})
    with pytest.raises(HetmoeError, match="feature block 'lexical' is not part of"):
        model.score(bare, model.route(np.asarray(pairs.markets, dtype=object)[pairs.q_market], pairs.rvec))
    report = evaluate(built["model"], built["data"], "test", built["model"] / "report")
    assert {"moe", "lightgbm", "rule"} <= set(report["variants"])


def _first_query(data_dir: Path) -> tuple[str, list[str], str]:
    """(text, judged item ids, market) of the dataset's first query."""
    data = load_dataset(data_dir)
    qid, text, market = data.queries.head(1).select("query_id", "text", "market").row(0)
    return text, data.judgments.filter(pl.col("query_id") == qid)["item_id"].to_list(), market


def test_the_scorer_computes_the_lexical_features_online(built: dict[str, Path]) -> None:
    from hetmoe.lexical.store import open_lexical
    from hetmoe.online.scorer import Scorer

    scorer = Scorer.load(built["model"], with_indexes=False)
    text, ids, market = _first_query(built["data"])
    got = scorer.score(text, ids, market)
    lexical = open_lexical(built["stores"], "lexical")
    direct = lexical.features([text], lexical.rows(ids), np.zeros(len(ids), np.int64))
    alone = scorer.score(text, ids[:1], market)  # request-independent with the lexical slot too
    assert alone.scores[0] == pytest.approx(got.scores[0], rel=1e-6)
    assert direct.shape == (len(ids), len(lexical.feature_names)) and np.all(np.isfinite(got.scores))
    scorer.close()


def test_a_repeated_query_reuses_its_lexical_side_and_scores_the_same(built: dict[str, Path]) -> None:
    from hetmoe.lexical.store import open_lexical
    from hetmoe.online.results import ScoreRequest
    from hetmoe.online.scorer import Scorer

    scorer = Scorer.load(built["model"], with_indexes=False)
    text, ids, market = _first_query(built["data"])
    first = scorer.score(text, ids, market)
    misses = scorer.context.lexical_cache.misses
    again = scorer.score(text, ids[::-1], market)  # other items, same query: its lexical side comes from the cache
    assert scorer.context.lexical_cache.hits >= 1 and scorer.context.lexical_cache.misses == misses
    np.testing.assert_array_equal(again.scores[::-1], first.scores)
    lexical = open_lexical(built["stores"], "lexical")
    inputs = scorer.head_inputs([ScoreRequest(text, ids, market)])
    np.testing.assert_array_equal(inputs[0].block("lexical"), lexical.features([text], lexical.rows(ids), np.zeros(len(ids), np.int64)))
    scorer.clear_caches()
    assert len(scorer.context.lexical_cache) == 0
    np.testing.assert_array_equal(scorer.score(text, ids, market).scores, first.scores)
    scorer.close()


def test_a_lexical_store_of_other_texts_is_refused(built: dict[str, Path], tmp_path: Path) -> None:
    data = load_dataset(built["data"])
    items = data.items.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("another title")).otherwise(pl.col("title")).alias("title"))
    other = write_dataset(tmp_path / "other", items, data.queries, data.judgments)
    from hetmoe.moe.lexical_pairs import open_checked

    with pytest.raises(HetmoeError, match="fitted on other texts for 1 of the dataset's items"):
        open_checked(built["stores"], "lexical", load_dataset(other))
    sliced = write_dataset(tmp_path / "id", data.items.filter(pl.col("market") == "ID"),
                           data.queries.filter(pl.col("market") == "ID"),
                           data.judgments.filter(pl.col("query_id").is_in(data.queries.filter(pl.col("market") == "ID")["query_id"].to_list())))
    assert open_checked(built["stores"], "lexical", load_dataset(sliced)) is not None  # a market's slice is fine


def test_a_model_refuses_a_refitted_lexical_store(built: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    stores = tmp_path / "stores"
    shutil.copytree(built["stores"], stores)
    manifest = stores / "lexical" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"config_hash": "', '"config_hash": "x'))
    with pytest.raises(HetmoeError, match="another lexical store"):
        MoEModel.load(built["model"], store_root=stores)


def test_a_lexical_store_fitted_before_text_hashes_gets_them_on_a_rerun(built: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from hetmoe.lexical.store import TEXT_HASHES, fit_lexical_store

    stores = tmp_path / "stores"
    shutil.copytree(built["stores"], stores)
    (stores / "lexical" / TEXT_HASHES).unlink()
    assert fit_lexical_store(built["data"], stores)["skipped"]
    assert (stores / "lexical" / TEXT_HASHES).is_file()


def test_the_scorer_refuses_items_appended_after_the_lexical_fit_in_one_line(built: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    import shutil

    from hetmoe.experts.card import get_card
    from hetmoe.online.scorer import Scorer
    from hetmoe.store.append import append_dataset

    stores = tmp_path / "stores"
    shutil.copytree(built["stores"], stores)
    data = load_dataset(built["data"])
    extra = data.items.head(1).with_columns(pl.lit("id_new_item").alias("item_id"), pl.lit("Sabun cuci baru").alias("title"))
    grown = write_dataset(tmp_path / "grown", pl.concat([data.items, extra]), data.queries, data.judgments)
    for expert in EXPERTS:  # the embedding experts grow; the lexical expert, fitted on the old catalog, cannot
        append_dataset(grown, get_card(expert), stores)
    with pytest.raises(HetmoeError) as err:
        Scorer.load(built["model"], store_root=stores, with_indexes=False)
    message = str(err.value)
    assert "id_new_item" in message and "--expert lexical" in message and "--overwrite" in message
    assert "\n" not in message


def test_the_stacked_head_serves_exactly_the_scores_eval_reports(built: dict[str, Path], tmp_path: Path) -> None:
    """The stacked head's trees read dot products and reference statistics: eval must hand them the stored vectors
    (not renormalised unit vectors) and both paths must compute the reference row alike, or a last-bit difference
    sends a pair down another branch (it moved multimarket scores by up to 0.04)."""
    from hetmoe.scale.score import score_pairs

    selection = json.loads((built["model"] / "fit.json").read_text())["moe_selection"]
    stacked_dir = built["model"] if selection["head"] == "stacked" else built["model"] / "variants" / "moe:stacked"
    model = MoEModel.load(stacked_dir)
    assert model.stack is not None  # the stacked head
    data = load_dataset(built["data"])
    pairs = model_pairs(model, data, ["test"], built["stores"])
    expected, _ = score_net(model, pairs)
    judged = pl.DataFrame({"query_id": pairs.query_ids[pairs.qi].tolist(), "item_id": pairs.item_ids[pairs.di].tolist()})
    judged.write_parquet(tmp_path / "pairs.parquet")
    score_pairs(stacked_dir, tmp_path / "pairs.parquet", tmp_path / "scores.parquet", progress=False)
    served = pl.read_parquet(tmp_path / "scores.parquet")["score"].to_numpy()
    assert served.shape == expected.shape and np.unique(np.round(expected, 3)).size > 10
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-7)
