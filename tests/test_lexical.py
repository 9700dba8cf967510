"""The lexical expert on small synthetic catalogs (English, Indonesian, Thai): tokens, features, persistence, store and
CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.data.dataset import write_dataset
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard, get_card
from hetmoe.lexical import FEATURE_NAMES, LexicalConfig, LexicalModel
from hetmoe.lexical.store import dataset_fingerprint, fit_lexical_store, open_lexical
from hetmoe.lexical.tokenize import Tokenizer

TITLES = [
    "1/2 in. PVC Cap",
    "3/4 in. PVC Cap",
    "Simpson Strong-Tie 12-Gauge Angle Bracket",
    "BEHR Premium Textured DeckOver 1 gal. Exterior Stain",
    "Commscope RG-6 Coaxial Cable 100 ft.",
    "Kaos Wanita Katun Premium Murah Original",
    "Sepatu Pria Sneakers Hitam Ukuran 42",
    "Sabun Cair Antiseptik 500 ml Refill",
    "เคสโทรศัพท์มือถือ ซิลิโคน สีดำ",
    "หูฟังบลูทูธไร้สาย เสียงดี",
    "2 in. x 4 in. x 8 ft. Pine Stud",
    "Cordless Drill 20V Max Lithium",
]
TEXTS = [None] * 8 + ["เคสกันกระแทก สำหรับ iPhone", None, "", "Includes two batteries and a charger"]
QUERIES = [
    "1/2 in pvc cap",
    "angle bracket",
    "deck over",
    "rg6 coax",
    "kaos wanita murah",
    "sabun 500ml",
    "เคสโทรศัพท์",
    "2x4x8 stud",
    "cordless drill battery",
]


@pytest.fixture(scope="module")
def model() -> LexicalModel:
    ids = [f"it{i:02d}" for i in range(len(TITLES))]
    return LexicalModel.fit(ids, TITLES, TEXTS, ["m"] * len(TITLES))


def _features(model: LexicalModel, query: str, titles: list[str]) -> dict[str, dict[str, float]]:
    rows = np.array([TITLES.index(t) for t in titles])
    values = model.features([query], rows, np.zeros(rows.size, dtype=np.int64))
    return {t: dict(zip(model.feature_names, row.tolist())) for t, row in zip(titles, values)}


def test_tokenizer_numbers_units_models_and_scripts() -> None:
    tok = Tokenizer()
    cap = tok("1/2 in. PVC Cap")
    assert cap.base == ("0.5", "in", "pvc", "cap") and "0.5@in" in cap.terms and "@in" in cap.terms
    assert tok("DBHL 1-1/2 in. x 1-1/2 in. coupling").base[:3] == ("dbhl", "1.5", "in")
    assert tok("2x4").base == ("2", "4") and "3.5@in" in tok("3.5in bolt").terms and "20@a" in tok("20-Amp fuse").terms
    assert "rg6" in tok("RG6 cable").base and tok("120/240 volt").base == ("120", "240", "v")
    assert tok(r"Johnson\xe2\x80\x99s 200 ml").base == (
        "johnson",
        "200",
        "ml",
    )  # escaped bytes decoded, possessive kept whole
    assert tok("Sabun Cair 4,5 liter").base[2:] == ("4.5", "l")
    thai = tok("เคสโทรศัพท์มือถือสีดำ")
    assert 2 <= len(thai.base) <= 6 and "".join(thai.base) == "เคสโทรศัพท์มือถือสีดำ"  # words, not one token per string
    import bm25s

    broken = bm25s.tokenize(["เคสโทรศัพท์มือถือสีดำ"], return_ids=False, show_progress=False)[0]
    assert "เคส" in thai.base and "เคส" not in broken and "พท" in broken  # bm25s splits at Thai vowel marks
    assert tok("日本語").base == ("日本", "本語")


def test_features_shape_names_and_numbers_units(model: LexicalModel) -> None:
    assert model.feature_names == FEATURE_NAMES and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    f = _features(
        model, "1/2 in pvc cap", ["1/2 in. PVC Cap", "3/4 in. PVC Cap", "Kaos Wanita Katun Premium Murah Original"]
    )
    right, wrong, other = f.values()
    assert (
        right["num_match"] == 1
        and right["unit_match"] == 1
        and right["unit_mismatch"] == 0
        and right["num_mismatch"] == 0
    )
    assert wrong["num_match"] == 0 and wrong["num_mismatch"] == 1 and wrong["unit_mismatch"] == 1
    assert right["bm25_title"] > wrong["bm25_title"] > other["bm25_title"] == 0
    assert right["jaccard"] == 1 and right["query_coverage"] == 1 and 0 < right["bm25_title_norm"] <= 1
    assert right["tfidf_char_cos"] == pytest.approx(1, abs=1e-3) and other["tfidf_char_cos"] < 0.2
    deck = _features(model, "deck over", ["BEHR Premium Textured DeckOver 1 gal. Exterior Stain"])
    assert next(iter(deck.values()))["query_in_title"] == 1  # "deckover" inside the title's compact form
    rg6 = _features(model, "rg6 coax", ["Commscope RG-6 Coaxial Cable 100 ft.", "Cordless Drill 20V Max Lithium"])
    assert [v["model_token_match"] for v in rg6.values()] == [1, 0]
    stud = _features(model, "2x4x8 stud", ["2 in. x 4 in. x 8 ft. Pine Stud"])
    assert next(iter(stud.values()))["num_match"] == 1


def test_thai_and_indonesian_queries_match_their_items(model: LexicalModel) -> None:
    thai = _features(model, "เคสโทรศัพท์", ["เคสโทรศัพท์มือถือ ซิลิโคน สีดำ", "หูฟังบลูทูธไร้สาย เสียงดี"])
    hit, miss = thai.values()
    # newmm keeps the compound "โทรศัพท์มือถือ" (mobile phone) whole: the word match is partial, the substring one full
    assert hit["bm25_title"] > 0 and hit["query_coverage"] == 0.5 and hit["substring_coverage"] == 1
    assert miss["bm25_title"] == miss["substring_coverage"] == 0 and miss["tfidf_char_cos"] < 0.1
    text = _features(model, "iphone case", ["เคสโทรศัพท์มือถือ ซิลิโคน สีดำ"])
    assert (
        next(iter(text.values()))["bm25_text"] > 0 == next(iter(text.values()))["bm25_title"]
    )  # found in the text only
    kaos = _features(
        model, "kaos wanita murah", ["Kaos Wanita Katun Premium Murah Original", "Sepatu Pria Sneakers Hitam Ukuran 42"]
    )
    assert [v["query_coverage"] for v in kaos.values()] == [1, 0]


def test_request_independence_and_bulk_equals_single(model: LexicalModel) -> None:
    rng = np.random.default_rng(0)
    groups = rng.integers(0, len(QUERIES), 80)
    rows = rng.integers(0, len(TITLES), 80)
    together = model.features(QUERIES, rows, groups)
    assert together.shape == (80, len(FEATURE_NAMES)) and together.dtype == np.float32 and np.isfinite(together).all()
    for j in range(0, 80, 7):
        alone = model.features([QUERIES[groups[j]]], rows[j : j + 1], np.zeros(1, dtype=np.int64))
        np.testing.assert_array_equal(alone[0], together[j])
    repeated = model.features(QUERIES + QUERIES, rows, groups + len(QUERIES))  # same texts at other positions
    np.testing.assert_array_equal(repeated, together)


def test_save_load_round_trip_and_rows(model: LexicalModel, tmp_path: Path) -> None:
    model.save(tmp_path / "lex")
    model.save(tmp_path / "lex")  # replacing an existing folder
    loaded = LexicalModel.load(tmp_path / "lex")
    rows = loaded.rows(["it03", "it08", "it00"])
    assert rows.tolist() == [3, 8, 0] and list(loaded.item_ids) == list(model.item_ids)
    groups = np.arange(3) % 2
    np.testing.assert_array_equal(loaded.features(QUERIES[:2], rows, groups), model.features(QUERIES[:2], rows, groups))
    with pytest.raises(KeyError, match="nope"):
        loaded.rows(["it01", "nope"])
    with pytest.raises(HetmoeError, match="not a saved lexical model"):
        LexicalModel.load(tmp_path / "missing")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def _arrays(model: LexicalModel) -> dict[str, bytes]:
    """Every fitted array of the model's catalog (and its vocabulary and title surfaces), as bytes."""
    import dataclasses

    out: dict[str, bytes] = {}
    for f in dataclasses.fields(model.catalog):
        value = getattr(model.catalog, f.name)
        if isinstance(value, np.ndarray) and value.dtype == object:
            out[f.name] = json.dumps(value.tolist()).encode()
        elif isinstance(value, np.ndarray):
            out[f.name] = value.dtype.str.encode() + value.tobytes()
        elif f.name in ("title", "text"):
            for part in ("indptr", "indices", "weights", "idf"):
                array = getattr(value, part)
                out[f"{f.name}.{part}"] = array.dtype.str.encode() + array.tobytes()
    out["vocab"] = json.dumps(model.catalog.vocab.terms).encode() + model.catalog.vocab.kinds.tobytes()
    out["compact"] = json.dumps(model.catalog.compact).encode()
    return out


def test_the_fit_does_not_depend_on_its_block_sizes(model: LexicalModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fit tokenizes, hashes n-grams and weighs them block by block to bound its memory on a large catalog;
    blocks of a few items, characters or entries must give the arrays one pass gives, bit for bit."""
    from hetmoe.lexical import catalog, ngrams

    monkeypatch.setattr(catalog, "TOKENIZE_BLOCK", 5)
    monkeypatch.setattr(ngrams, "BATCH_CHARS", 60)
    monkeypatch.setattr(ngrams, "WEIGH_ENTRIES", 16)
    ids = [f"it{i:02d}" for i in range(len(TITLES))]
    blocked = LexicalModel.fit(ids, TITLES, TEXTS, ["m"] * len(TITLES))
    assert model.catalog.ngram_indptr.size == len(TITLES) + 1 and blocked.catalog.ngram_indices.size > 16 * 5
    assert _arrays(blocked) == _arrays(model)


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_bm25_weights_are_bm25s_own_bit_for_bit(method: str) -> None:
    """The fit computes BM25 over arrays, not through bm25s's indexer (whose per-document Python lists held every
    token of a catalog); each (document, term) weight must still be the one bm25s's own index gives."""
    import bm25s
    import scipy.sparse as sp

    from hetmoe.lexical.bm25 import fit_field

    rng = np.random.default_rng(3)
    vocab, n_docs = 60, 400
    lengths = rng.integers(0, 25, n_docs)  # empty documents too
    flat = rng.zipf(1.3, lengths.sum()) % vocab  # repeats (term frequency) and a few very common terms
    scored = rng.random(vocab) > 0.2  # the rest stay in the rows with weight 0 (bigrams)
    indptr = np.concatenate(([0], np.cumsum(lengths)))
    field = fit_field(indptr, flat, vocab, LexicalConfig(method=method), scored)

    docs = [[int(t) for t in flat[a:b] if scored[t]] for a, b in itertools.pairwise(indptr)]
    retriever = bm25s.BM25(k1=1.2, b=0.75, method=method)
    retriever.index((docs, {str(i): i for i in range(vocab)}), create_empty_token=False, show_progress=False)
    want = sp.csc_matrix((retriever.scores["data"], retriever.scores["indices"], retriever.scores["indptr"]),
                         shape=(n_docs, vocab)).toarray()
    got = np.zeros((n_docs, vocab), np.float32)
    rows = np.repeat(np.arange(n_docs), np.diff(field.indptr))
    got[rows, field.indices] = field.weights
    assert want.dtype == np.float32 and (got != 0).sum() > 1000 and (rows.size > (got != 0).sum())  # unscored kept
    assert got.tobytes() == want.tobytes()


def _dataset(root: Path, tweak: str = "") -> Path:
    n = len(TITLES)
    items = pl.DataFrame({"item_id": [f"it{i:02d}" for i in range(n)], "title": [TITLES[0] + tweak, *TITLES[1:]],
                          "text": TEXTS, "market": ["us"] * 5 + ["id"] * 3 + ["th"] * 2 + ["us"] * 2})
    queries = pl.DataFrame({"query_id": [f"q{i}" for i in range(len(QUERIES))], "text": QUERIES,
                            "market": ["us", "us", "us", "us", "id", "id", "th", "us", "us"]})
    m = len(QUERIES)  # each query judged against one relevant and one non-relevant item: both classes everywhere
    judgments = pl.DataFrame({"query_id": [f"q{i}" for i in range(m)] * 2, "item_id": ["it00"] * m + ["it01"] * m,
                              "label": [1.0] * m + [0.0] * m, "relevant": [1] * m + [0] * m,
                              "split": (["train", "valid"] * 4 + ["train"]) * 2})
    return write_dataset(root, items, queries, judgments)


def test_store_fit_no_op_refusals_and_open(tmp_path: Path) -> None:
    data, store = _dataset(tmp_path / "data"), tmp_path / "stores"
    first = fit_lexical_store(data, store)
    manifest = json.loads((store / "lexical" / "manifest.json").read_text())
    assert not first["skipped"] and manifest["kind"] == "lexical" and manifest["counts"]["items"] == len(TITLES)
    assert manifest["items"]["input_fingerprint"] == dataset_fingerprint(data) and "bm25s" in manifest["versions"]
    assert fit_lexical_store(data, store)["skipped"]
    with pytest.raises(HetmoeError, match="--overwrite") as err:
        fit_lexical_store(data, store, config=LexicalConfig(k1=2.0))
    assert "\n" not in str(err.value)
    other = _dataset(tmp_path / "other", tweak=" Gray")
    with pytest.raises(HetmoeError, match="other items"):
        fit_lexical_store(other, store)
    assert not fit_lexical_store(other, store, overwrite=True)["skipped"]
    opened = open_lexical(store, expected_fingerprint=dataset_fingerprint(other))
    assert opened.feature_names == FEATURE_NAMES
    with pytest.raises(HetmoeError, match="hetmoe embed --expert lexical") as err:
        open_lexical(store, expected_fingerprint=dataset_fingerprint(data))
    assert "other items" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(HetmoeError, match="does not exist.*hetmoe embed --expert lexical"):
        open_lexical(tmp_path / "nowhere")
    (store / "lexical" / "manifest.json").unlink()
    with pytest.raises(HetmoeError, match="half-written"):
        open_lexical(store)
    with pytest.raises(HetmoeError, match="no manifest"):
        fit_lexical_store(other, store)


def test_card_without_model_and_options_in_hash() -> None:
    card = get_card("lexical")
    assert card.backend == "lexical" and card.model == "" and LexicalConfig.from_dict(card.options) == LexicalConfig()
    changed = ExpertCard.from_dict({**card.to_dict(), "options": {**card.options, "k1": 1.5}})
    assert changed.hash != card.hash
    with pytest.raises(HetmoeError, match="lacks.*model"):
        ExpertCard.from_dict({"name": "x", "backend": "model2vec"})
    with pytest.raises(HetmoeError, match="unknown options"):
        LexicalConfig.from_dict({"k": 1})


def test_cli_embed_lexical_writes_the_store(tmp_path: Path) -> None:
    data, store = _dataset(tmp_path / "data"), tmp_path / "stores"
    runner = CliRunner()
    made = runner.invoke(app, ["embed", "--expert", "lexical", "--data", str(data), "--store", str(store)])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout.strip().splitlines()[-1])["skipped"] is False
    model = open_lexical(store)
    assert model.rows(["it11"]).tolist() == [11]
    again = runner.invoke(app, ["embed", "--expert", "lexical", "--data", str(data), "--store", str(store)])
    assert again.exit_code == 0 and json.loads(again.stdout.strip().splitlines()[-1])["skipped"] is True
    sharded = runner.invoke(
        app, ["embed", "--expert", "lexical", "--data", str(data), "--store", str(store), "--shard", "0/2"]
    )
    assert isinstance(sharded.exception, HetmoeError) and "--shard" in str(sharded.exception)


def test_concurrent_calls_equal_sequential_ones(model: LexicalModel) -> None:
    """The online lookup tables are per thread: calls from a serving thread pool must not see each other's queries."""
    from concurrent.futures import ThreadPoolExecutor

    rows = np.arange(len(TITLES))
    groups = np.zeros(rows.size, dtype=np.int64)
    expected = [model.features([q], rows, groups) for q in QUERIES]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: model.features([q], rows, groups), QUERIES * 20))
    for i, values in enumerate(got):
        np.testing.assert_array_equal(values, expected[i % len(QUERIES)])
