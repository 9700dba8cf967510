"""Bringing your own model: where a card's model path points, what an empty or wrong folder is told, cuda:N, dtype,
and ``hetmoe experts add`` on a tiny real-architecture model built here (random weights, no download)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.errors import HetmoeError
from hetmoe.experts.backends.st import resolve_device, resolve_dtype
from hetmoe.experts.card import ExpertCard, get_card, load_cards
from hetmoe.experts.registry import build_encoder

ST = {"backend": "sentence-transformers", "pooling": "mean", "device": "cpu", "threads": 1}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_experts_llm import _save

    return _save(tmp_path_factory.mktemp("byo"), "qwen3", "right")


def test_a_bare_relative_model_path_is_a_path_beside_the_cards_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models" / "x").mkdir(parents=True)
    cards = tmp_path / "cards.toml"
    cards.write_text('[experts.mine]\nbackend = "sentence-transformers"\nmodel = "models/x"\n'
                     '[experts.hub]\nbackend = "sentence-transformers"\nmodel = "org/name"\n')
    monkeypatch.chdir("/")  # the rule does not depend on the folder a command runs in
    assert get_card("mine", cards).model == str(tmp_path / "models" / "x")
    assert get_card("hub", cards).model == "org/name"  # nothing of that name beside the file: a hub id


def test_user_cards_add_to_and_override_the_packaged_ones(tmp_path: Path) -> None:
    cards = tmp_path / "cards.toml"
    cards.write_text('[experts.static]\nbackend = "model2vec"\nmodel = "pkg:static_model/model"\nbatch_size = 7\n'
                     '[experts.mine]\nbackend = "model2vec"\nmodel = "pkg:static_model/model"\n')
    merged = load_cards(cards)
    assert merged["static"].batch_size == 7 and "mine" in merged and "e5" in merged  # no [defaults] needed
    only_defaults = tmp_path / "defaults.toml"
    only_defaults.write_text('[defaults]\nexperts = ["static", "wordllama"]\n')
    assert len(load_cards(only_defaults)) == len(load_cards())
    (tmp_path / "empty.toml").write_text("# nothing\n")
    with pytest.raises(HetmoeError, match="no \\[experts.<name>\\] tables and no \\[defaults\\]"):
        load_cards(tmp_path / "empty.toml")


def test_an_empty_or_modelless_folder_is_named_as_such(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HetmoeError, match=f"model folder {empty} is empty"):
        build_encoder(ExpertCard(name="e", model=str(empty), **ST))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("not a model")
    with pytest.raises(HetmoeError, match="holds no model \\(neither a sentence-transformers modules.json nor"):
        build_encoder(ExpertCard(name="j", model=str(tmp_path / "junk"), **ST))


def test_device_names_a_gpu_by_index(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ExpertCard(name="g", backend="b", model="m", device="cuda:1").device == "cuda:1"
    for bad in ("cuda:", "cuda:x", "gpu", "cuda1"):
        with pytest.raises(HetmoeError, match="use auto, cpu, cuda or cuda:N"):
            ExpertCard(name="g", backend="b", model="m", device=bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device(ExpertCard(name="g", backend="b", model="m", device="cuda:1")) == "cuda:1"
    with pytest.raises(HetmoeError, match='device = "cuda:2" but 2 CUDA GPU\\(s\\) are visible'):
        resolve_device(ExpertCard(name="g", backend="b", model="m", device="cuda:2"))
    with pytest.raises(HetmoeError, match="runs on CPU only"):
        build_encoder(ExpertCard(name="s", backend="model2vec", model="pkg:static_model/model", device="cuda:1"))


def test_dtype_auto_is_never_float16_and_keeps_old_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    card = ExpertCard(name="x", backend="sentence-transformers", model="m")
    assert card.dtype == "auto" and replace(card, dtype="float16").hash == card.hash  # stores built before still load
    assert replace(card, dtype="bfloat16").hash != card.hash
    assert resolve_dtype(card, "cpu") == resolve_dtype(replace(card, dtype="bfloat16"), "cpu") == "float32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype(card, "cuda:0") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype(card, "cuda") == "float32" and resolve_dtype(replace(card, dtype="float16"), "cuda") == "float16"
    packaged = load_cards()
    assert packaged["gemma"].dtype == packaged["qwen"].dtype == "bfloat16" and packaged["minilm"].dtype == "auto"


def test_cpu_runs_float32_whatever_the_card_says(tiny: Path) -> None:
    encoder = build_encoder(ExpertCard(name="t", model=str(tiny), dtype="bfloat16", **ST))
    assert {p.dtype for p in encoder._model.parameters()} == {torch.float32}


def test_experts_add_writes_a_checked_card(tiny: Path, tmp_path: Path) -> None:
    cards = tmp_path / "my-cards.toml"
    model = tmp_path / "models" / "tiny"
    model.parent.mkdir()
    tiny.rename(model)
    try:
        result = CliRunner().invoke(app, ["experts", "add", "tiny", "--model", str(model), "--pooling", "mean",
                                          "--max-length", "32", "--cards", str(cards)])
        assert result.exit_code == 0, result.output
        row = json.loads(result.stdout.strip().splitlines()[-1])
        assert row["dim"] == 32 and row["model"] == "./models/tiny" and len(row["query_doc_cosine"]) == 3
        assert 'model = "./models/tiny"' in cards.read_text() and "dim = 32" in cards.read_text()
        card = get_card("tiny", cards)
        assert card.model == str(model) and card.dim == 32 and card.hash == row["hash"]
        again = CliRunner().invoke(app, ["experts", "add", "tiny", "--model", str(model), "--cards", str(cards)])
        assert again.exit_code != 0 and "already declares expert 'tiny'" in str(again.exception)
        empty = tmp_path / "models" / "empty"
        empty.mkdir()
        refused = CliRunner().invoke(app, ["experts", "add", "e", "--model", str(empty), "--cards", str(cards)])
        assert isinstance(refused.exception, HetmoeError) and "is empty" in str(refused.exception)
        assert "[experts.e]" not in cards.read_text()  # nothing written for a card that failed its check
    finally:
        model.rename(tiny)
