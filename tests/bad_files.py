"""Broken files for ``hetmoe data import-csv``: wrong encodings, garbage bytes, unparsable or unmapped tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bad_data import Case, file_maker


def _latin1(ws: Path) -> Path:
    return file_maker("latin.csv", "query,item_id,label,title\ncafé,i1,1,Café\nthé,i2,0,Thé\n".encode("latin-1"))(ws)


def _csv(name: str, text: str) -> Callable[[Path], Path]:
    return file_maker(name, text.encode())


def _import(source: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    return lambda ws: ["data", "import-csv", str(source(ws)), "--out", str(ws / "out"), *extra]


LOG = "query,item_id,label,title\nred kettle,k1,1,Red kettle\nred kettle,k2,0,Blue kettle\ntee,t1,1,Tee\ntee,t2,0,Cap\n"


IMPORT_CASES: list[Case] = [
    Case(
        "import-csv: latin-1 without --encoding", _import(_latin1), "not valid UTF-8 (byte 0xe9 at offset 29, line 2)"
    ),
    Case(
        "import-csv: random bytes",
        _import(file_maker("garbage.csv", bytes(range(256)) * 8)),
        "not valid UTF-8 (byte 0x80",
    ),
    Case(
        "import-csv: UTF-16 without --encoding",
        _import(file_maker("u16.csv", LOG.encode("utf-16"))),
        "pass --encoding utf-16",
    ),
    Case("import-csv: NUL bytes", _import(file_maker("nul.csv", b"query,item_id\x00,label\n")), "contains NUL bytes"),
    Case(
        "import-csv: unknown encoding",
        _import(_csv("log.csv", LOG), "--encoding", "klingon"),
        "--encoding 'klingon' is unknown",
    ),
    Case(
        "import-csv: wrong encoding for the bytes",
        _import(file_maker("u8.csv", LOG.encode()), "--encoding", "utf-16"),
        "not valid utf-16",
    ),
    Case(
        "import-csv: column missing",
        _import(_csv("log.csv", LOG), "--query-col", "q"),
        "no column 'q' (has: query, item_id, label, title); name the right one with --query-col",
    ),
    Case(
        "import-csv: control characters as header",
        _import(file_maker("ctl.csv", bytes(range(1, 10)) * 20 + b"\n1\n")),
        "no column 'query' (has: \\x01\\x02",
    ),
    Case(
        "import-csv: ragged quoting",
        _import(_csv("ragged.csv", 'query,item_id,label,title\n"a,b\n')),
        "cannot be read as a table",
    ),
    Case(
        "import-csv: labels not numbers",
        _import(_csv("text.csv", LOG.replace(",1,", ",yes,"))),
        "cannot be read as a table",
    ),
    Case(
        "import-csv: fake parquet",
        _import(file_maker("fake.parquet", b"not parquet")),
        "not a Parquet file (no PAR1 header)",
    ),
    Case("import-csv: unknown file type", _import(file_maker("log.xlsx", b"PK")), "unknown file type '.xlsx'"),
    Case("import-csv: no such file", _import(lambda ws: ws / "absent.csv"), "absent.csv: file not found"),
    Case(
        "import-csv: split shares over 1",
        _import(_csv("log.csv", LOG), "--valid-fraction", "0.7", "--test-fraction", "0.5"),
        "split shares valid=0.7, test=0.5 are out of range",
    ),
    Case(
        "import-csv: unknown split values",
        _import(_csv("s.csv", "query,item_id,label,title,part\na,i,1,t,holdout\n"), "--split-col", "part"),
        "unknown split value(s) holdout",
    ),
    Case(
        "import-csv: no usable rows", _import(_csv("e.csv", "query,item_id,label,title\n,i1,1,t\n")), "no usable rows"
    ),
]
