"""``hetmoe distil`` on a real (tiny) teacher, static + wordllama fitted on demo data, and a tiny BERT student built
here: the drawn candidates are the routed expert's nearest unjudged items, the labels are ``hetmoe score``'s, a
killed run resumes from its labels, Ray labels equal local ones, and the student's card loads and embeds."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tiny_models import bert_st, cards_file, corpus, qwen3_hf
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import get_card
from hetmoe.experts.distil import DistilOptions, distil
from hetmoe.experts.distil_pairs import DRAWN_FILE, LABELS_FILE, PAIRS_FILE, label_pairs, labels_identity
from hetmoe.experts.registry import build_encoder
from hetmoe.experts.train_options import TuneOptions
from hetmoe.experts.tune_pairs import held_out_ids, judged_pairs

EXPERTS = ["static", "wordllama"]
PER_QUERY = 6
TRAIN = TuneOptions(lora_r=8, lr=1e-2, max_steps=12, eval_steps=4, batch_size=16, held_out=0.25, patience=3)
FAST = DistilOptions(pairs_per_query=PER_QUERY, train=TRAIN)
# Every weight at a learning rate far too high for them: no evaluation beats the base on held-out queries.
EVERY_WEIGHT = DistilOptions(pairs_per_query=PER_QUERY, train=dataclasses.replace(TRAIN, lora_r=0))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hetmoe.data.demo import generate_demo
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig
    from hetmoe.store.embed import embed_dataset

    root = tmp_path_factory.mktemp("distil")
    generate_demo(root / "data", items_per_market=60, queries_per_market=16, seed=3, markets=["SG", "ID"])
    for name in EXPERTS:
        embed_dataset(root / "data", get_card(name), root / "stores", progress=False)
    fit(root / "data", root / "stores", root / "model", EXPERTS, k=1, variants=(), router_expert="static",
        train_config=TrainConfig(max_epochs=2), routers=["rule"])
    cards_file(root, "tiny", bert_st(root, corpus(root / "data")), "mean")
    return root


def _labels(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(folder / "scores.parquet").sort("query_id", "item_id")


def test_distil_labels_are_score_and_the_student_is_a_new_card(teacher: Path, tmp_path: Path) -> None:
    from hetmoe.data.dataset import load_dataset
    from hetmoe.store.embed import embed_dataset

    student = get_card("tiny", teacher / "cards.toml")
    report = distil(teacher / "model", teacher / "data", student, tmp_path / "student", tmp_path / "cards.toml",
                    tmp_path / "labels", FAST, progress=False)
    labels = _labels(tmp_path / "labels")

    runner = CliRunner()
    result = runner.invoke(app, ["score", "--model", str(teacher / "model"), "--pairs",
                                 str(tmp_path / "labels" / PAIRS_FILE), "--out", str(tmp_path / "scored")])
    assert result.exit_code == 0, result.output
    scored = pl.read_parquet(tmp_path / "scored" / "scores.parquet").sort("query_id", "item_id")
    assert np.array_equal(labels["score"].to_numpy(), scored["score"].to_numpy())  # bit for bit

    data = load_dataset(teacher / "data")
    train = judged_pairs(data)
    held = held_out_ids(train, FAST.train.held_out, FAST.train.seed)
    assert held and not set(labels["query_id"].to_list()) & held  # held-out queries are never labelled
    drawn = labels.filter(pl.col("label").is_null())
    per_query = drawn.group_by("query_id").len()["len"]
    assert drawn.height > 0 and per_query.max() <= PER_QUERY
    markets = dict(data.items.select("item_id", "market").iter_rows())
    assert all(markets[i] == m for i, m in drawn.select("item_id", "market").iter_rows())  # in-market only
    assert drawn.join(train, on=["query_id", "item_id"]).height == 0  # never a judged pair twice
    summary = report["labels"]
    assert summary["pairs"] == labels.height and summary["drawn"] == drawn.height and summary["pairs_per_s"] > 0

    card = get_card("tiny-distil", tmp_path / "cards.toml")
    assert card == get_card("tiny-distil", tmp_path / "student" / "card.toml") and card.hash != student.hash
    assert card.revision == report["fingerprint"] and report["steps"] == 12
    assert report["held_out"]["best"] > report["held_out"]["before"]  # the student learned on held-out queries
    assert json.loads((tmp_path / "student" / "distil.json").read_text())["labels"]["drawn"] == drawn.height
    texts = ["red cotton shirt", "kaos wanita hitam"]
    before, after = build_encoder(student).encode(texts, "query"), build_encoder(card).encode(texts, "query")
    assert after.shape == (2, 32) and np.abs(after - before).max() > 1e-4
    assert embed_dataset(teacher / "data", card, tmp_path / "stores", progress=False)["expert"] == "tiny-distil"


def test_a_decoder_student_learns_from_the_same_labels(teacher: Path, tmp_path: Path) -> None:
    """A Qwen3-architecture student (last-token pooling), from the command line."""
    from hetmoe.store.embed import embed_dataset

    cards = cards_file(tmp_path, "tq", qwen3_hf(tmp_path, corpus(teacher / "data")), "lasttoken")
    result = CliRunner().invoke(app, [
        "distil", "--model", str(teacher / "model"), "--data", str(teacher / "data"), "--student", "tq", "--cards",
        str(cards), "--labels", str(tmp_path / "l"), "--out", str(tmp_path / "tq"), "--pairs-per-query", str(PER_QUERY),
        "--max-steps", "4", "--eval-steps", "2", "--lora-r", "8", "--lr", "1e-2", "--batch-size", "16",
        "--held-out", "0.25"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    student = get_card("tq-distil", tmp_path / "tq" / "card.toml")
    assert student.pooling == "lasttoken" and report["steps"] == 4 and report["labels"]["drawn"] > 0
    assert embed_dataset(teacher / "data", student, tmp_path / "stores", progress=False)["complete"]


def test_candidates_are_the_routed_experts_nearest_unjudged_items(teacher: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo markets are small, so the index is exact: the drawn items must be the routed expert's top items by
    cosine, the query's judged items skipped."""
    from hetmoe.data.dataset import load_dataset
    from hetmoe.experts.distil_pairs import draw_pairs
    from hetmoe.moe.infer import MoEModel
    from hetmoe.store.zarr_store import open_expert

    data = load_dataset(teacher / "data")
    train = judged_pairs(data)
    drawn = draw_pairs(teacher / "model", data, train, 3).filter(pl.col("label").is_null())
    model = MoEModel.load(teacher / "model")
    checked = 0
    for (qid,), rows in drawn.group_by("query_id"):
        market = rows["market"][0]
        expert = model.spec.rule_table[market][0]
        stores = open_expert(teacher / "stores", expert)
        items = data.items.filter(pl.col("market") == market)["item_id"].to_numpy()
        q = stores.queries.get([qid])[0]
        cos = stores.items.get(items) @ (q / np.linalg.norm(q))
        cos = cos / np.linalg.norm(stores.items.get(items), axis=1)
        judged = set(train.filter(pl.col("query_id") == qid)["item_id"].to_list())
        best = [i for i in items[np.argsort(-cos, kind="stable")] if i not in judged][:3]
        assert set(rows["item_id"].to_list()) == set(best)
        checked += 1
    assert checked >= 10

    import hetmoe.experts.distil_pairs as distil_pairs

    monkeypatch.setattr(distil_pairs, "BLOCK_QUERIES", 4)  # queries drawn in blocks draw the same candidates
    assert draw_pairs(teacher / "model", data, train, 3).filter(pl.col("label").is_null()).equals(drawn)


def test_a_killed_run_reuses_its_labels(teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers import SentenceTransformerTrainer

    student = get_card("tiny", teacher / "cards.toml")

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SentenceTransformerTrainer, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        distil(teacher / "model", teacher / "data", student, tmp_path / "student", labels=tmp_path / "labels",
               options=EVERY_WEIGHT, progress=False)
    assert (tmp_path / "labels" / LABELS_FILE).is_file() and not (tmp_path / "student").exists()
    first = _labels(tmp_path / "labels")
    monkeypatch.undo()

    import hetmoe.scale.score

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the labels were scored again")

    monkeypatch.setattr(hetmoe.scale.score, "score_pairs", never)
    report = distil(teacher / "model", teacher / "data", student, tmp_path / "student", labels=tmp_path / "labels",
                    options=EVERY_WEIGHT, progress=False)
    assert report["labels"]["pairs"] == first.height and (tmp_path / "student" / "card.toml").is_file()
    assert _labels(tmp_path / "labels").equals(first)

    # training every weight, the best state is restored whole: here the untouched base, bit for bit
    history = report["held_out"]["history"]
    assert report["held_out"]["best_step"] == 0 and max(h["macro_auc"] for h in history[1:]) < history[0]["macro_auc"]
    texts = ["red cotton shirt", "kaos wanita hitam"]
    trained = get_card("tiny-distil", tmp_path / "student" / "card.toml")
    assert np.array_equal(build_encoder(trained).encode(texts, "query"), build_encoder(student).encode(texts, "query"))


@pytest.mark.parametrize("options", [FAST, EVERY_WEIGHT], ids=["lora", "every-weight"])
def test_training_killed_after_a_checkpoint_resumes_there(teacher: Path, tmp_path: Path, options: DistilOptions,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from hetmoe.experts.trainer import KeepBest

    student = get_card("tiny", teacher / "cards.toml")
    whole = distil(teacher / "model", teacher / "data", student, tmp_path / "whole", labels=tmp_path / "labels",
                   options=options, progress=False)
    saved = KeepBest.on_save

    def killed_at_8(self: KeepBest, args: object, state: object, control: object, **kwargs: object) -> None:
        saved(self, args, state, control, **kwargs)
        if state.global_step == 8:  # type: ignore[attr-defined]
            raise KeyboardInterrupt

    monkeypatch.setattr(KeepBest, "on_save", killed_at_8)
    with pytest.raises(KeyboardInterrupt):
        distil(teacher / "model", teacher / "data", student, tmp_path / "student", labels=tmp_path / "labels",
               options=options, progress=False)
    monkeypatch.undo()
    assert (tmp_path / ".student.partial" / "trainer" / "checkpoint-8").is_dir()
    report = distil(teacher / "model", teacher / "data", student, tmp_path / "student", labels=tmp_path / "labels",
                    options=options, progress=False)
    assert report["resumed_from_step"] == 8 and whole["resumed_from_step"] is None and report["steps"] == 12
    assert [h["step"] for h in report["held_out"]["history"]] == [0, 4, 8, 12]
    for a, b in zip(report["held_out"]["history"], whole["held_out"]["history"]):
        assert a["macro_auc"] == pytest.approx(b["macro_auc"], abs=1e-6)  # the same run, cut in two
    assert not (tmp_path / ".student.partial").exists() and report["fingerprint"] == whole["fingerprint"]


def test_ray_labels_equal_local_labels(teacher: Path, tmp_path: Path) -> None:
    from hetmoe.data.dataset import load_dataset
    from hetmoe.scale.session import PoolSpec

    data = load_dataset(teacher / "data")
    train = judged_pairs(data)
    identity = labels_identity(teacher / "model", data, PER_QUERY, 0.25, 0)
    local, _ = label_pairs(teacher / "model", data, train, PER_QUERY, tmp_path / "local", identity, "local", None, False)
    ray, summary = label_pairs(teacher / "model", data, train, PER_QUERY, tmp_path / "ray", identity, "ray",
                               PoolSpec(workers=2), False)
    assert summary["engine"] == "ray" and summary["workers"] >= 1
    assert local.sort("query_id", "item_id").equals(ray.sort("query_id", "item_id"))


def test_refusals_are_one_line_errors(teacher: Path, tmp_path: Path) -> None:
    student = get_card("tiny", teacher / "cards.toml")
    for options, message in [(DistilOptions(pairs_per_query=-1), "--pairs-per-query"),
                             (DistilOptions(label_weight=1.5), "--label-weight"),
                             (DistilOptions(engine="spark"), "--engine"),
                             (DistilOptions(train=dataclasses.replace(TRAIN, held_out=1.0)), "--held-out")]:
        with pytest.raises(HetmoeError, match=message):
            distil(teacher / "model", teacher / "data", student, tmp_path / "s", options=options)
    with pytest.raises(HetmoeError, match="no such folder"):
        distil(tmp_path / "nothing", teacher / "data", student, tmp_path / "s")
    with pytest.raises(HetmoeError, match="only cards with backend"):
        distil(teacher / "model", teacher / "data", get_card("static"), tmp_path / "s")

    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / LABELS_FILE).write_text(json.dumps({"identity": {"teacher": "another"}, "summary": {}}))
    with pytest.raises(HetmoeError, match="labels of another teacher"):
        distil(teacher / "model", teacher / "data", student, tmp_path / "s", labels=folder, options=FAST)

    (folder / LABELS_FILE).unlink()  # a killed labelling of another teacher: its drawn pairs are not reused
    (folder / PAIRS_FILE).write_bytes(b"")
    (folder / DRAWN_FILE).write_text(json.dumps({"teacher": "another"}))
    with pytest.raises(HetmoeError, match="drawn for another teacher"):
        distil(teacher / "model", teacher / "data", student, tmp_path / "s", labels=folder, options=FAST)

    result = CliRunner().invoke(app, ["distil", "--model", str(teacher / "model"), "--data", str(teacher / "data"),
                                      "--student", "tiny", "--cards", str(teacher / "cards.toml"),
                                      "--label-weight", "2"])
    assert result.exit_code != 0 and "--label-weight 2.0" in str(result.exception)
