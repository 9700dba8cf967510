"""FAISS item index over a real ``static`` store: exact results for flat, recall for the approximate kinds, id
mapping, dimension checks, and refusal of an index built over an older store."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from store_data import make_catalog

from hetmoe.errors import HetmoeError
from hetmoe.experts.card import get_card
from hetmoe.experts.registry import build_encoder
from hetmoe.store.embed import embed_dataset
from hetmoe.store.index import (
    HNSW_EF_SEARCH,
    ItemIndex,
    build_index,
    exact_neighbours,
    make_index,
    recall_against,
    tune,
)
from hetmoe.store.zarr_store import open_expert

N_ITEMS = 12_000  # enough to train ivf-pq


@pytest.fixture(scope="module")
def encoder():
    return build_encoder(get_card("static"))


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory, encoder) -> Path:
    root = tmp_path_factory.mktemp("index")
    catalog = make_catalog(root / "data", N_ITEMS, n_queries=200, seed=3)
    embed_dataset(catalog, get_card("static"), root / "stores", encoder=encoder, progress=False)
    return root / "stores"


def _exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    x = items / np.linalg.norm(items, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q @ x.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(scores, top, axis=1)


def test_auto_is_exact_for_small_catalogs(store_root: Path) -> None:
    result = build_index(store_root, "static")
    assert result["kind"] == "flat" and "recall@10" not in result and Path(result["path"]).is_file()
    stores = open_expert(store_root, "static")
    items = stores.items.load().astype(np.float32)
    queries = stores.queries.load().astype(np.float32)[:20] * 3.0  # scale: search must normalise
    ids, scores = ItemIndex.load(store_root, "static").search(queries, 10)
    assert ids.shape == scores.shape == (20, 10) and scores.dtype == np.float32
    _, exact_scores = _exact_top(items, queries, 10)
    assert np.allclose(scores, exact_scores, atol=1e-4)
    unit = stores.items.get(ids.reshape(-1)).reshape(20, 10, -1)
    unit /= np.linalg.norm(unit, axis=2, keepdims=True)
    direct = np.einsum("qkd,qd->qk", unit, queries / np.linalg.norm(queries, axis=1, keepdims=True))
    assert np.allclose(direct, scores, atol=1e-4)  # ids map back to the rows that produced the scores


@pytest.mark.parametrize("kind", ["hnsw", "ivf-pq"])
def test_approximate_kinds_reach_recall(store_root: Path, kind: str) -> None:
    result = build_index(store_root, "static", kind=kind)
    assert result["kind"] == kind and result["recall@10"] >= 0.95
    stores = open_expert(store_root, "static")
    queries = stores.queries.load().astype(np.float32)
    ids, _ = ItemIndex.load(store_root, "static").search(queries, 10)
    top, _ = _exact_top(stores.items.load().astype(np.float32), queries, 10)
    exact_ids = stores.items.ids[top]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)])
    assert recall >= 0.9


def test_tune_raises_the_search_knob_until_the_target_recall() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20_000, 32)).astype(np.float32)  # isotropic: the hardest case for a graph or IVF index
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = x[:200] + 0.3 * rng.standard_normal((200, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = exact_neighbours(x, queries)
    for kind, knob in (("hnsw", "efSearch"), ("ivf-pq", "nprobe")):
        index, params = make_index(kind, x)
        params[knob] = 1 if kind == "ivf-pq" else 10  # start low, so the target is out of reach at first
        before = (tune(index, kind, dict(params), queries, truth, target=0.0), params[knob])
        reached = tune(index, kind, params, queries, truth, target=0.95)
        assert before[0] < 0.95 < reached and params[knob] > before[1], (kind, before, reached, params)
        assert recall_against(index, queries, truth) == reached  # the index keeps the tuned setting


def test_build_index_tunes_to_the_target_and_loads_the_tuned_setting(store_root: Path) -> None:
    easy = build_index(store_root, "static", kind="hnsw", target_recall=0.5)
    assert easy["params"]["efSearch"] == HNSW_EF_SEARCH and easy["recall_queries"] == 100
    strict = build_index(store_root, "static", kind="hnsw", target_recall=1.0)
    assert strict["params"]["efSearch"] > HNSW_EF_SEARCH and strict["recall@10"] >= easy["recall@10"]
    assert ItemIndex.load(store_root, "static").index.hnsw.efSearch == strict["params"]["efSearch"]
    with pytest.raises(HetmoeError, match="--target-recall 1.5: must be in"):
        build_index(store_root, "static", kind="hnsw", target_recall=1.5)


def test_search_checks_dimension_and_pads_large_k(store_root: Path) -> None:
    build_index(store_root, "static", kind="flat")
    index = ItemIndex.load(store_root, "static")
    with pytest.raises(ValueError, match=r"\(n, 64\)"):
        index.search(np.ones((2, 32), dtype=np.float32), 5)
    ids, scores = index.search(np.ones(64, dtype=np.float32), N_ITEMS + 3)
    assert ids.shape == (1, N_ITEMS + 3) and (ids[0, -3:] == "").all() and np.isneginf(scores[0, -3:]).all()
    assert len(set(ids[0, :N_ITEMS])) == N_ITEMS


def test_cli_index_and_stale_index_refused(tmp_path: Path, store_root: Path, encoder) -> None:
    root = tmp_path / "stores"
    shutil.copytree(store_root, root)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-c", "from hetmoe.cli import main; main()", "index", "--expert", "static", "--store", str(root)]
    out = subprocess.run([*cli, "--kind", "hnsw"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["recall@10"] >= 0.95  # the JSON is the last line
    bad = subprocess.run([*cli, "--kind", "lsh"], env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "error: --kind 'lsh' is unknown" in bad.stderr
    saved = {p.name: p.read_bytes() for p in (root / "static").glob("items.faiss*")}
    changed = make_catalog(tmp_path / "changed", N_ITEMS, n_queries=200, seed=3, tweak=" new")
    embed_dataset(changed, get_card("static"), root, overwrite=True, encoder=encoder, progress=False)
    with pytest.raises(HetmoeError, match="no item index"):  # --overwrite removed the old index with the old store
        ItemIndex.load(root, "static")
    for name, blob in saved.items():  # an index copied in from elsewhere
        (root / "static" / name).write_bytes(blob)
    with pytest.raises(HetmoeError, match="index does not match the current item store .*hetmoe index --expert static"):
        ItemIndex.load(root, "static")
