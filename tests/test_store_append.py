"""``hetmoe embed --append`` / ``hetmoe index --append`` with the real ``static`` expert: a store grown by appends
equals a full rebuild of the grown dataset bit for bit (ids, text hashes, vectors, chunk markers), only new rows are
encoded, changed or removed ids are refused, a killed append leaves the old store readable and resumes, a model
trained before the append still loads, and FAISS indexes grown by ``add`` answer like rebuilt ones."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from store_data import make_catalog

from hetmoe import EmbeddingStore
from hetmoe.data.dataset import load_dataset, write_dataset
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard, get_card
from hetmoe.experts.registry import build_encoder
from hetmoe.moe.artifacts import check_identity, expert_identity
from hetmoe.moe.features import load_pairs
from hetmoe.store.append import append_dataset
from hetmoe.store.embed import embed_dataset
from hetmoe.store.manifest import PartInput
from hetmoe.store.index import ItemIndex, build_index
from hetmoe.store.index_append import append_index
from hetmoe.store.layout import APPEND_PLAN, done_dir, part_path
from hetmoe.store.zarr_store import open_expert

EXPERT = "static"
CHUNK = 64
N_ITEMS, N_QUERIES = 1000, 60  # 1000 = 15 chunks + 40 rows: the last chunk is partial
NEW_ITEMS, NEW_QUERIES = 300, 25


@pytest.fixture(scope="module")
def card() -> ExpertCard:
    return get_card(EXPERT)


@pytest.fixture(scope="module")
def encoder(card: ExpertCard):
    return build_encoder(card)


def _grow(base: Path, out: Path, n_items: int, n_queries: int, seed: int, tag: str) -> Path:
    """``base`` with ``n_items`` items and ``n_queries`` queries of another catalog added at the end under new ids."""
    ds, extra = load_dataset(base), load_dataset(make_catalog(out.with_name(out.name + "-extra"), n_items, n_queries, seed=seed))
    items = pl.concat([ds.items, extra.items.with_columns((tag + pl.col("item_id")).alias("item_id"))])
    queries = pl.concat([ds.queries, extra.queries.with_columns((tag + pl.col("query_id")).alias("query_id"))])
    return write_dataset(out, items, queries, ds.judgments)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("append-data")
    base = make_catalog(root / "base", N_ITEMS, N_QUERIES)
    return {"base": base, "grown": _grow(base, root / "grown", NEW_ITEMS, NEW_QUERIES, seed=7, tag="new"),
            "other": _grow(base, root / "other", 150, 10, seed=9, tag="alt")}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Path], card: ExpertCard, encoder) -> dict[str, Path]:
    """Full, uninterrupted embeds: of the base dataset (copied by tests to append to) and of each grown one."""
    root = tmp_path_factory.mktemp("append-stores")
    for name, folder in data.items():
        embed_dataset(folder, card, root / name, chunk_size=CHUNK, encoder=encoder, progress=False)
    return {name: root / name for name in data}


class Recording:
    """The real expert, recording every text it encodes; optionally failing on one call (a crash mid-append)."""

    def __init__(self, encoder, fail_on_call: int | None = None) -> None:
        self.encoder, self.fail_on_call, self.texts, self.calls = encoder, fail_on_call, [], 0
        self.dim = encoder.dim

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("simulated crash")
        self.texts += texts
        return self.encoder.encode(texts, kind)


def _copy(stores: dict[str, Path], tmp_path: Path) -> Path:
    shutil.copytree(stores["base"], tmp_path / "stores")
    return tmp_path / "stores"


def _same_store(a: Path, b: Path) -> None:
    """Identical rows (ids, text hashes, float16 bytes), counts and chunk markers (same chunks, same extents)."""
    for part in ("items", "queries"):
        left, right = (EmbeddingStore.open(part_path(root, EXPERT, part)) for root in (a, b))
        assert np.array_equal(left.ids, right.ids)
        assert np.array_equal(left.text_hashes(), right.text_hashes())
        assert left.load().tobytes() == right.load().tobytes()
        assert (left.manifest["count"], left.manifest["n_chunks"]) == (right.manifest["count"], right.manifest["n_chunks"])
        extents = [{c.name: json.loads(c.read_text())["rows"] for c in done_dir(s.path).iterdir()} for s in (left, right)]
        assert extents[0] == extents[1]


def test_append_encodes_only_new_rows_and_equals_a_full_rebuild(tmp_path: Path, data: dict[str, Path],
                                                                stores: dict[str, Path], card: ExpertCard, encoder) -> None:
    root = _copy(stores, tmp_path)
    old = open_expert(root, EXPERT).items.manifest
    recording = Recording(encoder)
    summary = append_dataset(data["grown"], card, root, encoder=recording, progress=False)  # type: ignore[arg-type]
    added = summary["appended"]
    assert (added["items"]["from"], added["items"]["rows_added"], added["items"]["rows_encoded"]) == (N_ITEMS, NEW_ITEMS, NEW_ITEMS)
    assert added["items"]["chunks_encoded"] == 6 and added["queries"]["rows_encoded"] == NEW_QUERIES  # tail of 15, then 16..20
    grown = load_dataset(data["grown"])
    new_texts = set(grown.item_texts()["text"].to_list()[N_ITEMS:]) | set(grown.query_texts()["text"].to_list()[N_QUERIES:])
    assert set(recording.texts) <= new_texts and len(recording.texts) <= NEW_ITEMS + NEW_QUERIES
    _same_store(root, stores["grown"])
    # the fingerprint chain, exactly as documented in hetmoe.store.append
    items = open_expert(root, EXPERT).items.manifest
    frame = grown.item_texts().slice(N_ITEMS)
    rows_fp = PartInput("items", frame["item_id"], frame["text"]).fingerprint()
    chained = hashlib.sha256((old["input_fingerprint"] + rows_fp).encode("ascii")).hexdigest()
    assert items["input_fingerprint"] == chained != old["input_fingerprint"]
    [entry] = items["history"]
    assert (entry["previous_fingerprint"], entry["rows_fingerprint"], entry["from"], entry["rows_added"]) == (
        old["input_fingerprint"], rows_fp, N_ITEMS, NEW_ITEMS)
    assert items["complete"] and items["timing"]["rows"] == N_ITEMS + NEW_ITEMS and not (root / EXPERT / APPEND_PLAN).exists()
    # both datasets are served by the grown store (per-row text hashes), and a rerun has nothing to add
    for folder in (data["base"], data["grown"]):
        assert len(load_pairs(load_dataset(folder), root, [EXPERT], ["train"], EXPERT)) > 0
    again = append_dataset(data["grown"], card, root, encoder=Recording(encoder, fail_on_call=1), progress=False)  # type: ignore[arg-type]
    assert again["appended"] == {}


def test_after_an_append_readers_of_the_grown_dataset_skip_the_row_check_and_others_still_get_it(
        tmp_path: Path, data: dict[str, Path], stores: dict[str, Path], card: ExpertCard, encoder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The append checks every old row; it records the dataset it checked, so a reader of that very dataset (every
    fit, eval or index command after an append) need not hash every text again, while any other dataset still is."""
    from hetmoe.store import identity

    root = _copy(stores, tmp_path)
    append_dataset(data["grown"], card, root, encoder=encoder, progress=False)
    grown = load_dataset(data["grown"])
    items = open_expert(root, EXPERT).items.manifest
    texts = grown.item_texts()
    assert items[identity.VERIFIED] == PartInput("items", texts["item_id"], texts["text"]).fingerprint()
    assert items[identity.VERIFIED] != items["input_fingerprint"]  # the chained one: it alone would not match
    checked: list[int] = []
    real = identity.check_texts
    monkeypatch.setattr(identity, "check_texts", lambda store, ids, *a: (checked.append(len(ids)), real(store, ids, *a)))
    identity.check_dataset(open_expert(root, EXPERT), grown, EXPERT, root)
    assert checked == []
    changed = write_dataset(tmp_path / "changed", grown.items.with_columns(
        pl.when(pl.col("item_id") == "it000003").then(pl.col("title") + " v2").otherwise(pl.col("title")).alias("title")),
        grown.queries, grown.judgments)
    with pytest.raises(HetmoeError, match="holds vectors of other texts for 1 of the dataset's 1300 ids"):
        identity.check_dataset(open_expert(root, EXPERT), load_dataset(changed), EXPERT, root)
    assert checked == [N_ITEMS + NEW_ITEMS]


def test_changed_or_removed_ids_are_refused_in_one_line_and_nothing_changes(tmp_path: Path, data: dict[str, Path],
                                                                            stores: dict[str, Path], card: ExpertCard,
                                                                            encoder) -> None:
    root = _copy(stores, tmp_path)
    ds = load_dataset(data["grown"])
    changed = write_dataset(tmp_path / "changed", ds.items.with_columns(
        pl.when(pl.col("item_id") == "it000003").then(pl.col("title") + " v2").otherwise(pl.col("title")).alias("title")),
        ds.queries, ds.judgments)
    removed = write_dataset(tmp_path / "removed", ds.items.filter(pl.col("item_id") != "it000005"), ds.queries,
                            ds.judgments.filter(pl.col("item_id") != "it000005"))
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for folder, says in ((changed, "gives other texts for 1 of the store's 1000 items (it000003)"),
                         (removed, "lacks 1 of the store's 1000 items (it000005)")):
        with pytest.raises(HetmoeError, match="--overwrite") as err:
            append_dataset(folder, card, root, encoder=encoder, progress=False)
        assert says in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(HetmoeError, match="built with --chunk-size 64, but this run has 32"):
        append_dataset(data["grown"], card, root, chunk_size=32, encoder=encoder, progress=False)
    assert {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_a_crashed_append_keeps_the_old_store_readable_and_resumes(tmp_path: Path, data: dict[str, Path],
                                                                   stores: dict[str, Path], card: ExpertCard, encoder) -> None:
    root = _copy(stores, tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):  # after the partial chunk's tail and one full chunk
        append_dataset(data["grown"], card, root, encoder=Recording(encoder, fail_on_call=3), progress=False)  # type: ignore[arg-type]
    plan = (root / EXPERT / APPEND_PLAN).read_bytes()
    mid = open_expert(root, EXPERT)  # readers see exactly the old store meanwhile
    base = open_expert(stores["base"], EXPERT)
    assert len(mid.items) == N_ITEMS and mid.items.load().tobytes() == base.items.load().tobytes()
    assert np.array_equal(mid.items.text_hashes(), base.items.text_hashes())
    resumed = Recording(encoder)
    summary = append_dataset(data["grown"], card, root, encoder=resumed, progress=False)  # type: ignore[arg-type]
    assert summary["appended"]["items"]["rows_encoded"] == NEW_ITEMS - (CHUNK - N_ITEMS % CHUNK) - CHUNK  # resumed, not redone
    _same_store(root, stores["grown"])
    (root / EXPERT / APPEND_PLAN).write_bytes(plan)  # as if killed after the manifest landed, before the plan's removal
    assert len(open_expert(root, EXPERT).items) == N_ITEMS + NEW_ITEMS
    assert append_dataset(data["grown"], card, root, encoder=encoder, progress=False)["appended"] == {}
    assert not (root / EXPERT / APPEND_PLAN).exists()
    _same_store(root, stores["grown"])


def test_an_unfinished_append_of_other_rows_is_rolled_back(tmp_path: Path, data: dict[str, Path], stores: dict[str, Path],
                                                           card: ExpertCard, encoder) -> None:
    root = _copy(stores, tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        append_dataset(data["grown"], card, root, encoder=Recording(encoder, fail_on_call=3), progress=False)  # type: ignore[arg-type]
    assert append_dataset(data["base"], card, root, encoder=encoder, progress=False)["appended"] == {}
    _same_store(root, stores["base"])
    assert [json.loads(p.read_text()) for p in sorted(done_dir(part_path(root, EXPERT, "items")).iterdir())] == [
        json.loads(p.read_text()) for p in sorted(done_dir(part_path(stores["base"], EXPERT, "items")).iterdir())]
    with pytest.raises(RuntimeError, match="simulated crash"):
        append_dataset(data["grown"], card, root, encoder=Recording(encoder, fail_on_call=4), progress=False)  # type: ignore[arg-type]
    append_dataset(data["other"], card, root, encoder=encoder, progress=False)
    _same_store(root, stores["other"])


def test_a_model_trained_before_the_append_still_loads_but_not_after_a_rebuild(
        tmp_path: Path, data: dict[str, Path], stores: dict[str, Path], card: ExpertCard, encoder,
        caplog: pytest.LogCaptureFixture) -> None:
    root = _copy(stores, tmp_path)
    config = {"experts": {EXPERT: expert_identity(root, EXPERT)}}  # what fit records
    append_dataset(data["grown"], card, root, encoder=encoder, progress=False)
    with caplog.at_level(logging.INFO, logger="hetmoe.moe.artifacts"):
        check_identity(config, root, tmp_path / "model", check_queries=True)
    assert f"{NEW_ITEMS} rows appended since model" in caplog.text and f"{NEW_QUERIES} rows appended" in caplog.text
    embed_dataset(data["grown"], card, root, overwrite=True, encoder=encoder, progress=False)  # same rows, rebuilt
    with pytest.raises(HetmoeError, match="trained on a different 'static' items store"):
        check_identity(config, root, tmp_path / "model")


def _all_results(root: Path) -> tuple[np.ndarray, np.ndarray]:
    queries = open_expert(root, EXPERT).queries.load().astype(np.float32)
    return ItemIndex.load(root, EXPERT).search(queries, 10)


def test_index_append_equals_a_rebuilt_index(tmp_path: Path, data: dict[str, Path], stores: dict[str, Path],
                                             card: ExpertCard, encoder) -> None:
    root = _copy(stores, tmp_path)
    build_index(root, EXPERT, kind="flat")
    saved = {p.name: p.read_bytes() for p in (root / EXPERT).glob("items.faiss*")}
    append_dataset(data["grown"], card, root, encoder=encoder, progress=False)
    with pytest.raises(HetmoeError, match=f"grew by {NEW_ITEMS} items since the index was built; .* --append'"):
        ItemIndex.load(root, EXPERT)
    result = append_index(root, EXPERT)
    assert (result["from"], result["rows_added"], result["count"]) == (N_ITEMS, NEW_ITEMS, N_ITEMS + NEW_ITEMS)
    fresh = tmp_path / "fresh"
    shutil.copytree(stores["grown"], fresh)
    build_index(fresh, EXPERT, kind="flat")
    (ids, scores), (want_ids, want_scores) = _all_results(root), _all_results(fresh)
    assert np.array_equal(ids, want_ids) and np.array_equal(scores, want_scores)
    assert append_index(root, EXPERT)["rows_added"] == 0
    with pytest.raises(HetmoeError, match="the index is flat and --append keeps its kind"):
        append_index(root, EXPERT, kind="hnsw")
    embed_dataset(data["grown"], card, root, overwrite=True, encoder=encoder, progress=False)  # same rows, rebuilt
    for name, blob in saved.items():  # the index of the base store put back: the rebuilt store has no such past
        (root / EXPERT / name).write_bytes(blob)
    with pytest.raises(HetmoeError, match="not over an earlier state of this item store"):
        append_index(root, EXPERT)


def test_hnsw_index_append_finds_new_items_at_the_target_recall(tmp_path: Path, data: dict[str, Path],
                                                                stores: dict[str, Path], card: ExpertCard, encoder) -> None:
    root = _copy(stores, tmp_path)
    build_index(root, EXPERT, kind="hnsw")
    append_dataset(data["grown"], card, root, encoder=encoder, progress=False)
    result = append_index(root, EXPERT)
    assert result["kind"] == "hnsw" and result["count"] == N_ITEMS + NEW_ITEMS and result["recall@10"] >= 0.95
    index = ItemIndex.load(root, EXPERT)
    assert len(index) == N_ITEMS + NEW_ITEMS and index.meta["appended"][0]["rows_added"] == NEW_ITEMS
    items = open_expert(root, EXPERT).items
    new = items.load()[N_ITEMS:].astype(np.float32)
    ids, scores = index.search(new, 1)  # each new item is found as its own nearest neighbour (or a duplicate title)
    assert scores.min() > 0.999 and np.mean(ids[:, 0] == items.ids[N_ITEMS:]) > 0.8
