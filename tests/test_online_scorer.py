"""The Scorer and the HTTP service on a real (tiny) fitted model: demo data, real experts, real FAISS, real uvicorn.

The model routes k=1 of two experts (wordllama, e5) with the cheap ``static`` expert feeding the router, so tests can
tell a routed expert from one that must not be encoded.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hetmoe.data.dataset import Dataset, load_dataset
from hetmoe.errors import HetmoeError
from hetmoe.integrity import read_digests, write_digests
from hetmoe.online.results import ScoreRequest
from hetmoe.online.scorer import Scorer
from hetmoe.online.service import Limits, create_app
from hetmoe.pairs.arrays import in_memory_features

EXPERTS = ["wordllama", "e5"]
ROUTER = "static"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from hetmoe.data.demo import generate_demo
    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig
    from hetmoe.store.embed import embed_dataset
    from hetmoe.store.index import build_index

    root = tmp_path_factory.mktemp("online")
    generate_demo(root / "data", items_per_market=30, queries_per_market=10, seed=0, markets=["TH", "ID"])
    encoders = {e: build_encoder(get_card(e)) for e in [ROUTER, *EXPERTS]}
    for name, encoder in encoders.items():
        embed_dataset(root / "data", encoder.card, root / "stores", encoder=encoder, progress=False)
        build_index(root / "stores", name)
    fit(root / "data", root / "stores", root / "model", EXPERTS, k=1, variants=(), router_expert=ROUTER,
        train_config=TrainConfig(max_epochs=2), routers=["hard"])  # these tests serve a learned router
    return root, encoders


@pytest.fixture(scope="session")
def scorer(built: tuple[Path, dict]) -> Scorer:
    root, encoders = built
    return Scorer.load(root / "model", encoders=encoders)


@pytest.fixture(scope="session")
def data(built: tuple[Path, dict]) -> Dataset:
    return load_dataset(built[0] / "data")


@pytest.fixture(scope="session")
def client(scorer: Scorer) -> TestClient:
    return TestClient(create_app(scorer, limits=Limits(max_item_ids=50, max_body_bytes=64 * 1024)))


def _judged(data: Dataset, n: int = 3) -> list[tuple[str, str, list[str]]]:
    """(query text, market, judged item ids) of the first n queries."""
    out = []
    for qid, text, market in data.queries.head(n).select("query_id", "text", "market").iter_rows():
        ids = data.judgments.filter(pl.col("query_id") == qid)["item_id"].to_list()
        out.append((text, market, ids))
    return out


# ----- Scorer ---------------------------------------------------------------------------------------------------

def test_score_equals_stage_two_model_on_the_same_pairs(scorer: Scorer, built: tuple[Path, dict], data: Dataset) -> None:
    from hetmoe.store.zarr_store import open_expert

    _, encoders = built
    text, market, ids = _judged(data, 1)[0]
    result = scorer.score(text, ids, market)
    router_vec = encoders[ROUTER].encode([text], kind="query")
    routing = scorer.model.route(market, router_vec)
    routed = scorer.model.routed_experts(routing)[0]
    qv = {e: encoders[e].encode([text], kind="query") for e in routed}
    catalog = np.array(data.items.filter(pl.col("market") == market)["item_id"].to_list())
    at = np.array([int(np.flatnonzero(catalog == i)[0]) for i in ids])  # each judged item's row in `catalog`
    # the query's best cosines over its market and the items' neighbourhoods, over vectors read here independently
    vectors = {e: open_expert(scorer.model.store_root, e).items.get(catalog) for e in routed}
    feats = in_memory_features(qv, vectors, np.zeros(len(ids), np.int64), at, [market],
                               item_markets=[market] * len(catalog), neighbourhood=scorer.model.spec.item_neighbourhood)
    expected = scorer.model.score(feats, routing)
    assert scorer.model.spec.item_neighbourhood == (scorer.model.stack is not None)
    assert result.item_ids == ids and result.unknown_item_ids == []
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-6)
    assert list(result.routing.experts) == routed


def test_a_pairs_score_does_not_depend_on_the_other_ids_in_the_request(scorer: Scorer, data: Dataset) -> None:
    text, market, ids = _judged(data, 1)[0]
    among = scorer.score(text, ids, market)
    others = data.items.filter(pl.col("market") == market)["item_id"].to_list()[:25]
    crowd = scorer.score(text, [*others, ids[0]], market)
    scorer.clear_caches()
    alone = scorer.score(text, [ids[0]], market)
    assert alone.scores[0] == pytest.approx(among.scores[0], rel=1e-6)
    assert crowd.scores[-1] == pytest.approx(among.scores[0], rel=1e-6)


def test_unknown_ids_are_listed_not_raised(scorer: Scorer, data: Dataset) -> None:
    text, market, ids = _judged(data, 1)[0]
    plain = scorer.score(text, ids, market)
    mixed = scorer.score(text, ["nope-1", *ids, "nope-2"], market)
    assert mixed.unknown_item_ids == ["nope-1", "nope-2"]
    assert mixed.item_ids == ids
    np.testing.assert_allclose(mixed.scores, plain.scores)
    fresh = f"{text} nobody sent this {time.monotonic_ns()}"
    before = dict(scorer.encode_calls)
    none = scorer.score(fresh, ["nope"], market)
    assert none.item_ids == [] and none.scores.shape == (0,) and none.unknown_item_ids == ["nope"]
    assert none.routing.experts  # still routed (the router reads its own expert's vector) ...
    grew = {e for e, n in scorer.encode_calls.items() if n > before.get(e, 0)}
    assert grew <= {ROUTER}  # ... but no head expert encodes a query with nothing to score


def test_route_returns_k_experts_with_gates(scorer: Scorer, data: Dataset) -> None:
    for text, market, _ in _judged(data, 5):
        routing = scorer.route(text, market)
        assert len(routing.experts) == scorer.model.k == 1
        assert set(routing.experts) <= set(EXPERTS)
        assert sum(routing.gates) == pytest.approx(1.0)


def test_cache_hit_avoids_reencoding_and_only_routed_experts_encode(scorer: Scorer, data: Dataset) -> None:
    text, market, ids = _judged(data, 1)[0]
    fresh = f"{text} cordless {time.monotonic_ns()}"  # a query no other test has seen
    before = dict(scorer.encode_calls)
    routing = scorer.score(fresh, ids, market).routing
    after = dict(scorer.encode_calls)
    grew = {e for e in after if after[e] > before[e]}
    assert grew == {ROUTER, *routing.experts}  # the unrouted expert never encoded the query
    scorer.score(fresh, ids[:2], market)
    scorer.route(fresh, market)
    assert scorer.encode_calls == after


def test_score_batch_matches_single_calls(scorer: Scorer, data: Dataset) -> None:
    cases = _judged(data, 4)
    batch = scorer.score_batch([ScoreRequest(t, [*ids, "unknown"], m) for t, m, ids in cases])
    for (text, market, ids), got in zip(cases, batch):
        single = scorer.score(text, ids, market)
        assert got.item_ids == ids and got.unknown_item_ids == ["unknown"]
        np.testing.assert_allclose(got.scores, single.scores, rtol=1e-6)


def test_search_returns_k_items_of_the_market_sorted_by_score(scorer: Scorer, data: Dataset) -> None:
    markets = dict(zip(data.items["item_id"].to_list(), data.items["market"].to_list()))
    text, market, _ = _judged(data, 1)[0]
    result = scorer.search(text, market, k=5, candidates=20)
    assert len(result.item_ids) == 5 and len(set(result.item_ids)) == 5
    assert np.all(np.diff(result.scores) <= 0)
    assert {markets[i] for i in result.item_ids} == {market}
    assert all(seen and set(seen) <= set(result.routing.experts) for seen in result.seen_by)
    assert 5 <= result.candidates <= 20 * len(result.routing.experts)


def test_load_refuses_a_model_whose_store_changed(built: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = built
    model = tmp_path / "model"
    shutil.copytree(root / "model", model)
    config = json.loads((model / "config.json").read_text())
    config["experts"]["e5"]["items_fingerprint"] = "0" * 64
    (model / "config.json").write_text(json.dumps(config))
    write_digests(model, read_digests(model, "") or {})  # a whole model trained on other stores, not a damaged one
    with pytest.raises(HetmoeError, match="different 'e5'"):
        Scorer.load(model)


# ----- HTTP service ---------------------------------------------------------------------------------------------

def test_healthz_score_search_and_metrics(client: TestClient, data: Dataset, scorer: Scorer) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["items"] == scorer.n_items and set(health["markets"]) == {"TH", "ID"}
    text, market, ids = _judged(data, 1)[0]
    reply = client.post("/score", json={"query": text, "market": market, "item_ids": [*ids, "ghost"]})
    assert reply.status_code == 200
    body = reply.json()
    assert body["item_ids"] == ids and body["unknown_item_ids"] == ["ghost"] and len(body["scores"]) == len(ids)
    np.testing.assert_allclose(body["scores"], scorer.score(text, ids, market).scores, rtol=1e-6)
    found = client.post("/search", json={"query": text, "market": market, "k": 3}).json()
    assert len(found["item_ids"]) == 3 and len(found["seen_by"]) == 3 and found["experts"]
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'hetmoe_requests_total{endpoint="/score",method="POST",status="200"}' in metrics.text
    assert 'hetmoe_request_latency_seconds_bucket{endpoint="/search",le="+Inf"}' in metrics.text
    assert f'hetmoe_routed_total{{expert="{body["experts"][0]}"}}' in metrics.text


def _good(data: Dataset) -> dict:
    text, market, ids = _judged(data, 1)[0]
    return {"query": text, "market": market, "item_ids": ids}


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"market": "XX"}, 422, "market"),
    ({"query": "  "}, 422, "query"),
    ({"query": "q" * 600}, 422, "query"),
    ({"item_ids": [f"i{n}" for n in range(51)]}, 422, "item_ids"),
    ({"item_ids": []}, 422, "item_ids"),
    ({"item_ids": "i1"}, 422, "item_ids"),
    ({"item_ids": ["ok", 7]}, 422, "item_ids[1]"),
    ({"query": 42}, 422, "query"),
    ({"market": None}, 422, "market"),
    ({"extra": 1}, 422, "extra"),
])
def test_score_rejects_bad_fields_naming_them(client: TestClient, data: Dataset, change: dict, status: int, field: str) -> None:
    reply = client.post("/score", json={**_good(data), **change})
    assert reply.status_code == status, reply.text
    assert reply.json()["field"] == field and reply.json()["error"].startswith(field)


def test_malformed_bodies_get_4xx(client: TestClient, data: Dataset) -> None:
    cases = {
        "bad json": (b'{"query": ', 400, "body"),
        "not an object": (json.dumps([_good(data)]).encode(), 422, "body"),
        "oversized": (b'{"query": "' + b"a" * (65 * 1024) + b'"}', 413, "body"),
        "deeply nested": (b"[" * 5_000 + b"]" * 5_000, 400, "body"),
        "lone surrogate query": (b'{"query": "drill \\ud800", "market": "TH", "item_ids": ["a"]}', 422, "query"),
        "lone surrogate id": (b'{"query": "drill", "market": "TH", "item_ids": ["\\udfff"]}', 422, "item_ids"),
    }
    for name, (raw, status, field) in cases.items():
        reply = client.post("/score", content=raw, headers={"content-type": "application/json"})
        assert (reply.status_code, reply.json()["field"]) == (status, field), name
    missing = client.post("/score", json={"query": "drill", "market": "TH"})
    assert missing.status_code == 422 and missing.json()["field"] == "item_ids"
    for change, field in [({"k": 0}, "k"), ({"k": 1000}, "k"), ({"candidates": -1}, "candidates"), ({"k": True}, "k")]:
        reply = client.post("/search", json={"query": "drill", "market": "TH", **change})
        assert reply.status_code == 422 and reply.json()["field"] == field, reply.text
    assert client.get("/score").json() == {"error": "GET /score: method not allowed", "field": "path"}
    assert client.get("/nowhere").status_code == 404
    assert client.get("/healthz").status_code == 200  # the worker is still fine


def test_api_key_required_when_configured(scorer: Scorer, data: Dataset) -> None:
    guarded = TestClient(create_app(scorer, api_key="k3y"))
    assert guarded.post("/score", json=_good(data)).status_code == 401
    assert guarded.get("/metrics").status_code == 401
    assert guarded.post("/score", json=_good(data), headers={"x-api-key": "k3y"}).status_code == 200
    assert guarded.get("/healthz").status_code == 200


def test_real_uvicorn_on_loopback(scorer: Scorer, data: Dataset) -> None:
    import uvicorn

    config = uvicorn.Config(create_app(scorer), host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/healthz").json()["status"] == "ok"
            good = http.post("/score", json=_good(data))
            bad = http.post("/score", json={**_good(data), "market": "XX"})
            assert good.status_code == 200 and len(good.json()["scores"]) == len(_good(data)["item_ids"])
            assert bad.status_code == 422 and bad.json()["field"] == "market"
            assert 'status="422"' in http.get("/metrics").text
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    assert not thread.is_alive()


def test_serve_refuses_open_bind_without_key(tmp_path: Path) -> None:
    from hetmoe.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--model", str(tmp_path), "--host", "0.0.0.0"], env={"HETMOE_API_KEY": ""})
    assert result.exit_code != 0 and "without an API key" in str(result.exception)
    result = runner.invoke(app, ["serve", "--model", str(tmp_path / "none")])
    assert "no fitted model here" in str(result.exception)


def test_scorer_runs_numpy_blas_single_threaded(scorer: Scorer) -> None:
    from threadpoolctl import threadpool_info

    blas = [lib for lib in threadpool_info() if lib["internal_api"] == "openblas"]
    assert blas, "threadpoolctl finds no OpenBLAS under numpy: the check below would pass on nothing"
    assert [lib["num_threads"] for lib in blas] == [1] * len(blas)


def test_built_encoders_use_one_thread_and_handed_ones_must_match_the_card(built: tuple[Path, dict]) -> None:
    from hetmoe.experts.card import ExpertCard

    root, encoders = built
    lazy = Scorer.load(root / "model", with_indexes=False)
    encoder = lazy.encoder("wordllama")
    assert encoder.card.threads == 1
    assert encoder.card.hash == ExpertCard.from_dict(lazy.model.cards["wordllama"]).hash
    with pytest.raises(HetmoeError, match="fitted with"):
        Scorer.load(root / "model", with_indexes=False, encoders={"wordllama": encoders["static"]})


# ----- the Python API checks its inputs (the service maps them to 4xx) -------------------------------------------

@pytest.mark.parametrize(("call", "field", "fragment"), [
    (lambda s, ids: s.search("drill", market="th"), "market", "unknown market 'th' (did you mean 'TH'?)"),
    (lambda s, ids: s.search("drill", market="XX"), "market", "known markets: ID, TH"),
    (lambda s, ids: s.score("drill", ids, market="XX"), "market", "unknown market 'XX'"),
    (lambda s, ids: s.route("drill", market=""), "market", "unknown market ''"),
    (lambda s, ids: s.score("", ids, market="TH"), "query", "must not be empty"),
    (lambda s, ids: s.score("   ", ids, market="TH"), "query", "must not be empty"),
    (lambda s, ids: s.route("drill \ud800", market="TH"), "query", "lone surrogate"),
    (lambda s, ids: s.score(None, ids, market="TH"), "query", "must be a string"),
    (lambda s, ids: s.score("drill", ids[0], market="TH"), "item_ids", "must be a list of item id strings"),
    (lambda s, ids: s.score("drill", [], market="TH"), "item_ids", "at least one item id"),
    (lambda s, ids: s.score("drill", [ids[0], 7], market="TH"), "item_ids[1]", "must be a string"),
    (lambda s, ids: s.score_batch([ScoreRequest("drill", ids, "TH"), ScoreRequest("drill", ids, "sg")]), "market", "'sg'"),
    (lambda s, ids: s.search("drill", market="TH", k=0), "k", "must be an integer >= 1"),
    (lambda s, ids: s.search("drill", market="TH", candidates=True), "candidates", "must be an integer >= 1"),
])
def test_scorer_refuses_bad_requests_naming_the_field(scorer: Scorer, data: Dataset, call, field: str,
                                                      fragment: str) -> None:
    from hetmoe.online.checks import RequestError

    ids = data.items.filter(pl.col("market") == "TH")["item_id"].head(3).to_list()
    with pytest.raises(RequestError) as err:
        call(scorer, ids)
    assert err.value.field == field and str(err.value).startswith(f"{field}: ") and fragment in str(err.value)


def test_items_of_another_market_are_scored_and_flagged(scorer: Scorer, client: TestClient, data: Dataset) -> None:
    th = data.items.filter(pl.col("market") == "TH")["item_id"].head(2).to_list()
    id_ = data.items.filter(pl.col("market") == "ID")["item_id"].head(2).to_list()
    result = scorer.score("kemeja batik", [th[0], id_[0], "ghost", th[1], id_[1]], market="TH")
    assert result.item_ids == [th[0], id_[0], th[1], id_[1]] and result.other_market_item_ids == id_
    assert result.unknown_item_ids == ["ghost"]
    body = client.post("/score", json={"query": "kemeja batik", "market": "ID", "item_ids": [*th, *id_]}).json()
    assert body["other_market_item_ids"] == th
    found = scorer.search("kemeja batik", market="TH", k=10)
    assert found.item_ids and set(found.item_ids) <= set(data.items.filter(pl.col("market") == "TH")["item_id"])


def test_serving_without_indexes_scores_and_answers_search_with_503(built: tuple[Path, dict], tmp_path: Path,
                                                                    data: Dataset) -> None:
    root, encoders = built
    stores = tmp_path / "stores"
    shutil.copytree(root / "stores", stores, ignore=shutil.ignore_patterns("items.faiss*"))
    with pytest.raises(HetmoeError, match="hetmoe index"):
        Scorer.load(root / "model", store_root=stores, encoders=encoders)  # indexes required by default
    lean = Scorer.load(root / "model", store_root=stores, encoders=encoders, with_indexes=None)
    assert lean.retriever is None
    app = TestClient(create_app(lean))
    assert app.get("/healthz").json()["search"] is False
    assert app.post("/score", json=_good(data)).status_code == 200
    reply = app.post("/search", json={"query": "drill", "market": "TH"})
    assert reply.status_code == 503 and reply.json()["field"] == "search"
    assert "hetmoe index --expert E" in reply.json()["error"]
    with_all = Scorer.load(root / "model", encoders=encoders, with_indexes=None)
    assert with_all.retriever is not None  # present indexes are loaded
