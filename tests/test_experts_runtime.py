"""Expert runtimes end to end on a tiny real Qwen3 model built here: export (ONNX float32 + int8), the cards it writes,
check, embed, fit, serve; the card hash follows runtime and file digest; stores and encoders of another runtime are
refused unless a card states ``interchangeable_with``."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard, get_card
from hetmoe.experts.export import export_expert
from hetmoe.experts.registry import build_encoder
from test_experts_llm import _save

TEXTS = ["drill", "red cotton t-shirt for men with a much longer description than the others", "lámpara", "sink tap"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExpertCard]:
    """The torch card of a tiny last-token Qwen3 and the two cards its export writes, once per module."""
    root = tmp_path_factory.mktemp("runtime")
    torch_card = ExpertCard(name="tiny", backend="sentence-transformers", model=str(_save(root, "qwen3", "right")),
                            pooling="lasttoken", query_prompt="Query: ", max_length=64, device="cpu", batch_size=4,
                            threads=1)
    report = export_expert(torch_card)
    return {"torch": torch_card, **{c.runtime: c for c in report["cards"].values()}}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_export_writes_both_graphs_next_to_the_weights_and_they_agree_with_torch(exported: dict) -> None:
    torch_card, onnx_card, int8_card = exported["torch"], exported["onnx"], exported["onnx-int8"]
    assert Path(onnx_card.runtime_file) == Path(torch_card.model) / "onnx" / "model.onnx"
    assert Path(int8_card.runtime_file).name == "model_qint8.onnx"
    assert len({torch_card.hash, onnx_card.hash, int8_card.hash}) == 3
    ref = build_encoder(torch_card)
    for kind in ("query", "document"):
        want = ref.encode(TEXTS, kind)
        assert _cos(build_encoder(onnx_card).encode(TEXTS, kind), want).min() > 0.9999
        assert _cos(build_encoder(int8_card).encode(TEXTS, kind), want).min() > 0.99
    # the dynamic axes really are dynamic: last-token pooling of a text alone equals it inside a padded batch; int8
    # quantizes activations with one scale per call, so there a batch's other texts move a vector a little
    for card, atol in ((onnx_card, 1e-5), (int8_card, 1e-2)):
        encoder = build_encoder(card)
        alone = np.stack([encoder.encode([t], "query")[0] for t in TEXTS])
        np.testing.assert_allclose(alone, encoder.encode(TEXTS, "query"), atol=atol)


def test_a_gemma3_model_exports_with_its_sliding_window(tmp_path: Path) -> None:
    """EmbeddingGemma's architecture (Gemma3, local sliding-window layers shorter than the long text, mean pooling)."""
    torch_card = ExpertCard(name="tiny-gemma", backend="sentence-transformers", pooling="mean", max_length=64,
                            model=str(_save(tmp_path, "gemma3", "right")), device="cpu", batch_size=4, threads=1)
    cards = {c.runtime: c for c in export_expert(torch_card)["cards"].values()}
    want = build_encoder(torch_card).encode(TEXTS, "document")
    assert _cos(build_encoder(cards["onnx"]).encode(TEXTS, "document"), want).min() > 0.9999
    assert _cos(build_encoder(cards["onnx-int8"]).encode(TEXTS, "document"), want).min() > 0.99


def test_the_hash_follows_runtime_and_digest_not_the_files_place(exported: dict) -> None:
    card = exported["onnx-int8"]
    assert dataclasses.replace(card, runtime_sha256="0" * 64).hash != card.hash
    assert dataclasses.replace(card, runtime="onnx").hash != card.hash
    assert dataclasses.replace(card, runtime_file="/elsewhere/m.onnx", interchangeable_with="0" * 16).hash == card.hash
    plain = exported["torch"]  # torch cards keep the hash they had before the runtime fields existed
    assert plain.hash == ExpertCard(**{k: v for k, v in plain.to_dict().items()
                                       if not k.startswith(("runtime", "interchangeable"))}).hash


def test_a_changed_graph_file_is_refused(exported: dict, tmp_path: Path) -> None:
    changed = tmp_path / "model.onnx"
    shutil.copyfile(exported["onnx"].runtime_file, changed)
    with changed.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(HetmoeError, match="has sha256 .* the card says"):
        build_encoder(dataclasses.replace(exported["onnx"], runtime_file=str(changed)))
    from hetmoe.experts.registry import preflight

    with pytest.raises(HetmoeError, match="runtime file .*gone.onnx does not exist"):  # before any long work starts
        preflight(dataclasses.replace(exported["onnx"], runtime_file=str(tmp_path / "gone.onnx")))


def test_a_large_models_weights_go_beside_the_graph_and_are_covered_by_the_digest(
        exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hetmoe.experts.export as export

    monkeypatch.setattr(export, "EXTERNAL_ABOVE", 0)  # as if the model were over 2 GB
    cards = {c.runtime: c for c in export_expert(exported["torch"], out=tmp_path)["cards"].values()}
    graph = Path(cards["onnx"].runtime_file)
    assert graph.stat().st_size < Path(exported["onnx"].runtime_file).stat().st_size / 2
    assert (tmp_path / "model.onnx.data").stat().st_mode & 0o044 == Path(graph).stat().st_mode & 0o044
    want = build_encoder(exported["torch"]).encode(TEXTS, "query")
    assert _cos(build_encoder(cards["onnx"]).encode(TEXTS, "query"), want).min() > 0.9999
    assert _cos(build_encoder(cards["onnx-int8"]).encode(TEXTS, "query"), want).min() > 0.99
    with (tmp_path / "model.onnx.data").open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\1\2\3\4")
    with pytest.raises(HetmoeError, match="has sha256"):
        build_encoder(cards["onnx"])


def test_a_graph_without_the_hidden_states_output_is_refused(exported: dict, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from hetmoe.experts.runtime import file_sha256

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info("embeddings", TensorProto.INT64, ["batch", "sequence"])
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["embeddings"])], "other", [ids], [out])
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    card = dataclasses.replace(exported["onnx"], runtime_file=str(tmp_path / "other.onnx"),
                               runtime_sha256=file_sha256(tmp_path / "other.onnx"))
    with pytest.raises(HetmoeError, match="no output 'last_hidden_state'"):
        build_encoder(card)


@pytest.mark.parametrize(("change", "fragment"), [
    ({"runtime": "tensorrt"}, "runtime 'tensorrt' is unknown"),
    ({"runtime_sha256": None}, "needs ['runtime_sha256']"),
    ({"runtime": "torch"}, "belong to runtime"),
    ({"device": "cuda"}, "runs on the CPU"),
    ({"runtime_sha256": "ABC"}, "64 lowercase hex digits"),
    ({"interchangeable_with": "xyz"}, "16 lowercase hex digits"),
])
def test_bad_runtime_fields_are_refused_in_one_line(exported: dict, change: dict, fragment: str) -> None:
    with pytest.raises(HetmoeError, match=fragment.replace("[", r"\[").replace("]", r"\]")) as err:
        dataclasses.replace(exported["onnx"], **change)
    assert "\n" not in str(err.value)


def test_other_backends_and_non_transformer_models_refuse_onnx(exported: dict, tmp_path: Path) -> None:
    onnx_card = exported["onnx"]
    static = dataclasses.replace(get_card("static"), runtime="onnx", runtime_file=onnx_card.runtime_file,
                                 runtime_sha256=onnx_card.runtime_sha256)
    with pytest.raises(HetmoeError, match=r"does not use \['runtime_file'\]"):
        build_encoder(static)
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from test_experts_llm import _tokenizer

    SentenceTransformer(modules=[StaticEmbedding(_tokenizer("right", True).backend_tokenizer, embedding_dim=8)]
                        ).save(str(tmp_path / "static-st"))
    card = ExpertCard(name="st-static", backend="sentence-transformers", model=str(tmp_path / "static-st"))
    with pytest.raises(HetmoeError, match="ONNX export needs a transformer as the model's first module"):
        export_expert(card, out=tmp_path / "out")


def test_cli_export_writes_cards_and_check_reports_agreement_and_auc(exported: dict, tmp_path: Path) -> None:
    from store_data import make_catalog

    cards = tmp_path / "cards.toml"
    cards.write_text(f'[defaults]\nexperts = ["tiny"]\n\n[experts.tiny]\nbackend = "sentence-transformers"\n'
                     f'model = "{exported["torch"].model}"\npooling = "lasttoken"\nmax_length = 64\nbatch_size = 4\n')
    runner = CliRunner()
    done = runner.invoke(app, ["experts", "export", "tiny", "--cards", str(cards), "--cards-out", str(cards)])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output.strip().splitlines()[-1])
    assert report["reused"] and report["runtimes"]["onnx"]["min_cosine_to_torch"] > 0.9999
    assert get_card("tiny-int8", cards).runtime_sha256 == exported["onnx-int8"].runtime_sha256
    again = runner.invoke(app, ["experts", "export", "tiny", "--cards", str(cards), "--cards-out", str(cards)])
    assert isinstance(again.exception, HetmoeError)
    assert str(again.exception).endswith("already declares expert 'tiny-onnx'; pass --overwrite to replace it")
    data = make_catalog(tmp_path / "data", 40, n_queries=12)
    checked = runner.invoke(app, ["experts", "check", "tiny-int8", "--cards", str(cards), "--data", str(data),
                                  "--split", "train", "--sample", "30"])
    assert checked.exit_code == 0, checked.output
    agreement = json.loads(checked.output.strip().splitlines()[-1])["agreement"]
    assert agreement["float32_hash"] == get_card("tiny", cards).hash and agreement["texts"] == 30
    assert 0.99 < agreement["query"]["mean_cosine"] <= 1.0 and agreement["document"]["min_cosine"] > 0.95
    auc = agreement["auc"]
    assert auc["pairs"] > 0 and all(0.0 <= auc[k] <= 1.0 for k in ("auc_float32", "auc_runtime_queries", "auc_runtime"))
    assert agreement["safe"] == (abs(auc["change_pp_runtime_queries"]) <= 0.3 and abs(auc["change_pp_runtime"]) <= 0.3)
    assert ("statement" in agreement) == agreement["safe"]


@pytest.fixture(scope="module")
def fitted(exported: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo data embedded by the torch card (float32/), by the int8 card (int8/) and by the int8 card stating it
    stands in for float32 (stated/); a model fitted on float32/ (model/) and one on int8/ (model-int8/)."""
    from hetmoe.data.demo import generate_demo
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig
    from hetmoe.store.embed import embed_dataset

    root = tmp_path_factory.mktemp("fitted")
    generate_demo(root / "data", items_per_market=30, queries_per_market=10, seed=0, markets=["TH", "ID"])
    int8 = dataclasses.replace(exported["onnx-int8"], name="tiny")
    stated = dataclasses.replace(int8, interchangeable_with=exported["torch"].hash)
    for folder, card in (("float32", exported["torch"]), ("int8", int8), ("stated", stated)):
        embed_dataset(root / "data", card, root / folder, progress=False)
    for folder, model in (("float32", "model"), ("int8", "model-int8")):
        # the net head only: trees fitted on 186 pairs of a random-weight model's features split on noise, and an
        # int8 query vector's last bits then flip whole trees; the encoder's own effect is what this compares
        fit(root / "data", root / folder, root / model, ["tiny"], k=1, variants=(), router_expert="tiny",
            train_config=TrainConfig(max_epochs=2), routers=["hard"], stack=False)
    return root


def _judged_scores(scorer: object, root: Path) -> np.ndarray:
    from hetmoe.data.dataset import load_dataset

    data = load_dataset(root / "data")
    rows = data.judgments.join(data.queries, on="query_id").head(20).select("text", "item_id", "market").rows()
    return np.array([scorer.score(text, [item], market=market).scores[0] for text, item, market in rows])  # type: ignore[attr-defined]


def test_int8_queries_against_float32_items_only_with_the_statement(exported: dict, fitted: Path) -> None:
    from hetmoe.online.scorer import Scorer

    int8 = dataclasses.replace(exported["onnx-int8"], name="tiny")
    with pytest.raises(HetmoeError, match=r"fitted with .* \(or one stating interchangeable_with\)"):
        Scorer.load(fitted / "model", with_indexes=False, encoders={"tiny": build_encoder(int8)})
    stated = dataclasses.replace(int8, interchangeable_with=exported["torch"].hash)
    served = Scorer.load(fitted / "model", with_indexes=False, encoders={"tiny": build_encoder(stated)})
    assert served.encoder("tiny").card.runtime == "onnx-int8"
    want = _judged_scores(Scorer.load(fitted / "model", with_indexes=False), fitted)
    got = _judged_scores(served, fitted)
    assert np.isfinite(got).all() and np.corrcoef(got, want)[0, 1] > 0.99


def test_a_store_of_another_runtime_is_refused_unless_its_card_states_it(fitted: Path) -> None:
    from hetmoe.moe.infer import MoEModel

    with pytest.raises(HetmoeError, match="different 'tiny' card store .* needs interchangeable_with") as err:
        MoEModel.load(fitted / "model", store_root=fitted / "int8")
    assert "\n" not in str(err.value)
    assert MoEModel.load(fitted / "model", store_root=fitted / "stated").experts == ["tiny"]
    with pytest.raises(HetmoeError, match="different 'tiny' card store"):  # and the other way round
        MoEModel.load(fitted / "model-int8", store_root=fitted / "float32")


def test_a_model_fitted_on_int8_vectors_serves_with_the_int8_graph(exported: dict, fitted: Path) -> None:
    from hetmoe.online.scorer import Scorer

    scorer = Scorer.load(fitted / "model-int8", with_indexes=False)
    encoder = scorer.encoder("tiny")
    assert encoder.card.runtime == "onnx-int8" and encoder.card.hash == exported["onnx-int8"].hash
    assert np.isfinite(_judged_scores(scorer, fitted)).all()
