"""Bounded load test of the HTTP service on loopback: QPS and latency of POST /score under concurrency.

Starts ``hetmoe serve`` on 127.0.0.1 (a free port) unless ``--url`` names a running loopback server, sends a fixed
number of requests with a fixed concurrency, and mixes in malformed requests (unknown market, empty query, wrong
types, too many ids, bad JSON, oversized body, unknown field). Passes when every good request got 200 and every bad
one a 4xx. Traffic goes only to 127.0.0.1/localhost and stops after ``--requests`` or ``--max-seconds``.

Usage: ``python bench/load.py [--model stores/demo/model] [--requests 2000] [--concurrency 16]``
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

HERE = Path(__file__).resolve().parent
log = logging.getLogger("bench.load")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: Path, port: int, workers: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hetmoe.cli", "serve", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
           "--http-workers", str(workers), "--warm"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(cmd, env=env)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads) from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_healthy(url: str, server: subprocess.Popen | None, seconds: float) -> dict:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise SystemExit(f"server exited with code {server.returncode} before becoming healthy")
        try:
            reply = httpx.get(f"{url}/healthz", timeout=2.0)
            if reply.status_code == 200:
                return reply.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url}/healthz not up after {seconds:.0f} s")


def workload(data_dir: Path, n_items: int, seed: int) -> list[dict]:
    """Good /score bodies: each query with its judged items, topped up with random catalog items to ``n_items``."""
    from hetmoe.data.dataset import load_dataset

    ds = load_dataset(data_dir)
    all_ids = ds.items["item_id"].to_list()
    judged = ds.judgments.group_by("query_id").agg("item_id")
    lists = dict(zip(judged["query_id"].to_list(), judged["item_id"].to_list()))
    rng = random.Random(seed)
    bodies = []
    for qid, text, market in ds.queries.select("query_id", "text", "market").iter_rows():
        ids = list(lists.get(qid, []))[:n_items]
        ids += rng.sample(all_ids, min(len(all_ids), n_items - len(ids)))
        bodies.append({"query": text, "market": market, "item_ids": ids})
    rng.shuffle(bodies)
    return bodies


def bad_requests(good: dict, max_ids: int) -> list[tuple[str, bytes]]:
    """(name, raw body) pairs that must all be refused with a 4xx."""
    def dump(body: object) -> bytes:
        return json.dumps(body).encode()

    return [
        ("unknown_market", dump({**good, "market": "ZZ-nowhere"})),
        ("empty_query", dump({**good, "query": "   "})),
        ("wrong_type_ids", dump({**good, "item_ids": "not-a-list"})),
        ("wrong_type_query", dump({**good, "query": 42})),
        ("too_many_ids", dump({**good, "item_ids": [f"x{i}" for i in range(max_ids + 1)]})),
        ("missing_field", dump({"query": good["query"], "market": good["market"]})),
        ("unknown_field", dump({**good, "limit": 5})),
        ("bad_json", b'{"query": "drill", "market": '),
        ("oversized", b'{"query": "' + b"a" * (1 << 20) + b'"}'),
        ("not_an_object", dump([good])),
    ]


async def run_load(url: str, good: list[dict], n_requests: int, concurrency: int, bad_fraction: float,
                   max_ids: int, max_seconds: float, api_key: str | None, seed: int) -> dict:
    import httpx

    rng = random.Random(seed)
    plan: list[tuple[str, bytes]] = []
    for i in range(n_requests):
        body = good[i % len(good)]
        if rng.random() < bad_fraction:
            plan.append(rng.choice(bad_requests(body, max_ids)))
        else:
            plan.append(("good", json.dumps(body).encode()))
    latencies: list[float] = []
    outcomes: dict[str, dict[str, int]] = {}
    failures: list[str] = []
    headers = {"content-type": "application/json", **({"x-api-key": api_key} if api_key else {})}
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    deadline = time.monotonic() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty() and time.monotonic() < deadline:
            name, raw = queue.get_nowait()
            start = time.perf_counter()
            try:
                reply = await client.post(f"{url}/score", content=raw, headers=headers)
                status = reply.status_code
            except httpx.HTTPError as err:
                status = 0
                failures.append(f"{name}: {type(err).__name__}")
            elapsed = time.perf_counter() - start
            row = outcomes.setdefault(name, {})
            row[str(status)] = row.get(str(status), 0) + 1
            ok = status == 200 if name == "good" else 400 <= status < 500
            if name == "good" and ok:
                latencies.append(elapsed)
            elif not ok and len(failures) < 20:
                failures.append(f"{name}: HTTP {status}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    sent = sum(sum(v.values()) for v in outcomes.values())
    good_sent = sum(outcomes.get("good", {}).values())
    bad_sent = sent - good_sent
    good_ok = outcomes.get("good", {}).get("200", 0)
    bad_4xx = sum(n for name, row in outcomes.items() if name != "good" for s, n in row.items() if s.startswith("4"))
    lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "requests_sent": sent, "good_sent": good_sent, "good_ok": good_ok, "bad_sent": bad_sent, "bad_4xx": bad_4xx,
        "errors": (good_sent - good_ok) + (bad_sent - bad_4xx), "wall_s": round(wall, 3),
        "qps_all": round(sent / wall, 1), "qps_good": round(good_ok / wall, 1),
        "score_latency_ms": {"p50": round(float(np.percentile(lat, 50)), 2), "p90": round(float(np.percentile(lat, 90)), 2),
                             "p99": round(float(np.percentile(lat, 99)), 2), "max": round(float(lat.max()), 2)},
        "outcomes": outcomes, "failures": failures[:20],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("stores/demo/model"))
    parser.add_argument("--data", type=Path, default=None, help="Dataset for the queries and item ids (default: MODEL/../data).")
    parser.add_argument("--url", default=None, help="A running server on loopback (default: start one).")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--items", type=int, default=100, help="Item ids per /score request.")
    parser.add_argument("--bad-fraction", type=float, default=0.1)
    parser.add_argument("--max-ids", type=int, default=1000, help="The server's item-id limit (for the too-many case).")
    parser.add_argument("--warmup", type=int, default=50,
                        help="Unmeasured good requests first; more than the distinct queries makes the run all-cached.")
    parser.add_argument("--http-workers", dest="workers", type=int, default=1, help="hetmoe serve --http-workers.")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "load.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would load the client
    api_key = os.environ.get("HETMOE_API_KEY")
    server = None
    url = args.url
    if url:
        host = urlparse(url).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"--url must be on loopback (127.0.0.1/localhost), got {host!r}")
        url = url.rstrip("/")
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(args.model, port, args.workers)
    try:
        health = wait_healthy(url, server, 180.0)
        good = workload(args.data or args.model.parent / "data", args.items, args.seed)
        log.info("server up (%s items, experts %s); warm-up %d requests", health.get("items"), health.get("experts"), args.warmup)
        asyncio.run(run_load(url, good, args.warmup, args.concurrency, 0.0, args.max_ids, args.max_seconds, api_key, args.seed))
        # The server's own CPU per request does not depend on the load generator sharing the cores (workers=1 only).
        cpu_before = cpu_seconds(server.pid) if server is not None and args.workers == 1 else None
        result = asyncio.run(run_load(url, good, args.requests, args.concurrency, args.bad_fraction, args.max_ids,
                                      args.max_seconds, api_key, args.seed + 1))
        if cpu_before is not None:
            cpu_after = cpu_seconds(server.pid)
            if cpu_after is not None:
                result["server_cpu_ms_per_request"] = round(1000 * (cpu_after - cpu_before) / max(1, result["requests_sent"]), 3)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    result = {"benchmark": "load", "url": url, "concurrency": args.concurrency, "items_per_request": args.items,
              "workers": args.workers, "distinct_queries": len(good), "cpu_count": os.cpu_count(), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    lat = result["score_latency_ms"]
    print(f"\n{'requests':>9} {'errors':>7} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8}  bad->4xx")
    print(f"{result['requests_sent']:>9} {result['errors']:>7} {result['qps_all']:>8} {lat['p50']:>8} {lat['p99']:>8}  "
          f"{result['bad_4xx']}/{result['bad_sent']}")
    return 0 if result["errors"] == 0 and result["good_ok"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
