"""Helpers shared by the importers: read a CSV/TSV/Parquet file, require mapped columns, carve splits by query,
aggregate repeated judgments."""
from __future__ import annotations

import codecs
import hashlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from hetmoe.errors import HetmoeError

SHOWN_COLUMNS = 12  # column names quoted in an error: a garbage file must not print its bytes into the message
BLOCK = 1 << 20

log = logging.getLogger(__name__)


def shown(text: str, limit: int = 40) -> str:
    """``text`` safe for a one-line error: non-printable characters escaped, long text cut."""
    clean = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."


def _codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError as err:
        raise HetmoeError(f"--encoding {shown(encoding)!r} is unknown; use e.g. utf-8, latin-1, cp1252, utf-16") from err


def _check_utf8(path: Path) -> None:
    """Stream the file through a strict UTF-8 decoder: a bad byte is named with its line, not as a polars traceback."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, lines = 0, 1
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            try:
                decoder.decode(block, final=len(block) < BLOCK)
            except UnicodeDecodeError as err:
                at = offset + max(err.start, 0)
                lines += block[: max(err.start, 0)].count(b"\n")
                byte = block[err.start] if 0 <= err.start < len(block) else 0
                bom = offset == 0 and block[:2] in (b"\xff\xfe", b"\xfe\xff")
                fix = "--encoding utf-16 (it starts with a UTF-16 byte-order mark)" if bom else (
                    "--encoding with the file's encoding, e.g. --encoding latin-1 or cp1252, or check it is text at all")
                raise HetmoeError(f"{path}: not valid UTF-8 (byte 0x{byte:02x} at offset {at}, line {lines}); "
                                  f"pass {fix}") from err
            if b"\0" in block:
                raise HetmoeError(f"{path}: contains NUL bytes, so it is not a text CSV/TSV; pass the real file "
                                  "(or --encoding utf-16 if it is UTF-16 text)")
            offset, lines = offset + len(block), lines + block.count(b"\n")
        decoder.decode(b"", final=True)


def _decoded(path: Path, codec: str) -> bytes:
    """The file re-encoded as UTF-8 (polars reads only UTF-8), read whole: other encodings are for modest logs."""
    try:
        text = path.read_bytes().decode(codec)
    except UnicodeDecodeError as err:
        raise HetmoeError(f"{path}: not valid {codec} (byte at offset {err.start}); pass the file's real "
                          "--encoding") from err
    if "\0" in text:
        raise HetmoeError(f"{path}: contains NUL characters in {codec}, so it is not a text CSV/TSV; check --encoding")
    return text.encode("utf-8")


def scan_table(path: str | Path, sep: str = ",", encoding: str = "utf-8") -> pl.LazyFrame:
    """A lazy frame over a Parquet, CSV or TSV file (by suffix), so large logs are filtered before loading.

    CSV/TSV text is checked to be valid in ``encoding`` first; non-UTF-8 files are transcoded in memory.
    """
    path = Path(path)
    if not path.is_file():
        raise HetmoeError(f"{path}: file not found; pass an existing CSV/TSV/Parquet file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        with path.open("rb") as handle:
            if handle.read(4) != b"PAR1":
                raise HetmoeError(f"{path}: not a Parquet file (no PAR1 header); pass a real Parquet file or a .csv")
        return pl.scan_parquet(path)
    if suffix in (".csv", ".tsv", ".txt"):
        codec = _codec(encoding)
        separator = "\t" if suffix == ".tsv" else sep
        if codec == "utf-8":
            _check_utf8(path)
            return pl.scan_csv(path, separator=separator, infer_schema_length=10_000)
        return pl.read_csv(io.BytesIO(_decoded(path, codec)), separator=separator, infer_schema_length=10_000).lazy()
    raise HetmoeError(f"{path}: unknown file type '{shown(suffix)}'; use .parquet, .csv or .tsv")


def _unreadable(path: str | Path, err: Exception) -> HetmoeError:
    """A parse failure (ragged rows, a wrong separator, a corrupt file) as one clean line, bytes escaped."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return HetmoeError(f"{path}: cannot be read as a table ({shown(first, 160)}); check --sep, --encoding and that "
                       "the file is the CSV/TSV/Parquet it claims to be")


def collect(frame: pl.LazyFrame, path: str | Path) -> pl.DataFrame:
    """``frame.collect()`` with polars' parse errors as :class:`HetmoeError`."""
    try:
        return frame.collect()
    except pl.exceptions.PolarsError as err:
        raise _unreadable(path, err) from err


def require_columns(frame: pl.LazyFrame, path: str | Path, wanted: dict[str, str]) -> None:
    """Fail with one line if a mapped column is absent; ``wanted`` maps column name -> the option that names it."""
    try:
        have = frame.collect_schema().names()
    except pl.exceptions.PolarsError as err:
        raise _unreadable(path, err) from err
    for column, option in wanted.items():
        if column not in have:
            listed = ", ".join(shown(h) for h in have[:SHOWN_COLUMNS])
            listed += f", ... ({len(have)} in all)" if len(have) > SHOWN_COLUMNS else ""
            raise HetmoeError(f"{path}: no column '{shown(column)}' (has: {listed}); name the right one with {option}")


def _rank(query_id: str) -> str:
    return hashlib.md5(query_id.encode()).hexdigest()  # stable across runs and machines, unlike hash()


def carve_splits(query_ids: pl.Series, valid: float, test: float = 0.0) -> pl.DataFrame:
    """Assign each query to train/valid/test by a stable hash rank: the same query always lands in the same split.

    Each non-zero share gets at least one query, so small logs still yield a valid split.
    """
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise HetmoeError(f"split shares valid={valid}, test={test} are out of range; use shares in [0, 1) that sum below 1")
    ids = sorted(set(query_ids.drop_nulls().to_list()), key=_rank)
    n = len(ids)
    n_valid = max(1, round(n * valid)) if valid > 0 and n > 1 else 0
    n_test = max(1, round(n * test)) if test > 0 and n > 2 else 0
    splits = ["valid"] * n_valid + ["test"] * n_test + ["train"] * (n - n_valid - n_test)
    return pl.DataFrame({"query_id": ids, "split": splits}, schema={"query_id": pl.String, "split": pl.String})


def aggregate_repeats(rows: pl.DataFrame, source: str | Path, extra: Sequence[pl.Expr] = ()) -> pl.DataFrame:
    """One judgment per (query_id, item_id): real logs judge some pairs twice; the label becomes their mean grade.

    ``rows`` has query_id, item_id, label and split; ``extra`` adds aggregations (e.g. of a relevant flag) for the
    caller to turn into ``relevant`` with its own rule. A pair judged in two splits would leak a query across splits,
    so it is refused rather than assigned to one of them.
    """
    grouped = rows.group_by("query_id", "item_id", maintain_order=True).agg(
        pl.col("label").mean(), pl.col("split").first(), *extra,
        pl.col("split").n_unique().alias("_splits"), pl.len().alias("_rows"))
    spanning = grouped.filter(pl.col("_splits") > 1)
    if spanning.height:
        sample = ", ".join(f"{q} / {i}" for q, i in spanning.select("query_id", "item_id").head(3).iter_rows())
        raise HetmoeError(f"{source}: {spanning.height} (query, item) pair(s) are judged in more than one split "
                          f"(e.g. {sample}); a query belongs to one split, fix the split column")
    repeated = grouped.filter(pl.col("_rows") > 1)
    if repeated.height:
        log.info("%s: %d row(s) repeat a judged (query, item) pair; %d pair(s) aggregated (label = mean grade)",
                 source, int(repeated["_rows"].sum()) - repeated.height, repeated.height)
    return grouped.drop("_splits", "_rows")
