"""``embed --engine ray`` on a local 2-CPU Ray (one session for the module): the store equals the single-process one
bit for bit with the same manifest; a worker that really dies (os._exit) mid-run is either restarted by Ray or, with
no retries, ends the run, and a re-run finishes only the missing chunks, giving the identical store."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray
from store_data import make_catalog
from typer.testing import CliRunner

from hetmoe import EmbeddingStore
from hetmoe.cli import app
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard, get_card
from hetmoe.scale.ray_embed import DIE_AFTER_ENV, embed_dataset_ray
from hetmoe.scale.session import PoolSpec
from hetmoe.store.embed import embed_dataset
from hetmoe.store.layout import completed_chunks, part_path, read_manifest

CHUNK = 256
N_ITEMS = 3000  # 12 item chunks + 1 query chunk


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def card() -> ExpertCard:
    return get_card("wordllama")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("catalog"), N_ITEMS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, catalog: Path, card: ExpertCard) -> Path:
    root = tmp_path_factory.mktemp("ref")
    assert embed_dataset(catalog, card, root, chunk_size=CHUNK, progress=False)["complete"]
    return root


def _same_vectors(a: Path, b: Path) -> None:
    for part in ("items", "queries"):
        left, right = EmbeddingStore.open(part_path(a, "wordllama", part)), EmbeddingStore.open(part_path(b, "wordllama", part))
        assert np.array_equal(left.ids, right.ids)
        assert left.load().tobytes() == right.load().tobytes()


def _identity(root: Path) -> dict:
    manifest = read_manifest(root / "wordllama")
    assert manifest is not None and manifest["complete"]
    return {k: v for k, v in manifest.items() if k != "timing"}  # timing: measured seconds


def test_cli_ray_store_equals_single_process_store(local_ray: None, tmp_path: Path, catalog: Path, reference: Path) -> None:
    args = ["embed", "-e", "wordllama", "--data", str(catalog), "--store", str(tmp_path), "--chunk-size", str(CHUNK),
            "--engine", "ray", "--ray-workers", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["engine"] == "ray" and summary["workers"] == 2 and summary["complete"]
    assert summary["parts"]["items"]["rows_encoded"] == N_ITEMS and summary["parts"]["items"]["chunks"] == 12
    _same_vectors(tmp_path, reference)
    assert _identity(tmp_path) == _identity(reference)
    again = embed_dataset_ray(catalog, get_card("wordllama"), tmp_path, PoolSpec(workers=2), progress=False)
    assert again["complete"] and again["workers"] == 0  # a finished store is not even sent to Ray


def test_killed_worker_ends_run_and_rerun_gives_identical_store(
    local_ray: None, tmp_path: Path, catalog: Path, reference: Path, card: ExpertCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    undeclared = dataclasses.replace(card, dim=None)  # the driver asks a Ray task for the width
    monkeypatch.setenv(DIE_AFTER_ENV, "2")  # every worker process exits for real after writing its second chunk
    with pytest.raises(HetmoeError, match=r"a Ray worker died .*run the same command again to resume") as err:
        embed_dataset_ray(catalog, undeclared, tmp_path, PoolSpec(workers=2, retries=0), chunk_size=CHUNK, progress=False)
    assert "\n" not in str(err.value)
    written = len(completed_chunks(part_path(tmp_path, "wordllama", "items")))
    assert 2 <= written < 12
    with pytest.raises(HetmoeError, match="incomplete store"):
        EmbeddingStore.open(part_path(tmp_path, "wordllama", "items"))
    # The re-run's workers die too, every 4 chunks: Ray restarts them and retries their unit, which finds its chunk
    # already marked; the run completes and only the missing chunks were encoded.
    monkeypatch.setenv(DIE_AFTER_ENV, "4")
    rerun = embed_dataset_ray(catalog, undeclared, tmp_path, PoolSpec(workers=2, retries=3), progress=False)
    assert rerun["complete"] and 0 < rerun["parts"]["items"]["rows_encoded"] <= N_ITEMS - 2 * CHUNK
    assert read_manifest(tmp_path / "wordllama")["dim"] == 256
    _same_vectors(tmp_path, reference)


def test_ray_rejects_shard(tmp_path: Path, catalog: Path) -> None:
    args = ["embed", "-e", "wordllama", "--data", str(catalog), "--store", str(tmp_path), "--engine", "ray", "--shard", "0/2"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, HetmoeError) and "drop --shard" in str(result.exception)
    assert not (tmp_path / "wordllama").exists()


def test_default_engine_never_imports_ray(tmp_path: Path, catalog: Path) -> None:
    code = ("import sys; from hetmoe.cli import app; "
            f"app(['embed', '-e', 'wordllama', '--data', {str(catalog)!r}, '--store', {str(tmp_path)!r}], standalone_mode=False); "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert EmbeddingStore.open(part_path(tmp_path, "wordllama", "items")).ids.shape == (N_ITEMS,)
