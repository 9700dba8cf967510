"""The user README's commands, run as written on a tiny dataset made here: every ``hetmoe`` line of its bash blocks
through the real CLI, its ``curl`` lines against the served app, its Python block as it stands; then the model and its
stores, copied to another folder with the originals gone, load and serve there.

Two things differ from a user's machine, neither in the commands: ``$HETMOE_CARDS`` makes the two fastest real
experts the default set (the packaged default includes e5, minutes per catalog on CI), and ``hetmoe serve`` is
replaced by the app it serves, driven through FastAPI's TestClient.
"""
from __future__ import annotations

import json
import random
import re
import shlex
import shutil
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.online.scorer import Scorer
from hetmoe.online.service import create_app

DOC = Path(__file__).resolve().parents[1] / "README.md"
WORDS = "cordless drill battery lamp led ceiling sofa chair steel hammer brush paint hose garden kettle".split()


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _write_inputs(folder: Path) -> None:
    """judgments.csv (query, sku, grade, market) and catalog.csv (product_id, name, market): the README's columns."""
    rng = random.Random(0)
    items = [(f"p{i}" if m == "US" else f"s{i}", " ".join(rng.sample(WORDS, 3)), m) for m in ("US", "SG") for i in range(1, 25)]
    pl.DataFrame(items, schema=["product_id", "name", "market"], orient="row").write_csv(folder / "catalog.csv")
    rows = []
    for market in ("US", "SG"):
        ids = [i for i, _, m in items if m == market]
        for q in range(14):
            query = " ".join(rng.sample(WORDS, 2)) + f" {q}"
            rows += [(query, item, float(grade), market) for item, grade in zip(rng.sample(ids, 6), [3, 2, 0, 1, 0, 3])]
    pl.DataFrame(rows, schema=["query", "sku", "grade", "market"], orient="row").write_csv(folder / "judgments.csv")


def _tiny_model(folder: Path) -> None:
    """models/my-model: a tiny real-architecture Hugging Face model (random weights), as the README's own model."""
    from test_experts_llm import _save

    built = _save(folder / "models", "qwen3", "right")
    built.rename(folder / "models" / "my-model")


def _curl(client: TestClient, line: str) -> dict:
    args = shlex.split(line)
    url = next(a for a in args if a.startswith("localhost:"))
    body = json.loads(args[args.index("-d") + 1])
    response = client.post(url.split("localhost:8000", 1)[1], json=body)
    assert response.status_code == 200, (line, response.text)
    return response.json()


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    _write_inputs(root)
    _tiny_model(root)
    (root / "fast.toml").write_text('[defaults]\nexperts = ["static", "wordllama"]\nrouter_expert = "static"\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("HETMOE_CARDS", str(root / "fast.toml"))
        runner, served = CliRunner(), []
        for block in _blocks("bash"):
            for line in block.splitlines():
                if not line.startswith("hetmoe "):
                    continue
                args = shlex.split(line)[1:]
                if args[0] == "serve":
                    served.append(args[args.index("--model") + 1])
                    continue
                result = runner.invoke(app, args)
                assert result.exit_code == 0, (line, result.output, result.exception)
        assert served == ["runs/mine/model"]
    return root


def test_every_readme_command_runs(quickstart: Path) -> None:
    report = json.loads((quickstart / "runs" / "mine" / "report" / "report.json").read_text())
    assert {"zero-shot:static", "zero-shot:wordllama"} <= set(report["variants"])
    assert all(key in report["variants"]["moe"] for key in ("mrr", "recall10", "recall20", "ndcg5", "ndcg20"))
    assert "my-model" in (quickstart / "my-cards.toml").read_text()
    card = json.loads((quickstart / "runs" / "mine-2" / "model" / "config.json").read_text())["experts"]["my-model"]
    assert card["dim"] == 32 and card["card"]["model"].endswith("models/my-model")
    recorded = (quickstart / "runs" / "mine" / "model" / "run.toml").read_text()
    assert 'experts = ["static", "wordllama"]' in recorded and 'data = "../../../data/mine"' in recorded


def test_readme_curl_and_python_run_against_the_served_model(quickstart: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(quickstart)
    client = TestClient(create_app(Scorer.load("runs/mine/model")))
    curls = [line for block in _blocks("bash") for line in block.splitlines() if line.startswith("curl ")]
    assert len(curls) == 2
    scored, searched = (_curl(client, line) for line in curls)
    assert scored["item_ids"] == ["p1", "p2"] and len(scored["scores"]) == 2
    assert 1 <= len(searched["item_ids"]) <= 5
    (python,) = _blocks("python")
    exec(compile(python, str(DOC), "exec"), {})  # noqa: S102 - the README's own example, as a user runs it


def test_a_copied_model_serves_from_another_folder(quickstart: Path, tmp_path: Path) -> None:
    """Copy the model, its stores and its dataset elsewhere, move the originals away, and serve the copy."""
    before = Scorer.load(quickstart / "runs" / "mine" / "model").score("cordless drill", ["p1", "p2", "p3"], "US")
    moved = tmp_path / "elsewhere"
    for part in ("runs/mine/model", "runs/mine/stores", "data/mine"):
        shutil.copytree(quickstart / part, moved / part)
    gone = tmp_path / "gone"
    gone.mkdir()
    for part in ("runs", "data"):
        (quickstart / part).rename(gone / part)
    try:
        scorer = Scorer.load(moved / "runs" / "mine" / "model")
        after = scorer.score("cordless drill", ["p1", "p2", "p3"], "US")
        assert list(after.scores) == list(before.scores) and str(moved) in str(scorer.model.store_root)
        client = TestClient(create_app(scorer, api_key="k"))
        body = {"query": "cordless drill", "market": "US", "item_ids": ["p1", "p2", "p3"]}
        answered = client.post("/score", json=body, headers={"X-API-Key": "k"})
        assert answered.status_code == 200 and answered.json()["scores"] == pytest.approx(list(before.scores), abs=0)
        assert client.post("/search", json={"query": "drill", "market": "US"}, headers={"X-API-Key": "k"}).status_code == 200
    finally:
        for part in ("runs", "data"):
            (gone / part).rename(quickstart / part)


def test_openapi_docs_are_served_behind_the_api_key(quickstart: Path) -> None:
    scorer = Scorer.load(quickstart / "runs" / "mine" / "model")
    open_client, keyed = TestClient(create_app(scorer)), TestClient(create_app(scorer, api_key="secret"))
    schema = open_client.get("/openapi.json")
    assert schema.status_code == 200 and {"/score", "/search", "/healthz"} <= set(schema.json()["paths"])
    assert open_client.get("/docs").status_code == 200 and "swagger" in open_client.get("/docs").text.lower()
    for path in ("/docs", "/openapi.json"):
        assert keyed.get(path).status_code == 401
        assert keyed.get(path, headers={"X-API-Key": "secret"}).status_code == 200
    assert keyed.get("/healthz").status_code == 200
