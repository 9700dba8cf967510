"""Published artifacts (manifests, chunk markers, FAISS indexes, safetensors, Zarr folders) follow the umask, so a
service account can read a store another user built (temporary files are created private, then given the mode)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_data import make_catalog

from hetmoe.experts.card import get_card
from hetmoe.files import current_umask, dir_mode, file_mode
from hetmoe.moe.infer import MoEModel
from hetmoe.moe.net import MoENet
from hetmoe.moe.spec import ModelSpec
from hetmoe.store.embed import embed_dataset
from hetmoe.store.index import build_index


@pytest.fixture(params=[0o022, 0o027], ids=["022", "027"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture
def umask_022() -> Iterator[int]:
    old = os.umask(0o022)
    try:
        yield 0o022
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


def test_umask_is_read_without_changing_it(umask: int) -> None:
    assert current_umask() == umask and file_mode() == 0o666 & ~umask and dir_mode() == 0o777 & ~umask
    assert os.umask(umask) == umask  # still in force


def test_store_index_and_weights_follow_the_umask(umask_022: int, tmp_path: Path) -> None:
    umask = umask_022
    data = make_catalog(tmp_path / "data", 40, 10)
    embed_dataset(data, get_card("static"), tmp_path / "stores", progress=False)
    build_index(tmp_path / "stores", "static")
    spec = ModelSpec(experts=["static"], dims=[64], markets=["us"], router="none", k=1)
    MoEModel(spec, MoENet(spec).numpy_weights()).save(tmp_path / "model", {"variant": "moe"})
    modes = {**_modes(tmp_path / "stores"), **{f"model/{k}": v for k, v in _modes(tmp_path / "model").items()}}
    for name in (
        "static/manifest.json",
        "static/items.zarr.done/000000",
        "static/queries.zarr.done/000000",
        "static/items.faiss",
        "static/items.faiss.json",
        "model/weights.safetensors",
        "model/config.json",
    ):
        assert modes[name] == 0o666 & ~umask, (name, oct(modes[name]))
    for name in ("static", "static/items.zarr", "static/queries.zarr", "static/items.zarr.done"):
        assert modes[name] == 0o777 & ~umask, (name, oct(modes[name]))
    odd = {n: oct(m) for n, m in modes.items() if m not in (0o666 & ~umask, 0o777 & ~umask)}
    assert not odd
