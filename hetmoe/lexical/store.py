"""Stage one for the lexical expert: fit on a dataset's catalog once, save under ``STORE/<name>/``, open it checked.

Layout: ``STORE/<name>/model/`` (the saved :class:`LexicalModel`) and ``manifest.json``, written last, holding the
identity (kind, format, config + hash, card hash, the items' input fingerprint) and what the fit took. The items'
fingerprint is the embedding stores' (ids and ``item_texts()``), so a lexical store and an embedding store of the same
dataset can be checked against each other.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hetmoe.files import write_json_atomic
from hetmoe.errors import HetmoeError
from hetmoe.lexical.config import FORMAT_VERSION, LexicalConfig
from hetmoe.lexical.model import LexicalModel
from hetmoe.provenance import library_versions
from hetmoe.store.layout import MANIFEST, expert_dir, read_manifest

if TYPE_CHECKING:
    from hetmoe.data.dataset import Dataset
    from hetmoe.experts.card import ExpertCard

log = logging.getLogger(__name__)
KIND = "lexical"
MODEL_DIR = "model"
TEXT_HASHES = "text_hash.parquet"
IDENTITY_KEYS = ("kind", "format", "config_hash", "card_hash")
LIBRARIES = ("hetmoe", "bm25s", "pythainlp", "PyStemmer", "regex", "numpy", "scipy")


def items_fingerprint(dataset: Dataset) -> str:
    """sha256 over item ids and ``item_texts()``: the same value an embedding store records for its items part."""
    from hetmoe.store.manifest import PartInput

    texts = dataset.item_texts()
    return PartInput("items", texts["item_id"], texts["text"]).fingerprint()


def write_text_hashes(folder: Path, dataset: Dataset, hashes: np.ndarray | None = None) -> None:
    """``STORE/<name>/text_hash.parquet``: each item's hash of ``item_texts()`` (:mod:`hetmoe.store.identity`), so a
    dataset covering part of the catalog can be checked row by row (atomic: written aside, renamed). ``hashes``:
    those of ``item_texts()`` in its order, when the caller has them already."""
    import polars as pl

    from hetmoe.store.identity import text_hashes

    texts = dataset.item_texts()
    frame = pl.DataFrame({"item_id": texts["item_id"],
                          "text_hash": text_hashes(texts["text"]) if hashes is None else hashes})
    tmp = folder / f".{TEXT_HASHES}.tmp"
    frame.write_parquet(tmp)
    tmp.replace(folder / TEXT_HASHES)


def _fix(name: str, store_root: Path, overwrite: bool = False, data: str | None = None) -> str:
    return f"'hetmoe embed --expert {name} --data {data or 'D'} --store {store_root}{' --overwrite' if overwrite else ''}'"


def _mismatch(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why an existing manifest describes another store than the one asked for (None when it is the same)."""
    for key in IDENTITY_KEYS:
        if old.get(key) != new[key]:
            return f"built with {key.replace('_', ' ')} {str(old.get(key))[:16]}, but this run has {str(new[key])[:16]}"
    had, now = old.get("items", {}), new["items"]
    if (had.get("count"), had.get("input_fingerprint")) != (now["count"], now["input_fingerprint"]):
        return (
            f"built from other items ({had.get('count')} items, fingerprint {str(had.get('input_fingerprint'))[:12]}; "
            f"now {now['count']}, {now['input_fingerprint'][:12]})"
        )
    return None


def fit_lexical_store(
    data_dir: str | Path,
    store_root: str | Path,
    name: str = "lexical",
    overwrite: bool = False,
    config: LexicalConfig | None = None,
    card: ExpertCard | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit the lexical expert on a dataset's items into ``STORE/<name>/``; a re-run with the same input is a no-op.

    The config comes from ``config``, else the card's ``options``, else the defaults. A store built from other items or
    another config is refused (one line naming ``--overwrite``) unless ``overwrite``.
    """
    from hetmoe.data.validate import check_dataset

    began = time.perf_counter()
    store_root, folder = Path(store_root), expert_dir(store_root, name)
    config = config or LexicalConfig.from_dict(card.options if card is not None else None)
    dataset = check_dataset(data_dir)
    identity = {
        "kind": KIND,
        "format": FORMAT_VERSION,
        "config_hash": config.hash,
        "card_hash": card.hash if card else None,
        "items": {"count": dataset.items.height, "input_fingerprint": items_fingerprint(dataset)},
    }
    try:
        old = read_manifest(folder)
    except HetmoeError:
        old = {"kind": "unreadable manifest"}
    reason = None if old is None else _mismatch(old, identity)
    if old is None and folder.is_dir() and any(folder.iterdir()):
        reason = "has files but no manifest (an interrupted fit?)"
    if old is not None and reason is None and (folder / MODEL_DIR / "config.json").is_file():
        log.info("%s: lexical store is up to date", folder)
        if not (folder / TEXT_HASHES).is_file():  # fitted before per-item text hashes: same input, add them now
            write_text_hashes(folder, dataset)
        return {"expert": name, "store": str(folder), "complete": True, "skipped": True,
                "seconds": round(time.perf_counter() - began, 3), "items": identity["items"]["count"]}
    if reason is not None and not overwrite:
        raise HetmoeError(f"{folder}: {reason}; pass --overwrite to rebuild it, or choose another --store")
    if reason is not None:
        log.warning("%s: %s; --overwrite: refitting it", folder, reason)
    (folder / MANIFEST).unlink(missing_ok=True)  # from here until the new manifest, the store reads as half-written
    items = dataset.items
    texts = items["text"].to_list() if "text" in items.columns else None
    langs = items["lang"].to_list() if "lang" in items.columns else None
    fit_began = time.perf_counter()
    model = LexicalModel.fit(
        items["item_id"].to_list(),
        items["title"].to_list(),
        texts,
        items["market"].to_list(),
        langs,
        config=config,
        progress=progress,
    )
    fit_seconds = time.perf_counter() - fit_began
    model.save(folder / MODEL_DIR)
    write_text_hashes(folder, dataset)
    catalog = model.catalog
    manifest = {
        **identity,
        "name": name,
        "config": config.to_dict(),
        "card": card.to_dict() if card else None,
        "data": str(Path(data_dir).resolve()),
        "versions": library_versions(LIBRARIES),
        "complete": True,
        "feature_names": model.feature_names,
        "fit_seconds": round(fit_seconds, 3),
        "counts": {
            "items": int(catalog.item_ids.size),
            "terms": len(catalog.vocab),
            "items_with_text": int(sum(bool(t and t.strip()) for t in texts or [])),
            "title_entries": int(catalog.title.indices.size),
            "ngram_entries": int(catalog.ngram_indices.size),
        },
    }
    write_json_atomic(folder / MANIFEST, manifest)
    log.info("%s: lexical expert fitted on %d items in %.1f s", folder, catalog.item_ids.size, fit_seconds)
    return {
        "expert": name,
        "store": str(folder),
        "complete": True,
        "skipped": False,
        "seconds": round(time.perf_counter() - began, 3),
        "fit_seconds": round(fit_seconds, 3),
        "items": int(catalog.item_ids.size),
    }


def append_lexical_store(data_dir: str | Path, store_root: str | Path, name: str = "lexical") -> dict[str, Any]:
    """Grow ``STORE/<name>/`` by the items the dataset adds (every item it holds must keep its text): only they are
    tokenized, weighed with the fitted statistics; the manifest records the fingerprint it grew from, so models
    fitted before still load. Resumable: the model folder and then the manifest are each replaced atomically."""
    import polars as pl

    from hetmoe.data.validate import check_dataset
    from hetmoe.store.identity import text_hashes

    began, store_root = time.perf_counter(), Path(store_root)
    folder, dataset = expert_dir(store_root, name), check_dataset(data_dir)
    model = open_lexical(store_root, name)
    manifest = read_manifest(folder) or {}
    fix = f"refit it with {_fix(name, store_root, True, str(data_dir))}"
    held = pl.read_parquet(folder / TEXT_HASHES) if (folder / TEXT_HASHES).is_file() else None
    if held is None:
        raise HetmoeError(f"{folder} records no per-item text hashes; {fix}")
    texts = dataset.item_texts()
    hashes = text_hashes(texts["text"])  # hashed once: checked here, written below
    texts = texts.with_columns(now=pl.Series(hashes)).join(held, on="item_id", how="left", maintain_order="left")
    lost = held.filter(~pl.col("item_id").is_in(texts["item_id"].implode()))
    if lost.height:
        raise HetmoeError(f"{data_dir} lacks {lost.height} item(s) the lexical store holds (e.g. "
                          f"{', '.join(lost['item_id'].head(3).to_list())}); --append only adds items: {fix}")
    old = texts.filter(pl.col("text_hash").is_not_null())
    changed = old["text_hash"].to_numpy().astype(np.uint64) != old["now"].to_numpy()
    if changed.any():
        raise HetmoeError(f"{int(changed.sum())} item(s) of {data_dir} changed their text since the lexical store was "
                          f"fitted (e.g. {old.filter(pl.Series(changed))['item_id'][0]}); {fix}")
    new = dataset.items.filter(pl.col("item_id").is_in(texts.filter(pl.col("text_hash").is_null())["item_id"].implode()))
    summary = {"expert": name, "store": str(folder), "complete": True, "items_added": new.height}
    if new.height == 0:
        return {**summary, "skipped": True, "seconds": round(time.perf_counter() - began, 3)}
    grown = model.append(new["item_id"].to_list(), new["title"].to_list(),
                         new["text"].to_list() if "text" in new.columns else None)
    grown.save(folder / MODEL_DIR)
    write_text_hashes(folder, dataset, hashes)
    items = manifest["items"]
    history = [*items.get("history", []), {"previous_fingerprint": items["input_fingerprint"], "from": items["count"]}]
    write_json_atomic(folder / MANIFEST, {**manifest, "items": {"count": dataset.items.height, "input_fingerprint":
                                                                items_fingerprint(dataset), "history": history}})
    log.info("%s: %d items appended to the lexical expert", folder, new.height)
    return {**summary, "skipped": False, "seconds": round(time.perf_counter() - began, 3)}


def open_lexical(
    store_root: str | Path, name: str = "lexical", expected_fingerprint: str | None = None
) -> LexicalModel:
    """The fitted model of ``STORE/<name>/``; a missing, half-written or other-input store is refused in one line."""
    store_root = Path(store_root)
    folder = expert_dir(store_root, name)
    try:
        manifest = read_manifest(folder)
    except HetmoeError as err:
        raise HetmoeError(
            f"{folder}: unreadable lexical manifest; rebuild it with {_fix(name, store_root, True)}"
        ) from err
    if manifest is None:
        state = "is half-written (no manifest)" if folder.is_dir() else "does not exist"
        raise HetmoeError(f"lexical store {folder} {state}; build it with {_fix(name, store_root, folder.is_dir())}")
    if manifest.get("kind") != KIND or not manifest.get("complete"):
        raise HetmoeError(f"{folder} is not a complete lexical store; rebuild it with {_fix(name, store_root, True)}")
    if manifest.get("format") != FORMAT_VERSION:
        raise HetmoeError(
            f"{folder}: lexical store format {manifest.get('format')}, this hetmoe reads {FORMAT_VERSION}; "
            f"rebuild it with {_fix(name, store_root, True)}"
        )
    found = manifest.get("items", {}).get("input_fingerprint")
    if expected_fingerprint is not None and found != expected_fingerprint:
        raise HetmoeError(
            f"{folder}: fitted on other items (fingerprint {str(found)[:12]}, expected {expected_fingerprint[:12]}); "
            f"rebuild it with {_fix(name, store_root, True)}"
        )
    return LexicalModel.load(folder / MODEL_DIR, _fix(name, store_root, True, manifest.get("data")))


def dataset_fingerprint(data_dir: str | Path) -> str:
    """:func:`items_fingerprint` of a dataset folder (what ``open_lexical(expected_fingerprint=...)`` compares)."""
    from hetmoe.data.dataset import load_dataset

    return items_fingerprint(load_dataset(data_dir))
