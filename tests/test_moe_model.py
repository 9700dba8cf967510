"""fit / evaluate / artifacts on a tiny demo catalog embedded with the real fast experts (static, wordllama)."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.errors import HetmoeError
from hetmoe.moe.evaluate import evaluate, model_pairs, score_net
from hetmoe.moe.fit import fit, load_data, training_pairs
from hetmoe.moe.infer import MoEModel
from hetmoe.metrics import auc_by_market
from hetmoe.metrics import macro as macro_auc
from hetmoe.moe.rule import fit_rule_table
from hetmoe.moe.train import TrainConfig

EXPERTS = ["static", "wordllama"]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from hetmoe.data.demo import generate_demo
    from hetmoe.experts.card import get_card
    from hetmoe.store.embed import embed_dataset

    root = tmp_path_factory.mktemp("moe")
    data = generate_demo(root / "data", items_per_market=40, queries_per_market=16, seed=1, markets=("ID", "TH", "SG"))
    for expert in EXPERTS:
        embed_dataset(data, get_card(expert), root / "stores", progress=False)
    model = fit(data, root / "stores", root / "model", EXPERTS, k=1, seed=0, router_expert="static",
                train_config=TrainConfig(max_epochs=4, patience=2))
    return {"root": root, "data": data, "stores": root / "stores", "model": model}


def test_fit_writes_main_model_and_every_variant(built: dict[str, Path]) -> None:
    index = json.loads((built["model"] / "fit.json").read_text())
    selection = index["moe_selection"]
    other = "moe:net" if selection["head"] == "stacked" else "moe:stacked"
    stacked_router = max(selection["stacked_by_router"], key=selection["stacked_by_router"].get)
    # the fusions' like-for-like twins: concatenation under their router and k (learned, k=1), net and stacked
    twins = {"concat": selection["net_router"] != "hard-k1", "concat:stacked": stacked_router != "hard-k1"}
    assert set(index["variants"]) == {"moe", other, "weighted", "weighted:stacked", "average", "average:stacked", "soft",
                                      "concat-all", "rule", "single:static", "single:wordllama", "lightgbm",
                                      *(name for name, saved in twins.items() if saved)}
    heads = {"net": "moe" if selection["head"] == "net" else "moe:net",
             "stacked": "moe" if selection["head"] == "stacked" else "moe:stacked"}
    assert selection["fusion_twin"] == {"net": "concat" if twins["concat"] else heads["net"],
                                        "stacked": "concat:stacked" if twins["concat:stacked"] else heads["stacked"]}
    kinds = {"weighted:stacked": "stacked", "average:stacked": "stacked",
             **{name: head for head, name in selection["fusion_twin"].items()}}
    for name, kind in kinds.items():
        twin = json.loads((built["model"] / index["variants"][name] / "config.json").read_text())
        assert twin["spec"]["router"] == "hard" and twin["spec"]["k"] == 1 and twin["kind"] == kind, name
    made = index["made"]
    assert made["cpu"] and made["training_threads"] == 1 and made["workers"] >= 1 and "torch" in made["libraries"]
    # k=1 of two experts: learned and rule routing were both tried, and the better held-out macro AUC won
    tried = {c["name"]: c["stop_auc_macro"] for c in selection["candidates"]}
    assert set(tried) == {"hard-k1", "rule-k1"} and tried[selection["net_router"]] == max(tried.values())
    assert selection["heads"][selection["head"]] == max(selection["heads"].values())
    # each router kind's best candidate got a stacked head, and the best of those is the stacked head
    assert set(selection["stacked_by_router"]) == {"hard-k1", "rule-k1"}
    assert selection["heads"]["stacked"] == max(selection["stacked_by_router"].values())
    winner = selection["net_router"] if selection["head"] == "net" else max(
        selection["stacked_by_router"], key=selection["stacked_by_router"].get)
    assert selection["router"] == winner
    kind = json.loads((built["model"] / "config.json").read_text())["kind"]
    assert kind == ("stacked" if selection["head"] == "stacked" else "net")
    config = json.loads((built["model"] / "config.json").read_text())
    assert config["splits"]["eval_split"] == "test" and config["splits"]["early_stopping"] == "split 'valid'"
    for expert in EXPERTS:
        assert config["experts"][expert]["card_hash"] and config["experts"][expert]["items_fingerprint"]
    model = MoEModel.load(built["model"])
    assert model.experts == EXPERTS and model.k == 1
    assert model.router_expert == ("static" if selection["router"].startswith("hard") else None)
    # concat-all is the teacher (trained on labels alone); every other net variant learned from its logits too.
    assert config["distilled_from"] == "concat-all" and config["train_config"]["distill_weight"] == 0.5
    teacher = json.loads((built["model"] / "variants" / "concat-all" / "config.json").read_text())
    assert teacher["distilled_from"] is None
    assert json.loads((built["model"] / "variants" / "weighted" / "config.json").read_text())["distilled_from"] == "concat-all"


def test_artifacts_round_trip_to_identical_scores(built: dict[str, Path], tmp_path: Path) -> None:
    dataset = load_data(built["data"])
    model = MoEModel.load(built["model"])
    pairs = model_pairs(model, dataset, ["test"], built["stores"])
    before, _ = score_net(model, pairs)
    copy = tmp_path / "copy"
    shutil.copytree(built["model"], copy, ignore=shutil.ignore_patterns("variants", "report"))
    after, _ = score_net(MoEModel.load(copy), pairs)
    np.testing.assert_array_equal(before, after)


def test_loading_refuses_a_changed_store(built: dict[str, Path], tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    shutil.copytree(built["stores"], stores)
    manifest_path = stores / "wordllama" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["parts"]["items"]["input_fingerprint"] = "0" * 16  # as if embedded from another catalog
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(HetmoeError, match="different 'wordllama' items store"):
        MoEModel.load(built["model"], store_root=stores)


def test_evaluate_report_matches_sklearn_and_has_stable_keys(built: dict[str, Path]) -> None:
    out = built["root"] / "report"
    report = evaluate(built["model"], built["data"], "test", out)
    assert {"single:static", "single:wordllama", "concat-all", "weighted", "average", "rule", "soft", "moe", "lightgbm"} <= set(report["variants"])
    for v in report["variants"].values():
        assert {"auc", "auc_macro", "auc_by_market", "ndcg10", "experts_per_query", "routing_share"} <= set(v)
    assert report["variants"]["moe"]["experts_per_query"] == pytest.approx(1.0)
    assert report["variants"]["concat-all"]["experts_per_query"] == pytest.approx(2.0)
    cmp = report["moe_vs_best_single"]
    assert cmp["ci95"][0] <= cmp["delta_auc"] <= cmp["ci95"][1]
    # Recompute the MoE's pooled AUC independently with sklearn.
    dataset = load_data(built["data"])
    model = MoEModel.load(built["model"])
    pairs = model_pairs(model, dataset, ["test"], built["stores"])
    scores, _ = score_net(model, pairs)
    assert report["variants"]["moe"]["auc"] == pytest.approx(roc_auc_score(pairs.y, scores), abs=1e-12)
    saved = json.loads((out / "report.json").read_text())
    assert saved["split"] == "test" and "delta_auc_macro" in saved["moe_vs_best_single"]
    macro = {name: v["auc_macro"] for name, v in report["variants"].items()}
    twin = json.loads((built["model"] / "fit.json").read_text())["moe_selection"]["fusion_twin"]
    # like against like: each fusion against concatenation with the same head (and router and k)
    assert set(saved["fusions"]) == {"net", "stacked"}
    for head, row in saved["fusions"].items():
        assert row["concat"] == twin[head] and row["router"] == "hard-k1"
        rivals = ["weighted", "average"] if head == "net" else ["weighted:stacked", "average:stacked"]
        assert list(row["vs"]) == rivals and all(row["routers"][r] == "hard-k1" for r in rivals)
        for rival, fused in row["vs"].items():
            assert fused["delta_auc_macro"] == pytest.approx(macro[row["concat"]] - macro[rival], abs=1e-9)
            assert fused["ci95_macro"][0] <= fused["delta_auc_macro"] <= fused["ci95_macro"][1]
    gain = saved["stacked_gain"]  # the stacked MoE against the same model through its net head alone
    assert gain["stacked"] in ("moe", "moe:stacked")
    stacked_moe = MoEModel.load(built["model"] / ("." if gain["stacked"] == "moe" else "variants/moe-stacked"))
    assert stacked_moe.stack is not None and gain["router"] == stacked_moe.config["router"]
    own_pairs = model_pairs(stacked_moe, dataset, ["test"], built["stores"])
    own_net, _ = score_net(replace(stacked_moe, stack=None), own_pairs)
    net_macro = macro_auc(auc_by_market(own_net, own_pairs.y, own_pairs.market_names))
    assert gain["delta_auc_macro"] == pytest.approx(macro[gain["stacked"]] - net_macro, abs=1e-9)
    head = saved["moe_vs_fusions"]["head"]
    for rival, fused in saved["moe_vs_fusions"]["vs"].items():
        assert rival.endswith(":stacked") == (head == "stacked")
        assert fused["delta_auc_macro"] == pytest.approx(macro["moe"] - macro[rival], abs=1e-9)
    md = (out / "report.md").read_text()
    assert "## Fusions, head for head" in md and "Stacked head's own gain" in md
    assert "moe_vs_weighted" not in saved  # the old headline put the stacked MoE against the weighted net
    made = saved["made"]
    assert made["fit"]["cpu"] == made["eval"]["cpu"] and made["seeds"] == {"training": 0, "data": 1}
    assert made["data_origin"]["seed"] == 1 and "## Where it was made" in md and "**Synthetic data**" in md
    guard = saved["market_guard"]
    assert set(guard) == set(report["markets"])
    for market, row in guard.items():
        rule = report["variants"]["rule"]["auc_by_market"][market]
        assert row["vs_rule"]["delta_auc"] == pytest.approx(report["variants"]["moe"]["auc_by_market"][market] - rule, abs=1e-9)
        lo, hi = row["vs_rule"]["ci95"]
        worse = hi < 0 or row["vs_best_single"]["ci95"][1] < 0
        assert row["flag"] == ("worse" if worse else "behind" if min(row["vs_rule"]["delta_auc"], row["vs_best_single"]["delta_auc"]) < 0 else "ok")
    assert "Per-market guard" in md
    assert (out / "report.md").read_text().startswith("# Evaluation") and (out / "report.png").stat().st_size > 1000


def test_cli_fit_router_and_eval_errors(built: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "router"  # --out is a folder, as in every command
    result = runner.invoke(app, ["fit-router", "--data", str(built["data"]), "--store", str(built["stores"]),
                                 "-e", EXPERTS[0], "--expert", ",".join(EXPERTS[1:]), "--k", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = json.loads((out / "router.json").read_text())["table"]
    assert set(table) == {"ID", "TH", "SG", "*"} and all(len(v) == 1 for v in table.values())
    # the table is read off the training pairs (not the few early-stopping ones): the one fit-head's rule routing got
    train, _, _ = training_pairs(load_data(built["data"]), built["stores"], EXPERTS, EXPERTS[0], None, 0)
    assert table == fit_rule_table(train, 1) == json.loads((built["model"] / "fit.json").read_text())["rule_table"]
    bad = runner.invoke(app, ["eval", "--model", str(tmp_path / "nope"), "--data", str(built["data"])])
    assert bad.exit_code != 0 and isinstance(bad.exception, HetmoeError)
    with pytest.raises(HetmoeError, match="k=3"):
        fit(built["data"], built["stores"], tmp_path / "m", EXPERTS, k=3)
    with pytest.raises(HetmoeError, match="unknown MoE router.*learned.*choose from hard, rule"):
        fit(built["data"], built["stores"], tmp_path / "m", EXPERTS, k=1, routers=["learned"])
    assert not (tmp_path / "m").exists()  # refused before any work


def test_fit_in_worker_processes_equals_fit_in_one(built: dict[str, Path], tmp_path: Path) -> None:
    # The fixture fitted with one worker per core (fork); the same fit in this process alone must write the same bytes.
    serial = fit(built["data"], built["stores"], tmp_path / "serial", EXPERTS, k=1, seed=0, router_expert="static",
                 train_config=TrainConfig(max_epochs=4, patience=2), workers=1)
    parallel = sorted(p.relative_to(built["model"]) for p in built["model"].rglob("*")
                      if p.suffix in (".safetensors", ".txt"))
    assert len(parallel) >= 10 and parallel == sorted(p.relative_to(serial) for p in serial.rglob("*")
                                                      if p.suffix in (".safetensors", ".txt"))
    for rel in parallel:
        assert (serial / rel).read_bytes() == (built["model"] / rel).read_bytes(), rel
    before = json.loads((built["model"] / "fit.json").read_text())["moe_selection"]
    assert json.loads((serial / "fit.json").read_text())["moe_selection"] == before
