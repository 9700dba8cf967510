"""Feature blocks as plug-ins: every module of hetmoe/pairs/blocks registers itself, a model names the extra blocks its
tree heads read, and those columns reach the trees on every path (fit, eval, the Scorer) alike."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from served import served_scores

from hetmoe.errors import HetmoeError
from hetmoe.pairs.blocks import block_names, make_block

EXPERTS, ROUTER = ["static", "wordllama"], "static"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hetmoe.data.demo import generate_demo
    from hetmoe.experts.card import get_card
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig
    from hetmoe.store.embed import embed_dataset

    root = tmp_path_factory.mktemp("blocks")
    generate_demo(root / "data", items_per_market=30, queries_per_market=16, seed=0, markets=["TH", "ID"])
    for name in EXPERTS:
        embed_dataset(root / "data", get_card(name), root / "stores", progress=False)
    fit(root / "data", root / "stores", root / "model", EXPERTS, k=1, variants=["lightgbm"], router_expert=ROUTER,
        train_config=TrainConfig(max_epochs=2), routers=["hard"], spec_overrides={"extra_blocks": ["reference_tail"]})
    return root


def test_every_module_registers_its_blocks_and_an_unknown_name_is_one_line() -> None:
    assert {"stats", "neighbourhood", "lexical", "reference_tail"} <= set(block_names())
    with pytest.raises(HetmoeError, match="unknown feature block 'nope'"):
        make_block("nope")


def test_an_extra_block_reaches_the_trees_and_is_served_as_eval_scores_it(built: Path) -> None:
    from hetmoe.moe.artifacts import read_config
    from hetmoe.moe.evaluate import model_pairs, score_net
    from hetmoe.moe.fit import load_data
    from hetmoe.moe.infer import MoEModel
    from hetmoe.moe.lgbm import LgbmModel

    lgbm = LgbmModel.load(built / "model" / "variants" / "lightgbm")
    assert lgbm.config["blocks"] == ["stats", "neighbourhood", "reference_tail"]
    folder = built / "model" if read_config(built / "model")["kind"] == "stacked" else built / "model" / "variants" / "moe-stacked"
    moe = MoEModel.load(folder)
    assert moe.spec.extra_blocks == ["reference_tail"] and "reference_tail" in moe.blocks()
    per_expert = 4 + 10 + 2  # statistics, neighbourhood, reference tail
    assert moe.stack is not None and moe.stack.booster.num_feature() == per_expert * len(EXPERTS) + 2
    data = load_data(built / "data")
    judged = model_pairs(moe, data, ["valid"])
    want, _ = score_net(moe, judged)
    tail = judged.features.block("reference_tail", "wordllama")
    stats = judged.features.block("stats", "wordllama")
    np.testing.assert_array_equal(tail[:, 1] >= 0, np.ones(len(judged), bool))  # best minus last reference cosine
    assert np.all(tail[:, 0] >= stats[:, 3])  # above the last reference cosine by at least its gap to the best
    np.testing.assert_array_equal(served_scores(folder, built / "data", data, judged), want)
