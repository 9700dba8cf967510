"""Every bad input is refused cleanly: the CLI with one ``error:`` line, exit 2 and nothing written (corpus in
``bad_inputs.py``); the Python API with a RequestError naming the field; HTTP with a 4xx (503 for search without
indexes) naming it. Grow the corpus with every bad input that is found to slip through."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import bad_inputs
import pytest
from bad_data import good, tables, write
from bad_inputs import CASES, Case, run_cli, snapshot, store_cases
from fastapi.testclient import TestClient

from hetmoe.errors import HetmoeError
from hetmoe.online.checks import RequestError, SearchUnavailable
from hetmoe.online.results import ScoreRequest
from hetmoe.online.scorer import Scorer
from hetmoe.online.service import Limits, create_app

STORE_CASES = [c.name for c in store_cases(Path("unused"))]


@pytest.fixture(autouse=True)
def _close_listeners() -> Iterator[None]:
    yield
    while bad_inputs.BUSY:
        bad_inputs.BUSY.pop().close()


def _refused(case: Case, ws: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ws.mkdir(exist_ok=True)
    args = case.prepare(ws)
    before = snapshot(ws)
    code, lines = run_cli(args, capsys, monkeypatch)
    assert code == 2, (case.name, lines)
    if args[:2] == ["data", "validate"]:  # documented: one line per problem, then the count
        assert all(line.startswith("error: ") for line in lines) and "problem(s) in" in lines[-1], lines
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), (case.name, lines)
    assert case.fragment in lines[0], (case.name, lines[0])
    assert snapshot(ws) == before, f"{case.name}: the refused command wrote or changed files"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_refuses_cleanly(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _refused(case, tmp_path / "ws", capsys, monkeypatch)


@pytest.fixture(scope="module")
def static_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hetmoe.experts.card import get_card
    from hetmoe.store.embed import embed_dataset

    root = tmp_path_factory.mktemp("static_store")
    embed_dataset(good(root), get_card("static"), root / "stores", progress=False)
    return root / "stores"


@pytest.mark.parametrize("name", STORE_CASES)
def test_cli_refuses_a_mismatched_store_cleanly(
    name: str, static_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    case = next(c for c in store_cases(static_store) if c.name == name)
    _refused(case, tmp_path / "ws", capsys, monkeypatch)


def test_a_broken_unrelated_card_does_not_break_embed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cards = tmp_path / "cards.toml"
    cards.write_text(
        f'[defaults]\nexperts = ["static"]\n[experts.static]\n{bad_inputs.GOOD_CARD}'
        '[experts.broken]\nbackend = "model2vec"\nmodel = "m"\ndim = "sixty-four"\n'
    )
    args = [
        "embed",
        "--expert",
        "static",
        "--data",
        str(good(tmp_path)),
        "--store",
        str(tmp_path / "s"),
        "--cards",
        str(cards),
    ]
    code, lines = run_cli(args, capsys, monkeypatch)
    assert code == 0 and not any(line.startswith("error:") for line in lines), lines
    assert (tmp_path / "s" / "static" / "manifest.json").is_file()


def test_run_refuses_a_dataset_without_positives_end_to_end(tmp_path: Path) -> None:
    """Issue 16 case 5 through a real process: validate and run both refuse before any work."""
    data = tables()
    data["judgments"] = data["judgments"].with_columns(relevant=data["judgments"]["relevant"] * 0)
    root = write(tmp_path / "data", data)
    cli = [sys.executable, "-c", "from hetmoe.cli import main; main()"]
    run = subprocess.run(
        [*cli, "run", "--data", str(root), "--out", str(tmp_path / "out"), "-e", "static", "--k", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "no positive (relevant = 1) judgments at all" in run.stderr and not (tmp_path / "out").exists()
    validate = subprocess.run([*cli, "data", "validate", str(root)], capture_output=True, text=True, timeout=120)
    assert validate.returncode == 2 and "no positive (relevant = 1) judgments at all" in validate.stderr


# ----- the Python API and HTTP on a real fitted model -----------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scorer, Scorer]:
    """(Scorer with FAISS indexes, Scorer without) over a tiny demo model: static + wordllama, k = 1."""
    from hetmoe.data.demo import generate_demo
    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig
    from hetmoe.store.embed import embed_dataset
    from hetmoe.store.index import build_index

    root = tmp_path_factory.mktemp("served")
    generate_demo(root / "data", items_per_market=30, queries_per_market=10, seed=1, markets=["TH", "SG"])
    encoders = {e: build_encoder(get_card(e)) for e in ("static", "wordllama")}
    for name, encoder in encoders.items():
        embed_dataset(root / "data", encoder.card, root / "stores", encoder=encoder, progress=False)
        build_index(root / "stores", name)
    fit(
        root / "data",
        root / "stores",
        root / "model",
        list(encoders),
        k=1,
        variants=(),
        router_expert="static",
        train_config=TrainConfig(max_epochs=2),
    )
    return (
        Scorer.load(root / "model", encoders=encoders),
        Scorer.load(root / "model", encoders=encoders, with_indexes=False),
    )


SG = ["sg_i00000", "sg_i00001"]
API_CASES: dict[str, tuple[Callable[[Scorer], object], str]] = {
    "search in a lowercase market": (lambda s: s.search("tas wanita", market="sg"), "market"),
    "search in an unknown market": (lambda s: s.search("tas wanita", market="XX"), "market"),
    "score in an unknown market": (lambda s: s.score("tas wanita", SG, market="XX"), "market"),
    "score a market given as a number": (lambda s: s.score("tas wanita", SG, market=7), "market"),
    "route an empty query": (lambda s: s.route("", market="SG"), "query"),
    "score a whitespace query": (lambda s: s.score(" \t", SG, market="SG"), "query"),
    "score bytes as the query": (lambda s: s.score(b"tas", SG, market="SG"), "query"),
    "score a lone surrogate": (lambda s: s.score("tas \udc80", SG, market="SG"), "query"),
    "score one id given as a string": (lambda s: s.score("tas", SG[0], market="SG"), "item_ids"),
    "score no ids": (lambda s: s.score("tas", [], market="SG"), "item_ids"),
    "score a non-string id": (lambda s: s.score("tas", [SG[0], None], market="SG"), "item_ids[1]"),
    "batch with one bad market": (
        lambda s: s.score_batch([ScoreRequest("tas", SG, "SG"), ScoreRequest("tas", SG, "")]),
        "market",
    ),
    "search k = 0": (lambda s: s.search("tas", market="SG", k=0), "k"),
    "search k as text": (lambda s: s.search("tas", market="SG", k="5"), "k"),
    "search negative candidates": (lambda s: s.search("tas", market="SG", candidates=-3), "candidates"),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_python_api_refuses_naming_the_field(name: str, served: tuple[Scorer, Scorer]) -> None:
    call, field = API_CASES[name]
    with pytest.raises(RequestError) as err:
        call(served[0])
    assert err.value.field == field and str(err.value).startswith(f"{field}: ") and "\n" not in str(err.value)


def test_search_without_indexes_says_how_to_build_them(served: tuple[Scorer, Scorer]) -> None:
    with pytest.raises(SearchUnavailable, match="hetmoe index --expert E"):
        served[1].search("tas wanita", market="SG")
    assert isinstance(SearchUnavailable("x"), HetmoeError)


OK = {"query": "tas wanita", "market": "SG", "item_ids": SG}
HTTP_CASES: dict[str, tuple[str, object, int, str]] = {
    "lowercase market": ("/search", {"query": "tas", "market": "sg"}, 422, "market"),
    "unknown market": ("/score", {**OK, "market": "XX"}, 422, "market"),
    "null market": ("/score", {**OK, "market": None}, 422, "market"),
    "empty query": ("/score", {**OK, "query": ""}, 422, "query"),
    "whitespace query": ("/search", {"query": "   ", "market": "SG"}, 422, "query"),
    "query over 512 characters": ("/score", {**OK, "query": "q" * 513}, 422, "query"),
    "query as a number": ("/score", {**OK, "query": 42}, 422, "query"),
    "over 1000 ids": ("/score", {**OK, "item_ids": [f"i{n}" for n in range(1001)]}, 422, "item_ids"),
    "no ids": ("/score", {**OK, "item_ids": []}, 422, "item_ids"),
    "ids as a string": ("/score", {**OK, "item_ids": "sg_i00000"}, 422, "item_ids"),
    "an id as a number": ("/score", {**OK, "item_ids": ["a", 7]}, 422, "item_ids[1]"),
    "an id over 256 characters": ("/score", {**OK, "item_ids": ["x" * 257]}, 422, "item_ids"),
    "unknown field": ("/score", {**OK, "extra": 1}, 422, "extra"),
    "missing field": ("/score", {"query": "tas", "market": "SG"}, 422, "item_ids"),
    "k zero": ("/search", {"query": "tas", "market": "SG", "k": 0}, 422, "k"),
    "k over 100": ("/search", {"query": "tas", "market": "SG", "k": 101}, 422, "k"),
    "k boolean": ("/search", {"query": "tas", "market": "SG", "k": True}, 422, "k"),
    "candidates over 2000": ("/search", {"query": "tas", "market": "SG", "candidates": 2001}, 422, "candidates"),
    "not JSON": ("/score", b'{"query": ', 400, "body"),
    "not an object": ("/score", b"[1, 2]", 422, "body"),
    "over 1 MiB": ("/score", b'{"query": "' + b"a" * (1 << 20) + b'"}', 413, "body"),
    "lone surrogate": ("/score", b'{"query": "tas \\ud800", "market": "SG", "item_ids": ["a"]}', 422, "query"),
    "lone surrogate id": ("/score", b'{"query": "tas", "market": "SG", "item_ids": ["\\udfff"]}', 422, "item_ids"),
}


@pytest.fixture(scope="module")
def clients(served: tuple[Scorer, Scorer]) -> tuple[TestClient, TestClient]:
    return TestClient(create_app(served[0], limits=Limits())), TestClient(create_app(served[1]))


@pytest.mark.parametrize("name", list(HTTP_CASES))
def test_http_refuses_naming_the_field(name: str, clients: tuple[TestClient, TestClient]) -> None:
    path, body, status, field = HTTP_CASES[name]
    if isinstance(body, bytes):
        reply = clients[0].post(path, content=body, headers={"content-type": "application/json"})
    else:
        reply = clients[0].post(path, json=body)
    assert (reply.status_code, reply.json()["field"]) == (status, field), reply.text
    assert reply.json()["error"].startswith(field) or field == "body"


def test_http_search_without_indexes_is_503_and_score_still_works(clients: tuple[TestClient, TestClient]) -> None:
    lean = clients[1]
    reply = lean.post("/search", json={"query": "tas wanita", "market": "SG"})
    assert reply.status_code == 503 and reply.json()["field"] == "search" and "hetmoe index" in reply.json()["error"]
    assert lean.post("/score", json=OK).status_code == 200
    assert lean.get("/healthz").json()["search"] is False and clients[0].get("/healthz").json()["search"] is True
