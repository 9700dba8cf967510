"""A fitted catalog on disk: config.json, vocab.json, items.parquet (ids, compact titles) and arrays.npz.

Written into a temporary folder next to the target and renamed into place, so a reader sees the old model, the new
one, or nothing, never half; nothing is pickled. ``digests.json`` (:mod:`hetmoe.integrity`) records every file's
sha256, checked before any is read; a model saved before it loads with a warning that it is unverified.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from hetmoe.errors import HetmoeError
from hetmoe.integrity import DIGESTS, verify_digests, write_digests
from hetmoe.lexical.bm25 import Bm25Field
from hetmoe.lexical.catalog import LexicalCatalog
from hetmoe.lexical.config import FORMAT_VERSION, LexicalConfig
from hetmoe.lexical.terms import Vocabulary

FILES = ("config.json", "vocab.json", "items.parquet", "arrays.npz")
REFIT = "'hetmoe embed --expert lexical --data DIR --store STORE --overwrite'"  # when the caller names no better one
FIELD_ARRAYS = ("indptr", "indices", "weights", "idf")
ITEM_ARRAYS = (
    "item_base",
    "item_numbers",
    "item_first",
    "item_idf_norm",
    "ngram_buckets",
    "ngram_idf",
    "ngram_indptr",
    "ngram_indices",
    "ngram_weights",
)


def save_catalog(catalog: LexicalCatalog, folder: Path, feature_names: list[str]) -> None:
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        os.chmod(tmp, 0o755)
        meta = {
            "format": FORMAT_VERSION,
            "config": catalog.config.to_dict(),
            "feature_names": feature_names,
            "n_items": int(catalog.item_ids.size),
            "n_terms": len(catalog.vocab),
            "has_text": catalog.text is not None,
            "digests": DIGESTS,
        }
        (tmp / "config.json").write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
        catalog.vocab.save(tmp / "vocab.json")
        pl.DataFrame(
            {"item_id": catalog.item_ids.tolist(), "compact": catalog.compact},
            schema={"item_id": pl.String, "compact": pl.String},
        ).write_parquet(tmp / "items.parquet")
        arrays = {f"title_{k}": getattr(catalog.title, k) for k in FIELD_ARRAYS}
        if catalog.text is not None:
            arrays |= {f"text_{k}": getattr(catalog.text, k) for k in FIELD_ARRAYS}
        arrays |= {k: getattr(catalog, k) for k in ITEM_ARRAYS}
        arrays |= {"title_avgdl": np.float64(catalog.title.avgdl), "fitted_items": np.int64(catalog.fitted_items)}
        if catalog.text is not None:
            arrays["text_avgdl"] = np.float64(catalog.text.avgdl)
        np.savez(tmp / "arrays.npz", **arrays)
        write_digests(tmp, FILES)
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old."))
            os.replace(folder, old / "model")
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_catalog(folder: Path, rebuild: str = REFIT) -> tuple[LexicalCatalog, list[str]]:
    """The catalog and the feature names it was saved with; a missing, foreign or damaged folder is one line naming
    the file and ``rebuild`` (the command that fits it again)."""
    folder = Path(folder)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise HetmoeError(f"{folder}: not a saved lexical model (missing {', '.join(missing)}); rebuild it with {rebuild}")
    recorded = verify_digests(folder, FILES, rebuild) if (folder / DIGESTS).is_file() else False
    try:
        meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if not recorded:  # refused when the model was saved with digests; else a warning, once
            verify_digests(folder, FILES, rebuild, required=bool(meta.get("digests")))
        if meta.get("format") != FORMAT_VERSION:
            raise HetmoeError(
                f"{folder}: lexical model format {meta.get('format')}, this hetmoe reads {FORMAT_VERSION}; rebuild it "
                f"with {rebuild}"
            )
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        items = pl.read_parquet(folder / "items.parquet")
    except HetmoeError:
        raise
    except Exception as err:  # an unverified model's damage: BadZipFile, JSON, Parquet, ... errors
        raise HetmoeError(f"{folder}: damaged lexical model ({type(err).__name__}: {str(err)[:120]}); rebuild it with "
                          f"{rebuild}") from err

    def field(prefix: str) -> Bm25Field | None:
        if f"{prefix}_indptr" not in arrays:
            return None
        return Bm25Field(*(arrays[f"{prefix}_{k}"] for k in FIELD_ARRAYS),
                         avgdl=float(arrays.get(f"{prefix}_avgdl", 0.0)))

    title = field("title")
    assert title is not None, "save_catalog always writes the title field"
    catalog = LexicalCatalog(
        config=LexicalConfig.from_dict(meta["config"]),
        item_ids=np.asarray(items["item_id"].to_list(), dtype=object),
        vocab=Vocabulary.load(folder / "vocab.json"),
        title=title,
        text=field("text"),
        compact=items["compact"].to_list(),
        **{k: arrays[k] for k in ITEM_ARRAYS},
        fitted_items=int(arrays.get("fitted_items", 0)),
    )
    return catalog, list(meta["feature_names"])
