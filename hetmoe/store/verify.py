"""Checks of a store part's bytes and values: every chunk carries a crc32c, none may be missing, no vector is zero.

Why each check:

- crc32c (Zarr v3's ``crc32c`` codec, last in every array's codec chain): a flipped, overwritten or truncated chunk
  fails its checksum on read instead of decoding to other numbers (or to a reshape / Zstd traceback).
- chunk presence: Zarr reads a missing chunk as its fill value, so a deleted vectors chunk would read as zero vectors
  and a deleted ids chunk as empty ids. A complete store has every chunk of its rows on disk (the embed marks a chunk
  complete only after writing it), so :func:`missing_chunks` counts them when the part is opened.
- values: a zero or NaN vector reaches a head as a confident wrong score; :func:`check_values` refuses them when the
  matrix is read, naming the ids.

Stores written before the checksums load as before, with a warning once per part that their bytes are unverified.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.integrity import unverified
from hetmoe.vectors import bad_rows, describe_bad_rows

ZSTD_LEVEL = 0  # zarr's default for string arrays


def vector_codecs() -> list[Any]:
    """Bytes-to-bytes codecs of the fixed-size arrays (vectors, text hashes): no compression, a checksum."""
    from zarr.codecs import Crc32cCodec

    return [Crc32cCodec()]


def id_codecs() -> list[Any]:
    """Codecs of the ids array: zarr's default Zstd, then a checksum over the compressed bytes."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return [ZstdCodec(level=ZSTD_LEVEL), Crc32cCodec()]


def has_checksums(array: Any) -> bool:
    from zarr.codecs import Crc32cCodec

    return any(isinstance(codec, Crc32cCodec) for codec in array.metadata.codecs)


def chunk_file(folder: Path, array: Any, coords: tuple[int, ...]) -> Path:
    """Where the chunk at grid position ``coords`` of the array stored in ``folder`` lives on disk."""
    return folder / array.metadata.chunk_key_encoding.encode_chunk_key(coords)


def _grid(array: Any, rows: int) -> list[tuple[int, ...]]:
    """Grid positions of the chunks holding rows [0, rows) of ``array`` (every column chunk of each)."""
    first = -(-rows // array.chunks[0])
    rest = [range(-(-size // chunk)) for size, chunk in zip(array.shape[1:], array.chunks[1:])]
    return [(row, *other) for row in range(first) for other in np.ndindex(*(len(r) for r in rest))]


def missing_chunks(folder: Path, array: Any, rows: int) -> list[Path]:
    """The chunk files of rows [0, rows) of the array stored in ``folder`` that are not on disk."""
    return [path for coords in _grid(array, rows) if not (path := chunk_file(folder, array, coords)).is_file()]


def check_part(folder: Path, arrays: dict[str, Any], rows: int, rebuild: str) -> None:
    """Refuse a part (``folder``) whose arrays ({name: array}) lack a chunk of their first ``rows`` rows; warn once when
    they carry no checksums."""
    for name, array in arrays.items():
        missing = missing_chunks(folder / name, array, rows)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise HetmoeError(f"{missing[0]}: chunk missing{more} (deleted or never copied); rebuild the store with {rebuild}")
    unchecked = [name for name, array in arrays.items() if not has_checksums(array)]
    if unchecked:
        unverified(folder, f"no chunk checksums on {', '.join(unchecked)}", rebuild)


def read_rows(folder: Path, array: Any, stop: int, rebuild: str) -> np.ndarray:
    """Rows [0, stop) of the array stored in ``folder``; a chunk that fails its checksum or cannot be decoded is one
    line naming its file."""
    try:
        return np.asarray(array[:stop])
    except Exception as err:  # zarr raises ValueError (checksum, reshape) or RuntimeError (Zstd) for a damaged chunk
        text = str(err).splitlines()[0] if str(err) else ""
        reason = "its crc32c checksum does not match" if "checksum" in text else f"{type(err).__name__}: {text[:120]}"
        raise HetmoeError(f"{_damaged_chunk(folder, array, stop)}: damaged chunk ({reason}); rebuild the store with "
                          f"{rebuild}") from err


def _damaged_chunk(folder: Path, array: Any, stop: int) -> Path:
    """The first chunk of rows [0, stop) that fails to read (the array folder when each reads on its own)."""
    size = array.chunks[0]
    for coords in _grid(array, stop):
        try:
            array[coords[0] * size : min((coords[0] + 1) * size, stop)]
        except Exception:  # the very failure read_rows reports
            return chunk_file(folder, array, coords)
    return folder


def check_values(matrix: np.ndarray, ids: np.ndarray, where: Path, rebuild: str) -> None:
    """Refuse all-zero or non-finite vectors: they score as confident nonsense, never as 'unknown'."""
    bad = bad_rows(matrix)
    if bad.size:
        raise HetmoeError(f"{where}: {describe_bad_rows(matrix, bad, ids)} of {matrix.shape[0]}; "
                          f"rebuild the store with {rebuild}")
