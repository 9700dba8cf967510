"""``hetmoe score`` on a real (tiny) fitted model: judged pairs score as ``eval`` scores them, unknown ids and markets
get null scores counted in one line, parts resume, and ``--engine ray`` (local 2-CPU Ray) equals the local engine."""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import ray
from served import served_scores
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.errors import HetmoeError
from hetmoe.scale.parts import part_file, parts_dir, stats_file
from hetmoe.scale.score import score_pairs
from hetmoe.scale.session import PoolSpec

EXPERTS, ROUTER = ["static", "wordllama"], "static"
BLOCK = 60  # pairs per part: several parts, queries of ~22 pairs never split
Local = tuple[pl.DataFrame, dict, list[str]]  # one local run: output, summary, warning lines


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hetmoe.data.demo import generate_demo
    from hetmoe.experts.card import get_card
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig
    from hetmoe.store.embed import embed_dataset

    root = tmp_path_factory.mktemp("score")
    generate_demo(root / "data", items_per_market=30, queries_per_market=16, seed=0, markets=["TH", "ID", "VN"])
    for name in EXPERTS:
        embed_dataset(root / "data", get_card(name), root / "stores", progress=False)
    fit(root / "data", root / "stores", root / "model", EXPERTS, k=1, variants=(), router_expert=ROUTER,
        train_config=TrainConfig(max_epochs=2), routers=["hard"])  # a learned router, read on every query
    return root


@pytest.fixture(scope="module")
def pairs(built: Path) -> tuple[Path, int]:
    """Valid judgments by query_id (stored vectors), train queries by text (encoded), and three rows that cannot be
    scored: an unknown item id, an unknown query id, an unknown market. Returns the file and the valid pair count."""
    data = built / "data"
    queries = pl.read_parquet(data / "queries.parquet")
    judged = pl.read_parquet(data / "judgments.parquet").join(queries.select("query_id", "market", "text"), on="query_id")
    valid = judged.filter(pl.col("split") == "valid").select("query_id", pl.lit(None, pl.String).alias("query"), "market", "item_id")
    first = judged.filter(pl.col("split") == "train")["query_id"].unique(maintain_order=True).head(6)
    texts = (judged.filter(pl.col("query_id").is_in(first.implode()))
             .select(pl.lit(None, pl.String).alias("query_id"), pl.col("text").alias("query"), "market", "item_id"))
    odd = pl.DataFrame({"query_id": [valid["query_id"][0], "no-such-query", None], "query": [None, None, "kettle"],
                        "market": [valid["market"][0], "TH", "ZZ"], "item_id": ["no-such-item", valid["item_id"][0], valid["item_id"][0]]})
    path = built / "pairs.parquet"
    pl.concat([valid, texts, odd]).write_parquet(path)
    return path, valid.height


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def local(built: Path, pairs: tuple[Path, int]) -> Local:
    """One local run: its output, summary and warning lines."""
    out, logger, handler = built / "local" / "scores.parquet", logging.getLogger("hetmoe.scale.score"), _Lines()
    logger.addHandler(handler)
    try:
        summary = score_pairs(built / "model", pairs[0], out, block_pairs=BLOCK, progress=False)
    finally:
        logger.removeHandler(handler)
    return pl.read_parquet(out), summary, handler.lines


def test_judged_pairs_score_as_eval_scores_them(built: Path, pairs: tuple[Path, int], local: Local) -> None:
    from hetmoe.moe.evaluate import score_net
    from hetmoe.moe.features import load_pairs
    from hetmoe.moe.fit import load_data
    from hetmoe.moe.infer import MoEModel

    moe = MoEModel.load(built / "model")
    judged = load_pairs(load_data(built / "data"), moe.store_root, moe.experts, ["valid"], moe.spec.router_expert,
                        markets=moe.markets, neighbourhood=moe.spec.item_neighbourhood)
    reference, _ = score_net(moe, judged)
    eval_scores = pl.DataFrame({"query_id": judged.query_ids[judged.qi].tolist(),
                                "item_id": judged.item_ids[judged.di].tolist(), "eval": reference})
    scored, summary, _ = local
    both = scored.join(eval_scores, on=["query_id", "item_id"])
    assert both.height == pairs[1] and summary["blocks"] > 2 and summary["stored_query_vectors"]
    assert (both["score"] == both["eval"]).all()  # bit for bit: bulk scoring and eval build features one way
    assert set(both["experts"].unique().to_list()) <= set(EXPERTS)  # k=1: one routed expert per query


def test_stacked_head_reading_neighbourhoods_and_the_router_serves_what_eval_scores(built: Path) -> None:
    """The stacked head (whichever head won) reads item neighbourhoods and the router expert on every query; the
    Scorer, given the stored query vectors, returns eval's scores pair for pair."""
    from hetmoe.moe.artifacts import read_config
    from hetmoe.moe.evaluate import score_net
    from hetmoe.moe.features import load_pairs
    from hetmoe.moe.fit import load_data
    from hetmoe.moe.infer import MoEModel

    folder = built / "model" if read_config(built / "model")["kind"] == "stacked" else built / "model" / "variants" / "moe-stacked"
    moe = MoEModel.load(folder)
    assert moe.stack is not None and moe.spec.item_neighbourhood and moe.spec.stack_router
    data = load_data(built / "data")
    judged = load_pairs(data, moe.store_root, moe.experts, ["valid"], moe.spec.router_expert, markets=moe.markets,
                        neighbourhood=True)
    want, dense = score_net(moe, judged)
    assert (dense > 0).sum(axis=1).max() == 1  # k=1: one routed expert, yet the router expert's columns are read
    np.testing.assert_array_equal(served_scores(folder, built / "data", data, judged), want)
    without = MoEModel(replace(moe.spec, stack_router=False), moe.weights, stack=moe.stack)
    assert not np.allclose(score_net(without, judged)[0], want)  # the router's columns do reach the booster


def test_unknowns_get_null_scores_counted_in_one_line(pairs: tuple[Path, int], local: Local) -> None:
    scored, summary, warnings = local
    source = pl.read_parquet(pairs[0])
    assert scored.columns == [*source.columns, "score", "experts"] and scored.height == source.height
    assert summary["unknown"] == {"unknown_queries": 1, "unknown_markets": 1, "unknown_items": 1}
    nulls = scored.filter(pl.col("score").is_null())
    assert nulls.height == 3 and nulls["experts"].is_null().all()
    assert "no-such-item" in nulls["item_id"].to_list() and "no-such-query" in nulls["query_id"].to_list()
    assert "ZZ" in nulls["market"].to_list()
    texts = scored.filter(pl.col("query").is_not_null() & pl.col("score").is_not_null())
    assert texts.height > 50 and texts["score"].is_between(0, 1).all() and texts["experts"].is_not_null().all()
    assert len(warnings) == 1 and "3 of" in warnings[0] and "have no score" in warnings[0] and "(ZZ)" in warnings[0]


def test_parts_resume_and_refuse_another_run(built: Path, pairs: tuple[Path, int], local: Local,
                                            tmp_path: Path) -> None:
    out = tmp_path / "scored" / "scores.parquet"  # `score --out` is a folder; the scores are OUT/scores.parquet
    shutil.copytree(parts_dir(built / "local" / "scores.parquet"), parts_dir(out))  # as if a run died after its parts
    args = ["score", "--model", str(built / "model"), "--pairs", str(pairs[0]), "--out", str(out.parent),
            "--block-pairs", str(BLOCK)]
    part_file(parts_dir(out), 1).unlink()
    stats_file(parts_dir(out), 1).unlink()
    again = CliRunner().invoke(app, args)
    summary = json.loads(again.output.strip().splitlines()[-1])
    assert summary["blocks_resumed"] == summary["blocks"] - 1
    assert pl.read_parquet(out).equals(local[0])
    other = tmp_path / "other.parquet"
    pl.read_parquet(pairs[0]).head(10).write_parquet(other)
    refused = CliRunner().invoke(app, [*args[:3], "--pairs", str(other), *args[5:]])
    assert isinstance(refused.exception, HetmoeError)
    assert "pairs differ" in str(refused.exception) and "--overwrite" in str(refused.exception)


def test_ids_of_another_dataset_are_encoded_from_its_texts(built: Path, pairs: tuple[Path, int], local: Local,
                                                          tmp_path: Path) -> None:
    shutil.copytree(built / "data", tmp_path / "data")  # same queries, but not the folder the stores were built from
    summary = score_pairs(built / "model", pairs[0], tmp_path / "s.parquet", data_dir=tmp_path / "data", block_pairs=BLOCK,
                          progress=False)
    assert not summary["stored_query_vectors"] and summary["scored"] == local[1]["scored"]
    encoded = pl.read_parquet(tmp_path / "s.parquet")["score"].to_numpy()
    stored = local[0]["score"].to_numpy()
    assert np.allclose(encoded, stored, atol=5e-3, equal_nan=True)  # float32 encodings vs their float16 copies


def test_unscorable_pairs_files_are_refused_in_one_line(tmp_path: Path) -> None:
    from hetmoe.scale.pairs import read_pairs

    for frame, message in ((pl.DataFrame({"query_id": ["q"]}), "needs an item_id column"),
                           (pl.DataFrame({"query": ["q"], "item_id": ["i"]}), "need a market column"),
                           (pl.DataFrame({"query_id": ["q"], "item_id": ["i"], "score": [1.0]}), "written by score")):
        frame.write_parquet(tmp_path / "p.parquet")
        with pytest.raises(HetmoeError, match=message) as err:
            read_pairs(tmp_path / "p.parquet")
        assert "\n" not in str(err.value)


def test_ray_engine_equals_local(built: Path, pairs: tuple[Path, int], local: Local, tmp_path: Path) -> None:
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, logging_level="WARNING")
    try:
        summary = score_pairs(built / "model", pairs[0], tmp_path / "ray.parquet", "ray", PoolSpec(workers=2),
                              block_pairs=BLOCK, progress=False)
    finally:
        ray.shutdown()
    assert summary["engine"] == "ray" and summary["workers"] == 2
    ray_scores = pl.read_parquet(tmp_path / "ray.parquet")
    assert ray_scores.equals(local[0])
    assert np.isfinite(ray_scores["score"].drop_nulls().to_numpy()).all()
