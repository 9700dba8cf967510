"""``hetmoe diagnose`` end to end on tiny stores written by real experts (static and wordllama) via ``hetmoe embed``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.dataset import load_dataset, write_dataset
from hetmoe.diagnose.run import diagnose, sample_vectors

EXPERTS = ["static", "wordllama"]
N_ITEMS = 120  # 40 demo items in each of 3 markets


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo data (120 items), static and wordllama stores, and a tiny stage-two model trained on them."""
    from hetmoe.data.demo import generate_demo
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig

    root = tmp_path_factory.mktemp("diagnose")
    generate_demo(root / "data", items_per_market=40, queries_per_market=10, seed=0, markets=["TH", "ID", "VN"])
    for expert in EXPERTS:
        result = CliRunner().invoke(app, ["embed", "--expert", expert, "--data", str(root / "data"), "--store", str(root / "stores")])
        assert result.exit_code == 0, result.output
    fit(root / "data", root / "stores", root / "model", EXPERTS, k=1, variants=(), router_expert="static",
        train_config=TrainConfig(max_epochs=2))
    return root


@pytest.fixture(scope="session")
def store(demo: Path) -> Path:
    return demo / "stores"


@pytest.fixture(scope="session")
def partial_store(demo: Path) -> Path:
    """static over every demo item, wordllama over all but every third one: the experts share only some ids."""
    root = demo / "partial"
    shutil.copytree(demo / "stores" / "static", root / "stores" / "static")
    data = load_dataset(demo / "data")
    kept = data.items.filter(pl.int_range(pl.len()) % 3 != 0)
    write_dataset(root / "data", kept, data.queries, data.judgments.filter(pl.col("item_id").is_in(kept["item_id"].implode())))
    result = CliRunner().invoke(app, ["embed", "--expert", "wordllama", "--data", str(root / "data"), "--store", str(root / "stores")])
    assert result.exit_code == 0, result.output
    return root / "stores"


def test_cli_writes_json_markdown_and_figures(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "diag"
    result = CliRunner().invoke(app, ["diagnose", "--store", str(store), "--out", str(out), "--sample", "100", "--neighbours", "5"])
    assert result.exit_code == 0, result.output
    assert "concatenation" in result.output
    report = json.loads((out / "diagnose.json").read_text())
    assert report["n_items"] == 100 and report["k"] == 5
    assert set(report["experts"]) == {"static", "wordllama"}
    static = report["experts"]["static"]
    assert static["dim"] == 64 and len(static["spectrum"]) == 64
    assert -1.0 <= static["mean_pair_cosine"] <= 1.0 and 0.0 <= static["isoscore"] <= 1.0
    assert 1.0 <= static["effective_rank"] <= 64.0
    cka = np.asarray(report["pairwise"]["linear_cka"])
    assert np.allclose(np.diag(cka), 1.0) and np.allclose(cka, cka.T) and 0.0 < cka[0, 1] < 1.0
    fused = report["fusion"]
    assert fused["concatenation"]["width"] == 64 + 256 and fused["average"]["width"] == 256
    assert fused["concatenation"]["norm_shrinkage"]["mean"] == pytest.approx(1.0, abs=1e-9)
    assert 1.0 / np.sqrt(2) - 0.05 < fused["average"]["norm_shrinkage"]["mean"] <= 1.0
    for name in ("spectra.png", "similarity.png", "fusion.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in (out / "diagnose.md").read_text()
    assert sorted(report["files"]) == sorted(p.name for p in out.iterdir())


def test_sample_uses_only_ids_every_expert_has(partial_store: Path, tmp_path: Path) -> None:
    """wordllama lacks every third item: asking for more than the overlap yields exactly the shared 80."""
    report = diagnose(partial_store, tmp_path, sample=10_000, k=5)
    assert report["n_items"] == 80
    ids, vectors = sample_vectors(partial_store, EXPERTS, 10_000, seed=0)
    kept = set(load_dataset(partial_store.parent / "data").items["item_id"].to_list())
    assert len(ids) == 80 and set(ids) == kept
    assert vectors["static"].shape == (80, 64) and vectors["wordllama"].shape == (80, 256)
    alone = diagnose(partial_store, tmp_path / "static", sample=10_000, experts=["static"], k=5)
    assert alone["n_items"] == N_ITEMS and "fusion" not in alone
    assert "similarity.png" not in alone["files"]


def test_model_projections_are_what_gets_fused(demo: Path, tmp_path: Path) -> None:
    from hetmoe.moe.infer import MoEModel

    model = MoEModel.load(demo / "model")
    out = tmp_path / "diag"
    result = CliRunner().invoke(app, ["diagnose", "--store", str(demo / "stores"), "--model", str(demo / "model"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    fused = json.loads((out / "diagnose.json").read_text())["fusion"]
    rank = model.spec.rank
    assert "projections of the model" in fused["basis"] and fused["basis"].endswith(f"trained to {model.spec.fusion}")
    assert fused["average"]["width"] == rank and fused["concatenation"]["width"] == 2 * rank
    assert set(fused["projection_knn_overlap"]) == set(EXPERTS)
    ids, vectors = sample_vectors(demo / "stores", EXPERTS, 5000, seed=0)
    projected = {e: model.project_items(e, v) for e, v in vectors.items()}
    norms = [np.linalg.norm(projected[e], axis=1) for e in EXPERTS]
    shrink = np.linalg.norm((projected["static"] + projected["wordllama"]) / 2, axis=1) / ((norms[0] + norms[1]) / 2)
    assert fused["average"]["norm_shrinkage"]["mean"] == pytest.approx(float(shrink.mean()), rel=1e-5)
    assert "projection alone" in (out / "diagnose.md").read_text()


def test_same_seed_same_numbers(store: Path, tmp_path: Path) -> None:
    first = diagnose(store, tmp_path / "a", sample=60, seed=3, k=5)
    second = diagnose(store, tmp_path / "b", sample=60, seed=3, k=5)
    assert first["experts"] == second["experts"] and first["fusion"] == second["fusion"]
    ids3, _ = sample_vectors(store, EXPERTS, 60, seed=3)
    ids4, _ = sample_vectors(store, EXPERTS, 60, seed=4)
    assert len(ids3) == len(ids4) == 60 and set(ids3) != set(ids4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "{tmp}/nowhere"], "no such store folder"),
        (["--store", "{tmp}"], "no expert with a complete items.zarr"),
        (["--store", "{store}", "--expert", "minilm"], "cannot diagnose minilm"),
        (["--store", "{store}", "--model", "{tmp}"], "no config.json"),
        (["--store", "{partial}", "--model", "{model}"], "was trained on a different 'wordllama' items store"),
    ],
)
def test_user_errors_are_one_line(demo: Path, partial_store: Path, tmp_path: Path, args: list[str], message: str) -> None:
    filled = [a.format(tmp=tmp_path, store=demo / "stores", partial=partial_store, model=demo / "model") for a in args]
    result = CliRunner().invoke(app, ["diagnose", *filled, "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert message in str(result.exception)
