"""Online building blocks that need no model: metrics text, LRU, catalog lookups, the guard middleware, loopback."""
from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from hetmoe.errors import HetmoeError
from hetmoe.online.cache import LRUCache
from hetmoe.online.catalog import ItemCatalog
from hetmoe.commands.online import is_loopback
from hetmoe.online.prometheus import Metrics
from hetmoe.online.middleware import GuardMiddleware


def test_metrics_render_counts_histogram_and_routing() -> None:
    m = Metrics(buckets=(0.01, 0.1))
    m.observe_request("/score", "POST", 200, 0.005)
    m.observe_request("/score", "POST", 200, 0.05)
    m.observe_request("/score", "POST", 422, 0.5)
    m.observe_routing(["e5", "static"])
    m.observe_routing(["e5"])
    text = m.render()
    assert 'hetmoe_requests_total{endpoint="/score",method="POST",status="200"} 2' in text
    assert 'hetmoe_request_errors_total{endpoint="/score",kind="client"} 1' in text
    # cumulative buckets: <=0.01 has 1, <=0.1 has 2, +Inf has 3
    assert 'hetmoe_request_latency_seconds_bucket{endpoint="/score",le="0.01"} 1' in text
    assert 'hetmoe_request_latency_seconds_bucket{endpoint="/score",le="0.1"} 2' in text
    assert 'hetmoe_request_latency_seconds_bucket{endpoint="/score",le="+Inf"} 3' in text
    assert 'hetmoe_request_latency_seconds_count{endpoint="/score"} 3' in text
    assert 'hetmoe_routed_total{expert="e5"} 2' in text and 'hetmoe_routed_total{expert="static"} 1' in text
    for line in text.splitlines():  # every sample line parses as name{labels} value
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+-]+', line), line


def test_metrics_escape_label_values() -> None:
    m = Metrics()
    m.observe_routing(['we"ird\\name'])
    assert 'expert="we\\"ird\\\\name"' in m.render()


def test_lru_evicts_least_recently_used_and_counts_hits() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now most recent
    cache.put("c", 3)  # evicts b
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.get("b") is None
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)
    off: LRUCache[str, int] = LRUCache(0)
    off.put("a", 1)
    assert off.get("a") is None


def test_catalog_lookup_is_order_preserving_and_lists_unknown_ids() -> None:
    ids = np.array(["b", "a", "d", "c"])
    cat = ItemCatalog(ids, {"x": np.arange(4, dtype=np.float16)[:, None]})
    rows, known, unknown = cat.lookup(["c", "zz", "b", "a", "c"])
    assert cat.ids[rows].tolist() == ["c", "b", "a", "c"]
    assert known.tolist() == [True, False, True, True, True]
    assert unknown == ["zz"]
    assert cat.take("x", rows)[:, 0].tolist() == [3.0, 0.0, 1.0, 3.0]
    rows, _, unknown = cat.lookup([])
    assert rows.size == 0 and unknown == []


def test_catalog_aligns_experts_with_different_row_orders_and_refuses_mismatch() -> None:
    a_ids = np.array(["i1", "i2", "i3"])
    b_ids = np.array(["i3", "i1", "i2"])
    cat = ItemCatalog.aligned({"a": (a_ids, np.array([[1.0], [2.0], [3.0]])), "b": (b_ids, np.array([[30.0], [10.0], [20.0]]))})
    rows, _, _ = cat.lookup(["i2", "i3"])
    assert cat.take("a", rows)[:, 0].tolist() == [2.0, 3.0]
    assert cat.take("b", rows)[:, 0].tolist() == [20.0, 30.0]
    with pytest.raises(HetmoeError, match="disagree on the item set"):
        ItemCatalog.aligned({"a": (a_ids, np.zeros((3, 1))), "b": (np.array(["i1", "i2", "x"]), np.zeros((3, 1)))})
    with pytest.raises(HetmoeError, match="duplicate item ids"):
        ItemCatalog(np.array(["i1", "i1"]), {})


def test_catalog_market_masks() -> None:
    cat = ItemCatalog(np.array(["a", "b", "c"]), {})
    assert cat.market_mask("TH") is None  # markets unknown: no filter
    assert cat.set_markets(["c", "a", "unlisted"], ["TH", "ID", "VN"]) == 1  # b has no market
    assert cat.market_mask("ID").tolist() == [True, False, False]
    assert cat.market_mask("TH").tolist() == [False, False, True]
    assert cat.market_mask("nowhere") is None


def _echo_app(api_key: str | None = None, limit: int = 100) -> tuple[TestClient, Metrics]:
    inner = FastAPI()

    @inner.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @inner.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    metrics = Metrics()
    inner.add_middleware(GuardMiddleware, metrics=metrics, known_paths=frozenset({"/echo", "/healthz"}),
                         max_body_bytes=limit, api_key=api_key)
    return TestClient(inner), metrics


def test_guard_caps_declared_and_chunked_bodies() -> None:
    client, metrics = _echo_app(limit=100)
    assert client.post("/echo", content=b"x" * 100).json() == {"bytes": 100}
    big = client.post("/echo", content=b"x" * 101)
    assert big.status_code == 413 and big.json()["field"] == "body"

    def chunks():  # no Content-Length: the cap must hold while streaming
        for _ in range(5):
            yield b"y" * 30

    streamed = client.post("/echo", content=chunks())
    assert streamed.status_code == 413 and "over the limit" in streamed.json()["error"]
    assert client.post("/echo", content=iter([b"z" * 40, b"z" * 40])).json() == {"bytes": 80}
    text = metrics.render()
    assert 'endpoint="/echo",method="POST",status="413"} 2' in text
    client.get("/no/such/path")
    assert 'endpoint="other"' in metrics.render() and "/no/such/path" not in metrics.render()


def test_guard_api_key() -> None:
    client, _ = _echo_app(api_key="s3cret")
    refused = client.post("/echo", content=b"{}")
    assert refused.status_code == 401 and refused.json()["field"] == "x-api-key"
    assert client.post("/echo", content=b"{}", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/echo", content=b"{}", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/healthz").status_code == 200  # probes need no key


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
                                                 ("0.0.0.0", False), ("192.168.1.4", False), ("example.com", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_market_search_is_exact_even_when_filtered_hnsw_comes_back_short() -> None:
    import faiss

    from hetmoe.online.retrieval import Retriever
    from hetmoe.store.index import ItemIndex

    rng = np.random.default_rng(0)
    dim, half = 16, 1000
    centre = np.zeros(dim, np.float32)
    centre[0] = 5.0
    x = np.concatenate([centre + rng.normal(size=(half, dim)), -centre + rng.normal(size=(half, dim))]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.array([f"i{n:05d}" for n in range(2 * half)])
    hnsw = faiss.IndexHNSWFlat(dim, 8, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(x)
    index = ItemIndex(hnsw, ids, {"dim": dim, "kind": "hnsw", "params": {"efSearch": 16}})
    catalog = ItemCatalog(ids, {"e": x})
    catalog.set_markets(ids, ["A"] * half + ["B"] * half)
    retriever = Retriever({"e": index}, {"e": np.arange(2 * half)}, catalog)
    query = centre / 5.0  # deep inside market A's cluster, searching market B
    rows, seen = retriever.candidates({"e": query}, 50, "B")
    expected = np.argsort(-(x[half:] @ query))[:50] + half
    assert sorted(rows.tolist()) == sorted(expected.tolist())
    assert seen.all()
    rows_a, _ = retriever.candidates({"e": query}, 5000, "A")  # more than the market holds: all of it
    assert sorted(rows_a.tolist()) == list(range(half))
