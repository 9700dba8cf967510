"""`hetmoe run`: the whole pipeline on a small real dataset, with the stable report.json contract."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.demo import generate_demo

EXPERTS = ["static", "wordllama"]
VARIANT_KEYS = {"auc", "auc_by_market", "ndcg10", "experts_per_query", "routing_share", "auc_macro"}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CliRunner]:
    root = tmp_path_factory.mktemp("pipeline")
    data = generate_demo(root / "data", items_per_market=60, queries_per_market=40, seed=3, markets=["TH", "SG", "ID"])
    out = root / "out"
    runner = CliRunner()
    args = ["run", "--data", str(data), "--out", str(out), "-e", EXPERTS[0], "-e", EXPERTS[1], "--k", "1"]
    validations = []
    with pytest.MonkeyPatch.context() as patch:  # count the dataset validations of one run
        from hetmoe.data import validate

        inspect = validate.inspect_dataset
        patch.setattr(validate, "inspect_dataset", lambda root: validations.append(root) or inspect(root))
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(validations) == 1, validations  # validated once, the checked dataset passed on to every stage
    assert "vs weighted (net heads" in result.output and "stacked head's own gain" in result.output
    return data, out, runner


def test_run_writes_stores_model_and_the_stable_report(pipeline_run: tuple[Path, Path, CliRunner]) -> None:
    _, out, _ = pipeline_run
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["split"] == "test"
    expected = {"moe", "weighted", "soft", "rule", "concat-all", "lightgbm", *(f"single:{e}" for e in EXPERTS)}
    assert expected <= set(report["variants"])
    for name, variant in report["variants"].items():
        assert VARIANT_KEYS <= set(variant), name
        assert set(variant["auc_by_market"]) == {"TH", "SG", "ID"}
        macro = sum(variant["auc_by_market"].values()) / 3
        assert variant["auc_macro"] == pytest.approx(macro)
    assert report["variants"]["moe"]["experts_per_query"] == pytest.approx(1.0)
    for expert in EXPERTS:  # each expert's raw cosine, untrained, is a row; routed to that expert alone
        zero = report["variants"][f"zero-shot:{expert}"]
        assert zero["routing_share"][expert] == 1.0 and zero["experts_per_query"] == 1.0
    moe = report["variants"]["moe"]
    assert set(moe["ranking_by_market"]) == {"TH", "SG", "ID"} and 0 < moe["mrr"] <= 1
    assert moe["ranking_macro"]["ndcg10"] == pytest.approx(sum(m["ndcg10"] for m in moe["ranking_by_market"].values()) / 3)
    assert "## Search metrics" in (out / "report" / "report.md").read_text()
    delta = report["moe_vs_best_single"]
    assert delta["ci95"][0] <= delta["delta_auc"] <= delta["ci95"][1]
    for expert in EXPERTS:
        assert (out / "stores" / expert / "items.faiss").is_file()
    md = (out / "report" / "report.md").read_text()
    assert "(diagnose/diagnose.md)" in md and (out / "report" / "diagnose" / "diagnose.json").is_file()
    assert (out / "report" / "report.png").stat().st_size > 10_000


def test_run_records_its_config_and_the_record_repeats_it(pipeline_run: tuple[Path, Path, CliRunner],
                                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """model/run.toml spells out every option; --config reads it back; options on the command line win."""
    from hetmoe.commands import pipeline

    data, out, runner = pipeline_run
    recorded = (out / "model" / "run.toml").read_text()
    assert 'experts = ["static", "wordllama"]' in recorded and "k = 1" in recorded and 'lexical = "lexical"' in recorded
    seen = []
    monkeypatch.setattr(pipeline, "run_pipeline", lambda config: seen.append(config) or {})
    monkeypatch.setattr(pipeline, "_print_summary", lambda result, report: None)
    assert runner.invoke(app, ["run", "--config", str(out / "model" / "run.toml")]).exit_code == 0
    assert runner.invoke(app, ["run", "--config", str(out / "model" / "run.toml"), "--seed", "3", "-e", "static",
                               "--no-stack", "--out", str(tmp_path / "o")]).exit_code == 0
    same, changed = seen
    assert same.data.resolve() == data.resolve() and same.out.resolve() == out.resolve()
    assert same.fit.experts == tuple(EXPERTS) and same.fit.k == 1 and same.fit.router_expert == "static"
    assert (changed.fit.seed, changed.fit.experts, changed.fit.stack, changed.fit.k) == (3, ("static",), False, 1)
    assert changed.out == tmp_path / "o"
    bad = tmp_path / "bad.toml"
    bad.write_text('data = "d"\nout = "o"\nroutes = "hard"\n')
    refused = runner.invoke(app, ["run", "--config", str(bad)])
    assert refused.exit_code != 0 and "unknown key(s) ['routes']" in str(refused.exception)
    bad.write_text('data = "d"\nout = "o"\nk = "2"\n')
    assert "k must be an integer" in str(runner.invoke(app, ["run", "--config", str(bad)]).exception)


def test_rerun_resumes_from_complete_stores(pipeline_run: tuple[Path, Path, CliRunner]) -> None:
    data, out, runner = pipeline_run
    before = {p: p.stat().st_mtime_ns for p in (out / "stores").rglob("vectors/c/*/*")}
    result = runner.invoke(app, ["run", "--data", str(data), "--out", str(out), "-e", EXPERTS[0], "-e", EXPERTS[1], "--k", "1"])
    assert result.exit_code == 0, result.output
    assert before and before == {p: p.stat().st_mtime_ns for p in (out / "stores").rglob("vectors/c/*/*")}


def test_run_refuses_a_broken_dataset_in_one_line(pipeline_run: tuple[Path, Path, CliRunner], tmp_path: Path) -> None:
    data, _, runner = pipeline_run
    broken = tmp_path / "broken"
    broken.mkdir()
    for table in ("items", "queries"):
        pl.read_parquet(data / f"{table}.parquet").write_parquet(broken / f"{table}.parquet")
    pl.read_parquet(data / "judgments.parquet").drop("split").write_parquet(broken / "judgments.parquet")
    result = runner.invoke(app, ["run", "--data", str(broken), "--out", str(tmp_path / "o"), "-e", "static"])
    assert result.exit_code != 0
    assert "split" in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "o" / "stores").exists()


def test_served_score_of_a_pair_is_the_same_alone_and_among_others(pipeline_run: tuple[Path, Path, CliRunner]) -> None:
    """Issue 16.2 end to end: the model `hetmoe run` wrote, served over HTTP, scores a pair independently of its
    companions (pagination-safe), for the stacked head with the lexical expert as run fits it."""
    from fastapi.testclient import TestClient

    from hetmoe.online.scorer import Scorer
    from hetmoe.online.service import create_app

    data, out, _ = pipeline_run
    queries = pl.read_parquet(data / "queries.parquet")
    items = pl.read_parquet(data / "items.parquet")
    scorer = Scorer.load(out / "model")
    try:
        client = TestClient(create_app(scorer))
        for text, market in queries.head(3).select("text", "market").iter_rows():
            ids = items.filter(pl.col("market") == market)["item_id"].to_list()[:40]
            crowd = client.post("/score", json={"query": text, "market": market, "item_ids": ids}).json()
            for j in (0, 17, 39):
                scorer.clear_caches()
                alone = client.post("/score", json={"query": text, "market": market, "item_ids": [ids[j]]}).json()
                assert alone["item_ids"] == [ids[j]]
                assert alone["scores"][0] == pytest.approx(crowd["scores"][j], rel=1e-6, abs=1e-7)
        assert len(set(crowd["scores"])) > 5  # the scores differ between items: the check above is not vacuous
    finally:
        scorer.close()


def test_run_summary_without_single_baselines() -> None:
    """`run --variants none` trains no single-expert baseline: the summary prints without the comparison."""
    from hetmoe.commands.pipeline import _print_summary

    row = {"auc_macro": 0.9, "auc": 0.9, "mrr": 0.8, "ndcg10": 0.7, "experts_per_query": 1.0}
    _print_summary({"dataset": "d", "split": "test", "variants": {"moe": row}}, Path("report"))


def test_demo_runs_the_cards_demo_experts_unless_given_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hetmoe.experts.card import default_experts

    seen = []
    monkeypatch.setattr("hetmoe.commands.pipeline.run_pipeline",
                        lambda config: seen.append(config) or {"dataset": "d", "split": "test", "variants": {}})
    runner = CliRunner()
    small = ["--items-per-market", "30", "--queries-per-market", "10"]
    for extra in ([], ["-e", "static,wordllama"]):
        result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), *small, *extra])
        assert result.exit_code == 0, result.output
    assert seen[0].fit.experts == tuple(default_experts(key="demo_experts")) and "e5" not in seen[0].fit.experts
    assert seen[1].fit.experts == ("static", "wordllama")
    assert json.loads((tmp_path / "demo" / "data" / "demo.json").read_text())["seed"] == 0  # the report's data seed
