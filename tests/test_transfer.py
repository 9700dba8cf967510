"""The head for markets a model never saw (:mod:`hetmoe.moe.transfer`): fitted by ``fit`` for every net variant,
saved and loaded with the model, routing and scoring only the unknown market's queries, served by the Scorer for a
market its catalog holds, and its logistic regression recovering a known rule."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hetmoe.data.dataset import load_dataset, write_dataset
from hetmoe.metrics import auc
from hetmoe.moe.evaluate import model_pairs, score_net
from hetmoe.moe.infer import MoEModel
from hetmoe.moe.train import TrainConfig
from hetmoe.moe.transfer import TRANSFER_LEXICAL, _logistic
from hetmoe.pairs.features import PairFeatures

EXPERTS = ["static", "wordllama"]
NEW = "VN"  # the market the model is not fitted on


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stores over three markets; the model is fitted on a dataset of two of them (a learned router, k=1)."""
    from hetmoe.data.demo import generate_demo
    from hetmoe.experts.card import get_card
    from hetmoe.lexical.store import fit_lexical_store
    from hetmoe.moe.fit import fit
    from hetmoe.store.embed import embed_dataset

    root = tmp_path_factory.mktemp("transfer")
    full = generate_demo(root / "data", items_per_market=40, queries_per_market=16, seed=3, markets=("ID", "TH", NEW))
    for expert in EXPERTS:
        embed_dataset(full, get_card(expert), root / "stores", progress=False)
    fit_lexical_store(full, root / "stores")
    data = load_dataset(full)
    old = data.queries.filter(pl.col("market") != NEW)
    seen = write_dataset(root / "seen", data.items.filter(pl.col("market") != NEW), old,
                         data.judgments.filter(pl.col("query_id").is_in(old["query_id"].to_list())))
    model = fit(seen, root / "stores", root / "model", EXPERTS, k=1, seed=0, router_expert="static",
                variants=["rule", "single:wordllama", "lightgbm"], spec_overrides={"lexical_store": "lexical"},
                train_config=TrainConfig(max_epochs=3, patience=2), routers=["hard"])
    return {"full": full, "stores": root / "stores", "model": model}


def test_every_net_variant_is_saved_with_a_transfer_head(built: dict[str, Path]) -> None:
    moe = MoEModel.load(built["model"])
    assert NEW not in moe.markets and moe.transfer is not None
    assert len(moe.transfer.experts) == moe.k == 1 and moe.transfer.lexical == list(TRANSFER_LEXICAL)
    assert MoEModel.load(built["model"] / "variants" / "single-wordllama").transfer.experts == ["wordllama"]
    assert MoEModel.load(built["model"] / "variants" / "rule").transfer is not None
    again = MoEModel.load(built["model"])  # the saved head reads back to the same numbers
    np.testing.assert_array_equal(again.transfer.coef, moe.transfer.coef)
    assert np.all(np.isfinite(moe.transfer.coef))


def test_only_the_unknown_market_is_routed_and_scored_by_it(built: dict[str, Path]) -> None:
    moe = MoEModel.load(built["model"])
    pairs = model_pairs(moe, load_dataset(built["full"]), ["valid"])
    names = pairs.market_names
    with_head, dense = score_net(moe, pairs)
    without, dense_without = score_net(replace(moe, transfer=None), pairs)
    new_q = np.asarray(pairs.markets, dtype=object)[pairs.q_market] == NEW
    head_expert = moe.experts.index(moe.transfer.experts[0])
    assert np.all(dense[new_q][:, head_expert] == 1) and np.all((dense[new_q] > 0).sum(1) == 1)
    np.testing.assert_array_equal(dense[~new_q], dense_without[~new_q])
    np.testing.assert_array_equal(with_head[names != NEW], without[names != NEW])
    at = names == NEW
    cos = [pairs.stats[at, pairs.experts.index(e), 0] for e in moe.transfer.experts]
    direct = 1.0 / (1.0 + np.exp(-moe.transfer.logits(cos, pairs.lex[at], pairs.lex_names).astype(np.float64)))
    np.testing.assert_allclose(with_head[at], direct, rtol=0, atol=1e-6)
    assert auc(with_head[at], pairs.y[at]) > 0.6  # learned on ID and TH, it ranks VN's judged pairs
    # Its queries never reach the net or the stacked head: they need no reference cosines or neighbourhoods.
    fresh = PairFeatures(pairs.features.batch.subset(at), pairs.features.context, pairs.features.blocks)
    np.testing.assert_array_equal(score_net(moe, replace(pairs.subset(at), features=fresh))[0], with_head[at])
    assert not {c for c in fresh.computed() if c.startswith(("reference:", "neighbourhood:", "stats:"))}


def test_the_scorer_serves_a_catalog_market_the_model_never_saw(built: dict[str, Path]) -> None:
    from hetmoe.online.checks import RequestError
    from hetmoe.online.results import ScoreRequest
    from hetmoe.online.scorer import Scorer

    moe = MoEModel.load(built["model"])
    data = load_dataset(built["full"])
    pairs = model_pairs(moe, data, ["valid"])
    want, _ = score_net(moe, pairs)
    q = int(np.flatnonzero(np.asarray(pairs.markets, dtype=object)[pairs.q_market] == NEW)[0])
    at = np.flatnonzero(pairs.qi == q)
    texts = dict(zip(data.queries["query_id"].to_list(), data.queries["text"].to_list()))
    text = texts[pairs.query_ids[q]]
    scorer = Scorer.load(built["model"], data_dir=built["full"], with_indexes=False)
    try:
        assert scorer.markets == [*moe.markets, NEW]
        got = scorer.score(text, pairs.item_ids[pairs.di[at]].tolist(), NEW)
        assert got.routing.experts == tuple(moe.transfer.experts)
        np.testing.assert_allclose(got.scores, want[at], rtol=0, atol=1e-5)
        # Beside a known market's query in one batch: each scored by its own head, as alone.
        k = int(np.flatnonzero(np.asarray(pairs.markets, dtype=object)[pairs.q_market] != NEW)[0])
        at_k = np.flatnonzero(pairs.qi == k)
        both = scorer.score_batch([ScoreRequest(text, got.item_ids, NEW), ScoreRequest(
            texts[pairs.query_ids[k]], pairs.item_ids[pairs.di[at_k]].tolist(), pairs.markets[pairs.q_market[k]])])
        np.testing.assert_allclose(both[0].scores, want[at], rtol=0, atol=1e-5)
        np.testing.assert_allclose(both[1].scores, want[at_k], rtol=0, atol=1e-5)
        with pytest.raises(RequestError, match="unknown market 'ZZ'"):
            scorer.score(text, pairs.item_ids[pairs.di[at]].tolist(), "ZZ")
    finally:
        scorer.close()
    bare = replace(moe, transfer=None)
    from hetmoe.online.scorer import served_markets

    assert served_markets(bare, scorer.catalog) == moe.markets  # without the head a new market stays refused


def test_the_logistic_regression_recovers_a_known_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    y = (rng.random(4000) < 1.0 / (1.0 + np.exp(-(2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.5)))).astype(np.float64)
    beta = _logistic(x, y, np.ones(4000))
    np.testing.assert_allclose(beta, [2.0, -1.0, 0.0, 0.5], atol=0.2)
    heavy = _logistic(x, y, np.where(x[:, 2] > 0, 3.0, 1.0))  # weights change the fit, not the rule it finds
    assert np.sign(heavy[0]) == 1 and np.sign(heavy[1]) == -1


def test_the_report_names_the_markets_the_model_never_saw(built: dict[str, Path], tmp_path: Path) -> None:
    from hetmoe.moe.evaluate import evaluate
    from hetmoe.moe.report import markdown

    report = evaluate(built["model"], built["full"], "valid", tmp_path / "report")
    assert report["unseen_markets"] == [NEW] and report["transfer_head"]
    assert f"Markets the model was not fitted on: {NEW}; the net variants score them with their transfer heads" in markdown(report)
    assert set(report["variants"]["moe"]["auc_by_market"]) == {"ID", "TH", NEW}
    assert "has no transfer head" in markdown({**report, "transfer_head": False})


def test_only_the_markets_fitted_on_get_the_optimistic_split_warning(built: dict[str, Path], tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The train split of a market the model never saw is a clean held-out slice: eval must not call it optimistic."""
    from hetmoe.moe.evaluate import evaluate

    data = load_dataset(built["full"])
    new_queries = data.queries.filter(pl.col("market") == NEW)
    unseen = write_dataset(tmp_path / "unseen", data.items.filter(pl.col("market") == NEW), new_queries,
                           data.judgments.filter(pl.col("query_id").is_in(new_queries["query_id"].to_list())))
    with caplog.at_level("WARNING", logger="hetmoe.moe.evaluate"):
        report = evaluate(built["model"], unseen, "train", tmp_path / "unseen-report")
        assert report["unseen_markets"] == [NEW] and "optimistic" not in caplog.text
        evaluate(built["model"], built["full"], "train", tmp_path / "full-report")
    assert "split 'train' of ID, TH was used in training" in caplog.text
