"""Nothing damaged or mismatched is read without a word: every fault of the corpus (``bad_artifacts.py``) on a small
``static`` + ``wordllama`` model with a lexical expert and a LightGBM baseline is refused in one ``error:`` line (exit
2, nothing written), or gives the correct result (older artifacts, resumed parts, long texts, a disk that filled up)."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from bad_artifacts import (
    BY_ID,
    MODEL_FAULTS,
    PAIRS_FAULTS,
    STORE_FAULTS,
    Fault,
    PairsFault,
)
from bad_data import tables, write
from bad_inputs import run_cli, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hetmoe.errors import HetmoeError
from hetmoe.experts.base import MAX_TEXT_CHARS, Encoder
from hetmoe.online.checks import RequestError
from hetmoe.online.results import ScoreRequest
from hetmoe.online.scorer import Scorer

EXPERTS, ROUTER, BLOCK = ["static", "wordllama"], "static", 40
Cli = Callable[[list[str]], tuple[int, list[str]]]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/, stores/ (32-row chunks, a lexical store), model/ (stacked MoE + LightGBM variant), evaluated once so
    the item-neighbour tables exist (later commands write nothing into the stores)."""
    from hetmoe.data.demo import generate_demo
    from hetmoe.experts.card import get_card
    from hetmoe.lexical.store import fit_lexical_store
    from hetmoe.moe.evaluate import evaluate
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig
    from hetmoe.store.embed import embed_dataset

    root = tmp_path_factory.mktemp("faults")
    generate_demo(root / "data", items_per_market=30, queries_per_market=16, seed=0, markets=["TH", "ID", "VN"])
    for name in EXPERTS:
        embed_dataset(root / "data", get_card(name), root / "stores", chunk_size=32, progress=False)
    fit_lexical_store(root / "data", root / "stores", name="lexical", progress=False)
    fit(root / "data", root / "stores", root / "model", EXPERTS, k=1, variants=("lightgbm",), router_expert=ROUTER,
        train_config=TrainConfig(max_epochs=2), routers=["hard"], spec_overrides={"lexical_store": "lexical"})
    evaluate(root / "model", root / "data", "test", root / "report")
    return root


@pytest.fixture(scope="module")
def static() -> Encoder:
    """The static expert, built once for the tests that embed through the Python API."""
    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder

    return build_encoder(get_card("static"))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return lambda args: run_cli(args, capsys, monkeypatch)


def _refused(cli: Cli, args: list[str], ws: Path, fragment: str) -> None:
    """Exit 2, one ``error:`` line holding ``fragment``, nothing in ``ws`` created or changed."""
    before = snapshot(ws)
    code, lines = cli(args)
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and fragment in errors[0], lines
    assert not [line for line in lines if "Traceback" in line], lines
    assert snapshot(ws) == before, "the refused command wrote or changed files"


def _workspace(built: Path, ws: Path) -> Path:
    for name in ("stores", "model"):
        shutil.copytree(built / name, ws / name)
    return ws


def _eval(built: Path, ws: Path) -> list[str]:
    return ["eval", "--model", str(ws / "model"), "--data", str(built / "data"), "--store", str(ws / "stores"),
            "--out", str(ws / "report")]


@pytest.mark.parametrize("fault", STORE_FAULTS + MODEL_FAULTS, ids=lambda f: f.name)
def test_eval_refuses_a_damaged_artifact(fault: Fault, built: Path, tmp_path: Path, cli: Cli) -> None:
    ws = _workspace(built, tmp_path)
    fault.damage(ws)
    _refused(cli, _eval(built, ws), ws, fault.fragment)


LOADED = ("vectors chunk deleted", "60 rows zeroed", "weights truncated", "lexical arrays.npz truncated")


@pytest.mark.parametrize("fault", [f for f in STORE_FAULTS + MODEL_FAULTS if f.name in LOADED], ids=lambda f: f.name)
def test_scorer_load_refuses_a_damaged_artifact(fault: Fault, built: Path, tmp_path: Path) -> None:
    """The Python API and ``serve`` load through ``Scorer.load``: the same one line, as a HetmoeError."""
    ws = _workspace(built, tmp_path)
    fault.damage(ws)
    with pytest.raises(HetmoeError, match=re.escape(fault.fragment)) as err:
        Scorer.load(ws / "model", store_root=ws / "stores", with_indexes=False)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def scorer(built: Path) -> Scorer:
    return Scorer.load(built / "model", with_indexes=False)


def test_older_artifacts_load_unverified_with_one_warning(built: Path, tmp_path: Path, scorer: Scorer,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A model and a lexical model written before digests load, say once each that they are unverified, and score
    as the verified originals do."""
    ws = _workspace(built, tmp_path)
    old_folders = (ws / "model", ws / "stores" / "lexical" / "model")
    for folder in old_folders:
        (folder / "digests.json").unlink()
        config = json.loads((folder / "config.json").read_text())
        del config["digests"]
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    with caplog.at_level(logging.WARNING, logger="hetmoe.integrity"):
        loaded = [Scorer.load(ws / "model", store_root=ws / "stores", with_indexes=False,
                              encoders={e: scorer.encoder(e) for e in EXPERTS}) for _ in range(2)]
    warned = [r.getMessage().split(": read unverified")[0] for r in caplog.records if r.name == "hetmoe.integrity"]
    assert sorted(warned) == sorted(map(str, old_folders))
    items = loaded[0].catalog.ids[:5].tolist()
    np.testing.assert_array_equal(loaded[0].score("kettle", items, "TH").scores, scorer.score("kettle", items, "TH").scores)
    for old in loaded:
        old.close()


def test_a_store_without_checksums_loads_with_one_warning(built: Path, tmp_path: Path, static: Encoder,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A store written before chunk checksums reads as before (one warning); a deleted chunk is still found."""
    from zarr.codecs import ZstdCodec

    import hetmoe.store.embed as embed
    from hetmoe.experts.card import get_card
    from hetmoe.store.zarr_store import EmbeddingStore

    with monkeypatch.context() as patch:
        patch.setattr(embed, "vector_codecs", lambda: [])  # as hetmoe wrote stores before checksums
        patch.setattr(embed, "id_codecs", lambda: [ZstdCodec(level=0)])
        embed.embed_dataset(built / "data", get_card("static"), tmp_path, chunk_size=32, encoder=static, progress=False)
    part = tmp_path / "static" / "items.zarr"
    with caplog.at_level(logging.WARNING, logger="hetmoe.integrity"):
        old = [EmbeddingStore.open(part) for _ in range(2)]
    assert [r.getMessage().split(";")[0] for r in caplog.records if r.name == "hetmoe.integrity"] == [
        f"{part}: read unverified (no chunk checksums on vectors, ids: written before hetmoe checked its bytes)"]
    np.testing.assert_array_equal(old[1].load(), EmbeddingStore.open(built / "stores" / "static" / "items.zarr").load())
    (part / "vectors" / "c" / "1" / "0").unlink()
    with pytest.raises(HetmoeError, match="vectors/c/1/0: chunk missing"):
        EmbeddingStore.open(part)


# ----- hetmoe score: the pairs contract, parts, values --------------------------------------------------------------

@pytest.fixture(scope="module")
def pairs(built: Path) -> pl.DataFrame:
    """Valid pairs: the valid split by query_id (stored vectors) first, then six train queries by text."""
    queries = pl.read_parquet(built / "data" / "queries.parquet")
    judged = pl.read_parquet(built / "data" / "judgments.parquet").join(queries.select("query_id", "market", "text"),
                                                                          on="query_id")
    by_id = judged.filter(pl.col("split") == "valid").select("query_id", pl.lit(None, pl.String).alias("query"),
                                                              "market", "item_id")
    first = judged.filter(pl.col("split") == "train")["query_id"].unique(maintain_order=True).head(6)
    by_text = (judged.filter(pl.col("query_id").is_in(first.implode()))
               .select(pl.lit(None, pl.String).alias("query_id"), pl.col("text").alias("query"), "market", "item_id"))
    return pl.concat([by_id, by_text])


def _score(built: Path, pairs: Path, out: Path) -> list[str]:
    """`hetmoe score` writing ``out`` (its --out is a folder: ``out`` is OUT/scores.parquet)."""
    assert out.name == "scores.parquet"
    return ["score", "--model", str(built / "model"), "--pairs", str(pairs), "--out", str(out.parent),
            "--block-pairs", str(BLOCK)]


@pytest.fixture(scope="module")
def scored(built: Path, pairs: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    """One uninterrupted run over the pairs by query_id (stored vectors: no encoder to load in each run): (its pairs
    file, its output)."""
    from hetmoe.scale.score import score_pairs

    root = tmp_path_factory.mktemp("scored")
    pairs.filter(BY_ID).write_parquet(root / "pairs.parquet")
    summary = score_pairs(built / "model", root / "pairs.parquet", root / "out.parquet", block_pairs=BLOCK, progress=False)
    assert summary["scored"] == pairs.filter(BY_ID).height and summary["blocks"] >= 3
    return root / "pairs.parquet", pl.read_parquet(root / "out.parquet")


@pytest.mark.parametrize("fault", PAIRS_FAULTS, ids=lambda f: f.name)
def test_score_refuses_untrustworthy_pairs(fault: PairsFault, built: Path, pairs: pl.DataFrame, tmp_path: Path,
                                           cli: Cli) -> None:
    fault.change(pairs).write_parquet(tmp_path / "pairs.parquet")
    _refused(cli, _score(built, tmp_path / "pairs.parquet", tmp_path / "out" / "scores.parquet"), tmp_path, fault.fragment)


def test_score_refuses_an_out_that_is_its_input_or_a_folder(built: Path, scored: tuple[Path, pl.DataFrame],
                                                             tmp_path: Path, cli: Cli) -> None:
    shutil.copy(scored[0], tmp_path / "scores.parquet")
    (tmp_path / "folder" / "scores.parquet").mkdir(parents=True)
    _refused(cli, _score(built, tmp_path / "scores.parquet", tmp_path / "scores.parquet"), tmp_path, "is the --pairs file")
    _refused(cli, _score(built, tmp_path / "scores.parquet", tmp_path / "folder" / "scores.parquet"), tmp_path,
             "is a folder")
    args = _score(built, tmp_path / "scores.parquet", tmp_path / "x" / "scores.parquet")
    _refused(cli, [*args[:5], "--out", str(tmp_path / "scores.parquet"), *args[7:]], tmp_path, "--out is a folder")


@pytest.mark.parametrize("swap", ["part file", "part and record"])
def test_resume_redoes_a_part_that_is_not_its_block(swap: str, built: Path, scored: tuple[Path, pl.DataFrame],
                                                    tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another block's part copied over block 1 (with or without its record), and block 2's part truncated: both
    are scored again, and the output equals an uninterrupted run's (no pairs missing, none twice)."""
    from hetmoe.scale.parts import part_file, parts_dir, stats_file
    from hetmoe.scale.score import score_pairs

    out = tmp_path / "out.parquet"
    shutil.copytree(parts_dir(scored[0].with_name("out.parquet")), parts_dir(out))
    shutil.copy(part_file(parts_dir(out), 0), part_file(parts_dir(out), 1))
    if swap == "part and record":
        shutil.copy(stats_file(parts_dir(out), 0), stats_file(parts_dir(out), 1))
    path = part_file(parts_dir(out), 2)
    os.truncate(path, path.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="hetmoe.scale.parts"):
        summary = score_pairs(built / "model", scored[0], out, block_pairs=BLOCK, progress=False)
    assert summary["blocks_resumed"] == summary["blocks"] - 2 and summary["scored"] == scored[1].height
    assert pl.read_parquet(out).equals(scored[1])
    redone = sorted(r.getMessage().rsplit("; ", 1)[1] for r in caplog.records if r.name == "hetmoe.scale.parts")
    assert redone == ["scoring block 1 again", "scoring block 2 again"]


def _nan_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """A head fault: the model's scores come back with one NaN (what damaged weights used to give, all NaN)."""
    from hetmoe.moe.infer import MoEModel

    real = MoEModel.score

    def score(self: MoEModel, *args: object, **kwargs: object) -> np.ndarray:
        out = np.array(real(self, *args, **kwargs), dtype=np.float64)
        out[0] = np.nan
        return out

    monkeypatch.setattr(MoEModel, "score", score)


def test_a_non_finite_head_score_is_an_error_not_a_null(built: Path, scored: tuple[Path, pl.DataFrame], scorer: Scorer,
                                                        tmp_path: Path, cli: Cli,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _nan_head(monkeypatch)
    items = scorer.catalog.ids[:4].tolist()
    with pytest.raises(HetmoeError, match=r"head returned 1 non-finite score\(s\) of 4"):
        scorer.score_batch([ScoreRequest("kettle", items, "TH")])
    shutil.copy(scored[0], tmp_path / "pairs.parquet")
    code, lines = cli(_score(built, tmp_path / "pairs.parquet", tmp_path / "out" / "scores.parquet"))
    assert code == 2 and [line for line in lines if line.startswith("error: ")][0].count("non-finite score") == 1
    assert not (tmp_path / "out" / "scores.parquet").exists()


def test_a_query_an_expert_encodes_to_zero_is_refused(scorer: Scorer) -> None:
    """A zero-width space is not blank to ``str.strip`` but holds nothing the static expert knows: its all-zero
    vector would route and score like a real one."""
    with pytest.raises(RequestError, match=r"expert 'static' encodes it to 1 all-zero vectors \('\\u200b'\)") as err:
        scorer.score("\u200b", scorer.catalog.ids[:3].tolist(), "TH")
    assert err.value.field == "query"


def test_embed_refuses_a_text_that_encodes_to_zero_naming_its_id(tmp_path: Path, static: Encoder) -> None:
    from hetmoe.store.embed import embed_dataset

    data = tables()
    data["items"] = data["items"].with_columns(title=pl.when(pl.col("item_id") == "i3").then(pl.lit("\u200b"))
                                               .otherwise(pl.col("title")))
    root = write(tmp_path / "data", data)
    with pytest.raises(HetmoeError, match=r"expert 'static' produced 1 all-zero vectors \(i3\)"):
        embed_dataset(root, static.card, tmp_path / "stores", encoder=static, progress=False)
    assert not list((tmp_path / "stores" / "static" / "items.zarr.done").iterdir())


# ----- bounded inputs ---------------------------------------------------------------------------------------------

LONG_TITLE = "cordless drill 20v " * 110_000  # 2.09 million characters


def test_validate_warns_about_a_long_title_and_embed_reads_its_start(tmp_path: Path, cli: Cli) -> None:
    data = tables()
    data["items"] = data["items"].with_columns(title=pl.when(pl.col("item_id") == "i2").then(pl.lit(LONG_TITLE))
                                               .otherwise(pl.col("title")))
    root = write(tmp_path / "data", data)
    code, lines = cli(["data", "validate", str(root)])
    said = " ".join(" ".join(lines).split())  # the log handler wraps long lines
    assert code == 0 and f"1 text(s) longer than {MAX_TEXT_CHARS} characters (longest: i2, 2090000 characters)" in said
    code, lines = cli(["embed", "-e", "wordllama", "--data", str(root), "--store", str(tmp_path / "stores")])
    assert code == 0, lines


def test_experts_cut_texts_before_tokenizing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory does not grow with a title's length: wordllama sees only the first MAX_TEXT_CHARS characters (the
    2-million-character title used to ask for ~50 GiB), and the vector is that of the cut text."""
    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder

    encoder = build_encoder(get_card("wordllama"))
    seen: list[int] = []
    real = encoder._encode
    monkeypatch.setattr(encoder, "_encode", lambda texts, kind: seen.extend(map(len, texts)) or real(texts, kind))
    tracemalloc.start()
    try:
        vectors = encoder.encode([LONG_TITLE, "blue kettle"], kind="document")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert max(seen) == MAX_TEXT_CHARS and peak < 100 * 2**20
    np.testing.assert_array_equal(vectors, encoder.encode([LONG_TITLE[:MAX_TEXT_CHARS], "blue kettle"], kind="document"))


# ----- a full disk ------------------------------------------------------------------------------------------------

def _leftovers(root: Path) -> list[str]:
    """Temporary files a failed write could leave behind (Zarr's ``.partial``, hetmoe's ``.tmp``)."""
    return [str(p) for p in root.rglob("*") if p.suffix in (".partial", ".tmp")]


def _disk_fills(monkeypatch: pytest.MonkeyPatch, after: int, target: Callable[[Path], bool]) -> None:
    """The next writes go to disk until ``after`` of them hit ``target`` files; then the disk is full: that write
    gets half its bytes into Zarr's temporary file, then ENOSPC, as on a real full disk."""
    import zarr.storage._local as local

    real, count = local._put, [0]

    def put(path: Path, value: object, exclusive: bool = False) -> int:
        if target(path):
            count[0] += 1
            if count[0] > after:
                path.parent.mkdir(parents=True, exist_ok=True)
                with local._atomic_write(path, "wb") as handle:
                    handle.write(bytes(value.as_buffer_like())[:10])  # type: ignore[attr-defined]
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, value, exclusive)

    monkeypatch.setattr(local, "_put", put)


def test_embed_on_a_full_disk_fails_in_one_line_and_resumes(built: Path, tmp_path: Path, static: Encoder,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from hetmoe.store.embed import embed_dataset
    from hetmoe.store.zarr_store import EmbeddingStore

    def embed() -> dict:
        return embed_dataset(built / "data", static.card, tmp_path / "s", chunk_size=16, encoder=static, progress=False)

    with monkeypatch.context() as patch:
        _disk_fills(patch, 2, lambda path: "vectors" in path.parts and "c" in path.parts)
        with pytest.raises(HetmoeError, match=r"s/static: no space left on device; free some space, then run the same"):
            embed()
    assert not _leftovers(tmp_path) and len(list((tmp_path / "s" / "static" / "items.zarr.done").iterdir())) == 2
    summary = embed()
    resumed = EmbeddingStore.open(tmp_path / "s" / "static" / "items.zarr").load()
    assert summary["parts"]["items"]["rows_encoded"] == len(resumed) - 2 * 16  # the two chunks written are kept
    np.testing.assert_array_equal(resumed, EmbeddingStore.open(built / "stores" / "static" / "items.zarr").load())


def _parquet_fills(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """polars' Parquet writes succeed ``after`` times, then the disk is full (half a file, then polars' own error)."""
    real, count = pl.DataFrame.write_parquet, [0]

    def write_parquet(self: pl.DataFrame, file: object, *args: object, **kwargs: object) -> None:
        count[0] += 1
        if count[0] > after:
            Path(str(file)).write_bytes(b"PAR1")
            raise pl.exceptions.ComputeError("parquet: File out of specification: underlying IO error: No space left "
                                             "on device (os error 28)")
        real(self, file, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", write_parquet)


def test_score_on_a_full_disk_fails_in_one_line_and_resumes(built: Path, scored: tuple[Path, pl.DataFrame],
                                                            tmp_path: Path, cli: Cli,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from hetmoe.scale.parts import part_file, parts_dir

    out = tmp_path / "out" / "scores.parquet"
    with monkeypatch.context() as patch:
        _parquet_fills(patch, 2)
        code, lines = cli(_score(built, scored[0], out))
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "part-00002.parquet: no space left on device" in errors[0], lines
    assert not out.exists() and not _leftovers(tmp_path)
    assert sorted(p.name for p in parts_dir(out).glob("part-*.parquet")) == [part_file(parts_dir(out), b).name for b in (0, 1)]
    code, lines = cli(_score(built, scored[0], out))
    assert code == 0 and pl.read_parquet(out).equals(scored[1]), lines


def test_demo_on_a_full_disk_leaves_no_table(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _parquet_fills(monkeypatch, 1)
    code, lines = cli(["data", "demo", "--out", str(tmp_path / "demo"), "--market", "TH", "--items-per-market", "30",
                       "--queries-per-market", "10"])
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "demo: no space left on device" in errors[0], lines
    assert not list((tmp_path / "demo").iterdir())


# ----- request independence ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def catalog_of(built: Path) -> dict[str, list[str]]:
    items = pl.read_parquet(built / "data" / "items.parquet")
    return {m: items.filter(pl.col("market") == m)["item_id"].to_list() for m in items["market"].unique().to_list()}


@pytest.fixture(scope="module")
def both_heads(built: Path) -> list[Scorer]:
    """The fitted MoE and its other head (net or stacked), each served."""
    other = next(p for p in (built / "model" / "variants").iterdir() if p.name.startswith("moe-"))
    return [Scorer.load(built / "model", with_indexes=False), Scorer.load(other, with_indexes=False)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_pairs_score_is_the_same_bits_alone_and_in_any_mix_of_requests(data: st.DataObject, built: Path,
                                                                      catalog_of: dict[str, list[str]],
                                                                      both_heads: list[Scorer]) -> None:
    """What the README promises: a pair's score depends on its query, its item and the catalog only, not on the other
    ids or queries sent with it, bit for bit (the heads multiply rows independently: hetmoe.moe.heads.base.matmul)."""
    queries = pl.read_parquet(built / "data" / "queries.parquet").head(12)
    picks = data.draw(st.lists(st.integers(0, queries.height - 1), min_size=1, max_size=5))
    requests = []
    for q in picks:
        text, market = queries["text"][q], queries["market"][q]
        ids = data.draw(st.lists(st.sampled_from(catalog_of[market]), min_size=1, max_size=25, unique=True))
        requests.append(ScoreRequest(text, ids, market))
    for scorer in both_heads:
        mixed = scorer.score_batch(requests)
        for request, result in zip(requests, mixed):
            alone = [scorer.score(request.query, [i], request.market).scores[0] for i in request.item_ids]
            np.testing.assert_array_equal(result.scores, np.asarray(alone))
