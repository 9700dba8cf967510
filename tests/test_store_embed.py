"""Embedding stores with the real ``static`` expert: vectors equal the backend, resume/shards are bit-identical,
mismatched stores are refused, and the reader refuses half-written stores."""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from store_data import make_catalog

from hetmoe import EmbeddingStore
from hetmoe.data.dataset import load_dataset
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard, get_card
from hetmoe.experts.registry import build_encoder
from hetmoe.store.embed import embed_dataset, encode_unique, parse_shard, to_float16
from hetmoe.store.layout import done_dir, part_path
from hetmoe.store.zarr_store import open_expert

CHUNK = 64
N_ITEMS = 12_000
CLI = [sys.executable, "-c", "from hetmoe.cli import main; main()"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def card() -> ExpertCard:
    return get_card("static")


@pytest.fixture(scope="module")
def encoder(card: ExpertCard):
    return build_encoder(card)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("catalog"), N_ITEMS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, catalog: Path, card: ExpertCard, encoder) -> Path:
    """One uninterrupted, unsharded run: what every other way of filling the store must equal bit for bit."""
    root = tmp_path_factory.mktemp("ref")
    summary = embed_dataset(catalog, card, root, chunk_size=CHUNK, encoder=encoder, progress=False)
    assert summary["complete"] and summary["parts"]["items"]["rows_encoded"] == N_ITEMS
    return root


def _same_store(a: Path, b: Path) -> None:
    for part in ("items", "queries"):
        left, right = EmbeddingStore.open(part_path(a, "static", part)), EmbeddingStore.open(part_path(b, "static", part))
        assert np.array_equal(left.ids, right.ids)
        assert left.load().tobytes() == right.load().tobytes()


def test_stored_vectors_equal_direct_backend_call(reference: Path, catalog: Path, card: ExpertCard, encoder) -> None:
    stores = open_expert(reference, "static", card_hash=card.hash)
    dataset = load_dataset(catalog)
    for store, frame, kind in ((stores.items, dataset.item_texts(), "document"), (stores.queries, dataset.query_texts(), "query")):
        assert store.ids.tolist() == frame[frame.columns[0]].to_list()
        direct = encoder.encode(frame["text"].to_list(), kind)
        stored = store.load()
        assert stored.dtype == np.float16 and stored.shape == direct.shape
        cosine = (stored.astype(np.float32) * direct).sum(1) / np.linalg.norm(stored.astype(np.float32), axis=1)
        assert cosine.min() >= 0.999
    manifest = stores.items.manifest
    assert (manifest["card_hash"], manifest["dim"], manifest["count"]) == (card.hash, 64, N_ITEMS)
    assert manifest["card"]["backend"] == "model2vec" and len(manifest["input_fingerprint"]) == 64
    assert manifest["complete"] and manifest["timing"]["rows"] == N_ITEMS


def test_chunk_encodes_each_distinct_text_once_longest_first(encoder) -> None:
    calls: list[list[str]] = []

    class Recording:  # wraps the real expert to see what reaches it
        def encode(self, texts: list[str], kind: str) -> np.ndarray:
            calls.append(list(texts))
            return encoder.encode(texts, kind)

    texts = ["short", "a much longer product title", "short", "mid length", "a much longer product title"]
    vectors, position = encode_unique(Recording(), texts, "document", 64)  # type: ignore[arg-type]
    half = to_float16(vectors, position)
    assert vectors.shape[0] == 3 and calls == [["a much longer product title", "mid length", "short"]]
    assert np.abs(half.astype(np.float32) - encoder.encode(texts, "document")).max() < 1e-3
    assert half[0].tobytes() == half[2].tobytes()


def test_shards_fill_one_store_equal_to_unsharded(tmp_path: Path, reference: Path, catalog: Path, card: ExpertCard, encoder) -> None:
    first = embed_dataset(catalog, card, tmp_path, shard=(0, 2), chunk_size=CHUNK, encoder=encoder, progress=False)
    assert not first["complete"]
    with pytest.raises(HetmoeError, match=r"94 of 188 chunks written; run 'hetmoe embed --expert static --data "):
        EmbeddingStore.open(part_path(tmp_path, "static", "items"))
    second = embed_dataset(catalog, card, tmp_path, shard=(1, 2), encoder=encoder, progress=False)
    assert second["complete"] and first["parts"]["items"]["rows_encoded"] + second["parts"]["items"]["rows_encoded"] == N_ITEMS
    _same_store(tmp_path, reference)


def test_concurrent_shard_processes_fill_one_store(tmp_path: Path, reference: Path, catalog: Path) -> None:
    args = [*CLI, "embed", "--expert", "static", "--data", str(catalog), "--store", str(tmp_path), "--chunk-size", str(CHUNK)]
    procs = [subprocess.Popen([*args, "--shard", f"{i}/2"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outs]
    _same_store(tmp_path, reference)


def test_killed_embed_resumes_bit_identical(tmp_path: Path, reference: Path, catalog: Path) -> None:
    args = [*CLI, "embed", "--expert", "static", "--data", str(catalog), "--store", str(tmp_path), "--chunk-size", str(CHUNK)]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    markers = done_dir(part_path(tmp_path, "static", "items"))
    deadline = time.monotonic() + 120
    while not (markers.is_dir() and any(name.isdigit() for name in os.listdir(markers))):
        assert proc.poll() is None and time.monotonic() < deadline, "embed ended before writing its first chunk"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "embed finished before it could be killed; raise N_ITEMS"
    with pytest.raises(HetmoeError, match="incomplete store"):
        EmbeddingStore.open(part_path(tmp_path, "static", "items"))
    rerun = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert '"complete": true' in rerun.stdout and f'"rows_encoded": {N_ITEMS},' not in rerun.stdout  # resumed, not redone
    _same_store(tmp_path, reference)


def test_other_input_refused_unless_overwrite(tmp_path: Path, reference: Path, card: ExpertCard, encoder) -> None:
    shutil.copytree(reference, tmp_path / "store")
    changed = make_catalog(tmp_path / "changed", N_ITEMS, tweak=" deluxe")
    with pytest.raises(HetmoeError, match=r"built from other input .*; pass --overwrite") as err:
        embed_dataset(changed, card, tmp_path / "store", encoder=encoder, progress=False)
    assert "\n" not in str(err.value)
    embed_dataset(changed, card, tmp_path / "store", overwrite=True, chunk_size=CHUNK, encoder=encoder, progress=False)
    new = EmbeddingStore.open(part_path(tmp_path / "store", "static", "items")).load()
    old = EmbeddingStore.open(part_path(reference, "static", "items")).load()
    assert new[0].tobytes() != old[0].tobytes() and new[1:].tobytes() == old[1:].tobytes()


def test_store_of_another_card_refused_by_cli(tmp_path: Path, reference: Path, catalog: Path) -> None:
    cards = tmp_path / "cards.toml"
    cards.write_text('[experts.static]\nbackend = "model2vec"\nmodel = "pkg:static_model/model"\nmax_length = 16\n')
    args = [*CLI, "embed", "--expert", "static", "--data", str(catalog), "--store", str(reference), "--cards", str(cards)]
    result = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "built with expert card" in lines[0] and "--overwrite" in lines[0]


def test_reader_lookup_and_refusals(reference: Path, card: ExpertCard) -> None:
    store = EmbeddingStore.open(part_path(reference, "static", "items"))
    assert len(store) == N_ITEMS and store.dim == 64
    wanted = ["it000042", "it000007", "it000042"]
    assert store.rows(wanted).tolist() == [42, 7, 42]
    got = store.get(wanted)
    assert got.dtype == np.float32 and np.array_equal(got, store.load()[[42, 7, 42]].astype(np.float32))
    with pytest.raises(KeyError, match="2 id\\(s\\) not in .*: nope, zzz"):
        store.get(["it000001", "nope", "zzz"])
    with pytest.raises(HetmoeError, match="built by expert card .* --overwrite"):
        EmbeddingStore.open(part_path(reference, "static", "items"), card_hash="0" * 16)
    with pytest.raises(HetmoeError, match="no embedding store here; create it with 'hetmoe embed --expert minilm"):
        EmbeddingStore.open(part_path(reference, "minilm", "items"))


def test_shard_spec_is_checked() -> None:
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None
    for bad in ("2/2", "x/3", "1"):
        with pytest.raises(HetmoeError, match="--shard"):
            parse_shard(bad)


@pytest.mark.parametrize("bad", [np.nan, 1e6])
def test_unstorable_vectors_stop_the_run_unmarked_and_a_fixed_rerun_resumes(
    tmp_path: Path, reference: Path, catalog: Path, card: ExpertCard, encoder, bad: float
) -> None:
    """NaN, or a value float16 cannot hold, fails the chunk it is in before that chunk is marked; the chunks before it
    stay written (the writer thread finishes them), and the rerun completes bit-identical to an uninterrupted run."""
    poison = load_dataset(catalog).items["title"][5 * CHUNK + 3]

    class Poisoned:  # the real expert, except for one text
        dim = encoder.dim

        def encode(self, texts: list[str], kind: str) -> np.ndarray:
            out = encoder.encode(texts, kind)
            out[[t == poison for t in texts]] = bad
            return out

    with pytest.raises(HetmoeError, match="non-finite vectors"):
        embed_dataset(catalog, card, tmp_path, chunk_size=CHUNK, encoder=Poisoned(), progress=False)  # type: ignore[arg-type]
    marked = sorted(int(p.name) for p in done_dir(part_path(tmp_path, "static", "items")).iterdir())
    assert marked == list(range(5))
    resumed = embed_dataset(catalog, card, tmp_path, encoder=encoder, progress=False)
    assert resumed["complete"] and resumed["parts"]["items"]["rows_encoded"] == N_ITEMS - 5 * CHUNK
    _same_store(tmp_path, reference)


def test_a_new_store_takes_the_cards_chunk_size_and_keeps_its_own(tmp_path: Path, catalog: Path, card: ExpertCard,
                                                                   encoder) -> None:
    sized = dataclasses.replace(card, chunk_size=5000)
    assert sized.hash == card.hash  # chunking never changes a vector
    embed_dataset(catalog, sized, tmp_path, encoder=encoder, progress=False)
    assert open_expert(tmp_path, "static").items.manifest["chunk_size"] == 5000
    again = embed_dataset(catalog, dataclasses.replace(card, chunk_size=700), tmp_path, encoder=encoder, progress=False)
    assert again["complete"] and open_expert(tmp_path, "static").items.manifest["chunk_size"] == 5000
