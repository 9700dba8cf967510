"""The corpus of broken inputs for the CLI: datasets, expert cards, files to import and command lines.

Each case prepares its inputs inside a fresh workspace folder and returns the command line; the test runs it through
the real ``hetmoe`` entry point and expects exit 2, one ``error:`` line holding ``fragment``, and no file created or
changed in the workspace. Add a case here for every bad input found to slip through.
"""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from bad_data import BAD_CARDS, BROKEN_DATASETS, GOOD_CARD, Case, broken_dataset, file_maker, good, tables, where, write
from bad_files import IMPORT_CASES

from hetmoe.cli import main


def snapshot(ws: Path) -> dict[str, tuple[int, int]]:
    """Every path with (size, mtime) for files; folders only by name (a transient lock file touches their mtime)."""
    return {
        str(p.relative_to(ws)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (0, 0)
        for p in ws.rglob("*")
    }


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
    """The real entry point (``hetmoe = hetmoe.cli:main``), in process: exit code and the non-empty stderr lines."""
    monkeypatch.setattr(sys, "argv", ["hetmoe", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0), [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _embed(data: Callable[[Path], Path], *extra: str, expert: str = "static") -> Callable[[Path], list[str]]:
    return lambda ws: ["embed", "-e", expert, "--data", str(data(ws)), "--store", str(ws / "stores"), *extra]


def _run(data: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    return lambda ws: ["run", "--data", str(data(ws)), "--out", str(ws / "out"), *extra]


def _fit_head(k: str) -> Callable[[Path], list[str]]:
    return lambda ws: ["fit-head", "--data", str(good(ws)), "--store", str(ws / "stores"), "--out", str(ws / "out"),
                       "-e", "static", "--k", k]


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


def _cards(body: str) -> Callable[[Path], Path]:
    return file_maker(
        "cards.toml", f'[defaults]\nexperts = ["bad"]\nrouter_expert = "static"\n[experts.static]\n{GOOD_CARD}[experts.bad]\n{body}\n'.encode()
    )


def _card_case(body: str) -> Callable[[Path], list[str]]:
    return lambda ws: [*_embed(good, expert="bad")(ws), "--cards", str(_cards(body)(ws))]


def _run_with_card(body: str) -> Callable[[Path], list[str]]:
    return lambda ws: [*_run(good, "-e", "static", "-e", "bad", "--k", "1")(ws), "--cards", str(_cards(body)(ws))]


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
    *(
        Case(f"dataset: {name}", _embed(broken_dataset(change)), fragment)
        for name, (change, fragment) in BROKEN_DATASETS.items()
    ),
    Case("dataset: no such folder", lambda ws: _embed(lambda w: w / "nowhere")(ws), "no such dataset folder"),
    Case("dataset: queries.parquet missing", _embed(_missing_file("queries")), "queries.parquet: file not found"),
    Case("dataset: corrupt parquet", _embed(_corrupt), "queries.parquet: not a readable Parquet file"),
    Case(
        "validate: no positives",
        lambda ws: ["data", "validate", str(broken_dataset(BROKEN_DATASETS["no positives at all"][0])(ws))],
        "no positive (relevant = 1) judgments at all",
    ),
    Case(
        "run: no positives",
        _run(broken_dataset(BROKEN_DATASETS["no positives at all"][0]), "-e", "static", "--k", "1"),
        "no positive (relevant = 1) judgments at all",
    ),
    Case(
        "run: a market without positives",
        _run(broken_dataset(BROKEN_DATASETS["market without positives"][0]), "-e", "static", "--k", "1"),
        "without any positive (relevant = 1) judgment (e.g. TH)",
    ),
    *(Case(f"card: {name}", _card_case(body), fragment) for name, (body, fragment) in BAD_CARDS.items()),
    Case(
        "card: not a table",
        lambda ws: [*_embed(good, expert="bad")(ws), "--cards", str(file_maker("c.toml", b"[experts]\nbad = 3\n")(ws))],
        "expert card 'bad' must be a table",
    ),
    Case(
        "cards: invalid TOML",
        lambda ws: [*_embed(good)(ws), "--cards", str(file_maker("c.toml", b"[experts.static\n")(ws))],
        "is not valid TOML",
    ),
    Case(
        "cards: file missing",
        lambda ws: [*_embed(good)(ws), "--cards", str(ws / "none.toml")],
        "none.toml does not exist",
    ),
    Case(
        "cards: no experts",
        lambda ws: [*_embed(good)(ws), "--cards", str(file_maker("c.toml", b"[defaults]\n")(ws))],
        "has no [experts.<name>] tables",
    ),
    Case("embed: unknown expert", _embed(good, expert="nope"), "unknown expert 'nope'; known experts in"),
    Case("embed: bad shard", _embed(good, "--shard", "3/2"), "--shard 3/2: need 0 <= i < N"),
    Case("embed: shard not i/N", _embed(good, "--shard", "half"), "--shard 'half': expected i/N"),
    Case("embed: chunk size 0", _embed(good, "--chunk-size", "0"), "--chunk-size 0: must be a positive number"),
    Case(
        "run: unknown expert after a good one",
        _run(good, "-e", "static", "-e", "nope", "--k", "1"),
        "-e nope: unknown expert 'nope'",
    ),
    Case(
        "run: k over the experts",
        _run(good, "-e", "static", "-e", "wordllama", "--k", "3"),
        "--k 3: must be between 1 and the number of experts (2",
    ),
    Case("run: k zero", _run(good, "-e", "static", "--k", "0"), "--k 0: must be between 1"),
    Case(
        "run: unknown router expert",
        _run(good, "-e", "static", "--k", "1", "--router-expert", "ghost"),
        "--router-expert ghost: unknown expert 'ghost'",
    ),
    Case(
        "run: broken second card",
        _run_with_card('backend = "model2vec"\nmodel = "pkg:static_model/model"\nbatch_size = "many"'),
        "expert card 'bad': batch_size must be an integer",
    ),
    Case(
        "run: second card's model missing",
        _run_with_card('backend = "model2vec"\nmodel = "/nonexistent/m"'),
        "model path /nonexistent/m does not exist",
    ),
    Case(
        "index: unknown kind",
        lambda ws: ["index", "-e", "static", "--store", str(ws / "stores"), "--kind", "annoy"],
        "--kind 'annoy' is unknown",
    ),
    Case(
        "index: target recall over 1",
        lambda ws: ["index", "-e", "static", "--store", str(ws / "stores"), "--target-recall", "2"],
        "--target-recall 2.0: must be in (0, 1]",
    ),
    Case(
        "index: no store",
        lambda ws: ["index", "-e", "static", "--store", str(ws / "stores")],
        "stores/static/items.zarr",
    ),
    *IMPORT_CASES,
    Case(
        "sample: no such folder",
        lambda ws: ["data", "sample", str(ws / "nowhere"), "--out", str(ws / "out")],
        "no such dataset folder",
    ),
    Case(
        "sample: zero queries",
        lambda ws: ["data", "sample", str(good(ws)), "--out", str(ws / "out"), "--queries-per-market", "0"],
        "--queries-per-market must be >= 1",
    ),
    Case(
        "fit-head: k over the experts",
        _fit_head("2"),
        "k=2 must be between 1 and the number of experts (1)",
    ),
    Case(
        "fit-head: store missing",
        _fit_head("1"),
        "stores/static",
    ),
    Case(
        "eval: no model",
        lambda ws: ["eval", "--model", str(ws / "none"), "--data", str(good(ws))],
        "no config.json; train a model with 'hetmoe fit-head",
    ),
    Case(
        "eval: garbage config.json",
        lambda ws: ["eval", "--model", str(_garbage_config(ws)), "--data", str(good(ws))],
        "config.json: not valid JSON",
    ),
    Case(
        "serve: open bind without key",
        lambda ws: ["serve", "--model", str(_dummy_model(ws)), "--host", "0.0.0.0"],
        "refusing to bind 0.0.0.0 without an API key",
    ),
    Case(
        "serve: no model",
        lambda ws: ["serve", "--model", str(ws / "none")],
        "fit one with 'hetmoe fit-head' or 'hetmoe demo'",
    ),
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
        data["items"] = data["items"].with_columns(title=where("item_id", "i1", "black tee xl", "title"))
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
