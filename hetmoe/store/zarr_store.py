"""Reading an expert's vectors: everything after ``hetmoe embed`` reads these stores, never the models.

``EmbeddingStore.open`` refuses a store that is half-written (a killed or still-running embed) or that does not match
what the caller expects, so downstream code never trains or scores on zero-filled or foreign vectors.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.vectors import SortedIds
from hetmoe.store.identity import TEXT_HASH
from hetmoe.store.layout import APPEND_PLAN, PARTS, chunk_timing, completed_chunks, part_path, read_manifest
from hetmoe.store.verify import check_part, check_values, read_rows


def part_manifest(zarr_path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The flat view of one part: shared identity (card, dim, versions) plus this part's count and fingerprint."""
    part = zarr_path.name.removesuffix(".zarr")
    shared = {key: value for key, value in manifest.items() if key not in ("parts", "complete", "timing")}
    view = {**shared, **manifest["parts"][part], "part": part}
    view["chunks_complete"] = len(completed_chunks(zarr_path))
    view["complete"] = view["chunks_complete"] >= view["n_chunks"]
    view["timing"] = manifest.get("timing", {}).get(part) or chunk_timing(zarr_path)
    return view


class EmbeddingStore:
    """One part (items or queries) of one expert's store: ids in row order and their float16 vectors."""

    def __init__(self, path: Path, manifest: dict[str, Any], vectors: Any, ids: np.ndarray, rebuild: str = "'hetmoe embed'") -> None:
        self.path = path
        self.rebuild = rebuild  # the command that rebuilds it, for errors about its bytes or values
        self.manifest = manifest
        self._vectors = vectors
        self.ids = ids
        self._matrix: np.ndarray | None = None
        self._lookup: SortedIds | None = None

    @classmethod
    def open(cls, path: str | Path, card_hash: str | None = None) -> EmbeddingStore:
        """Open ``STORE/<expert>/<items|queries>.zarr``; refuse it if incomplete, inconsistent, or built by another card."""
        import zarr

        path = Path(path)
        part = path.name.removesuffix(".zarr")
        if part not in PARTS or not path.suffix == ".zarr":
            raise HetmoeError(f"{path}: not a store part; open STORE/<expert>/items.zarr or STORE/<expert>/queries.zarr")
        manifest = read_manifest(path.parent)
        if manifest is None or not path.is_dir():
            raise HetmoeError(
                f"{path}: no embedding store here; create it with 'hetmoe embed --expert {path.parent.name} --data DIR "
                f"--store {path.parent.parent}'"
            )
        view = part_manifest(path, manifest)
        if view["expert"] != path.parent.name:
            raise HetmoeError(
                f"{path.parent}: its manifest says expert '{view['expert']}' built it, not '{path.parent.name}' (a copied or "
                f"renamed folder?); move it to {path.parent.parent / view['expert']} or re-embed with 'hetmoe embed --expert "
                f"{path.parent.name}'"
            )
        rerun = f"'hetmoe embed --expert {view['expert']} --data {view.get('data', 'DIR')} --store {path.parent.parent}'"
        rebuild = f"{rerun[:-1]} --overwrite'"
        if not view["complete"]:
            raise HetmoeError(
                f"{path}: incomplete store, {view['chunks_complete']} of {view['n_chunks']} chunks written; run {rerun} again to finish"
            )
        if card_hash is not None and view["card_hash"] != card_hash:
            raise HetmoeError(
                f"{path}: built by expert card {view['card_hash'][:12]}, but the current card is {card_hash[:12]}; "
                f"rebuild it with {rebuild}"
            )
        # While an append runs (or after it was killed) the arrays are longer than the manifest's count; the rows past
        # it are not part of the store until the append replaces the manifest, so readers keep seeing the old store.
        appending = (path.parent / APPEND_PLAN).is_file()
        try:
            group = zarr.open_group(path, mode="r")
            vectors, id_array = group["vectors"], group["ids"]
        except (KeyError, FileNotFoundError, ValueError) as err:
            raise HetmoeError(f"{path}: damaged store ({type(err).__name__}: {err}); rebuild it with {rebuild}") from err
        rows, id_rows = ((min(a.shape[0], view["count"]) if appending else a.shape[0]) for a in (vectors, id_array))
        if (rows, *vectors.shape[1:]) != (view["count"], view["dim"]) or id_rows != view["count"]:
            raise HetmoeError(
                f"{path}: vectors {vectors.shape} / ids {id_array.shape} do not match the manifest ({view['count']}, "
                f"{view['dim']}); rebuild it with {rebuild}"
            )
        check_part(path, {"vectors": vectors, "ids": id_array}, view["count"], rebuild)
        ids = np.asarray(read_rows(path / "ids", id_array, view["count"], rebuild).tolist(), dtype=str)
        return cls(path, view, vectors, ids, rebuild)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def expert(self) -> str:
        return str(self.manifest["expert"])

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r}, n={len(self)}, dim={self.dim})"

    def text_hashes(self) -> np.ndarray | None:
        """(n,) uint64 hash of each row's encoded text (:mod:`hetmoe.store.identity`); None for older stores."""
        import zarr

        if not (self.path / TEXT_HASH / "zarr.json").is_file():
            return None
        array = zarr.open_array(self.path / TEXT_HASH, mode="r")
        check_part(self.path, {TEXT_HASH: array}, len(self), self.rebuild)
        return np.asarray(read_rows(self.path / TEXT_HASH, array, len(self), self.rebuild), dtype=np.uint64)

    def load(self) -> np.ndarray:
        """All vectors as one read-only float16 (n, dim) matrix in row order (read once, checked, then cached): a
        chunk that fails its checksum, or an all-zero or non-finite vector, is refused naming it."""
        if self._matrix is None:
            matrix = np.ascontiguousarray(read_rows(self.path / "vectors", self._vectors, len(self), self.rebuild), dtype=np.float16)
            check_values(matrix, self.ids, self.path, self.rebuild)
            matrix.setflags(write=False)
            self._matrix = matrix
        return self._matrix

    def rows(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row index of each id (vectorised binary search); unknown ids raise KeyError naming a few of them."""
        if self._lookup is None:
            self._lookup = SortedIds(self.ids)
        rows, found = self._lookup.find(ids)
        if not found.all():
            unknown = np.asarray(ids, dtype=str).reshape(-1)[~found]
            raise KeyError(
                f"{unknown.size} id(s) not in {self.path}: {', '.join(map(str, unknown[:5]))}"
                f"{' ...' if unknown.size > 5 else ''}"
            )
        return rows

    def get(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """float32 (n, dim) vectors for ``ids`` in the given order."""
        return self.load()[self.rows(ids)].astype(np.float32)


@dataclass(frozen=True)
class ExpertStores:
    """Both halves of one expert's store."""

    items: EmbeddingStore
    queries: EmbeddingStore

    @property
    def dim(self) -> int:
        return self.items.dim


def open_expert(store_root: str | Path, expert: str, card_hash: str | None = None) -> ExpertStores:
    """Open an expert's item and query stores; with ``card_hash``, also refuse a store built by another card."""
    return ExpertStores(
        items=EmbeddingStore.open(part_path(store_root, expert, "items"), card_hash=card_hash),
        queries=EmbeddingStore.open(part_path(store_root, expert, "queries"), card_hash=card_hash),
    )
