"""Approximate item indexes against exact search: recall@10, build time and query latency at catalog scale.

Usage: ``python bench/index.py [--items 200000] [--queries 1000] [--kinds hnsw,ivf-pq] [--source titles|synthetic]
[--dim 384] [--store STORE --expert NAME] [--threads N]``.

Vectors (``--source``): ``titles`` (default) embeds synthetic product titles and short queries (bench/embed.py's
generator) with the real ``static`` expert, so the geometry is a real model's; ``synthetic`` is a harder stress case,
``--dim``-d clustered vectors with a 48-d low-rank variation and isotropic noise; ``--store`` uses the real item and
query vectors of ``STORE/<expert>/``. Each kind is built with exactly the parameters ``hetmoe index`` uses
(:func:`hetmoe.store.index.make_index`, then :func:`~hetmoe.store.index.tune_held_out`: tuned on every other query);
recall@10 is measured against exact inner-product search (flat) on the queries not used to tune.
Latency: single queries (batch of 1: p50 and p99 over 300) and one batch of all queries (ms per query).
Prints one JSON object (also written to bench/results/index.json) and a short table.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from hetmoe.experts.card import default_router_expert
from _tables import print_table, publish  # bench/_tables.py (a script's own folder is on sys.path)

CENTRES, RANK = 2000, 48


def synthetic(n: int, n_queries: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries from one clustered low-rank distribution, unit norm, float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, dim)).astype(np.float32)
    basis = (rng.standard_normal((RANK, dim)) / np.sqrt(RANK)).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        x = centres[rng.integers(0, CENTRES, count)] * 0.6
        x += rng.standard_normal((count, RANK)).astype(np.float32) @ basis
        x += 0.3 * rng.standard_normal((count, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return draw(n), draw(n_queries)


def static_titles(n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """The real router expert (the cheapest card) over synthetic product titles (items) and their first words."""
    from embed import titles  # bench/embed.py: the same catalog generator

    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder
    from hetmoe.store.index import normalize

    encoder = build_encoder(get_card(default_router_expert()))
    queries = [" ".join(t.split()[: 2 + i % 3]) for i, t in enumerate(titles(n_queries, seed=7))]
    return normalize(encoder.encode(titles(n), "document"), encoder.dim), normalize(encoder.encode(queries, "query"), encoder.dim)


def from_store(store: Path, expert: str, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    from hetmoe.store.index import normalize
    from hetmoe.store.zarr_store import open_expert

    stores = open_expert(store, expert)
    queries = stores.queries.load()
    pick = np.random.default_rng(0).choice(len(queries), size=min(n_queries, len(queries)), replace=False)
    return normalize(stores.items.load(), stores.dim), normalize(queries[np.sort(pick)], stores.dim)


def latency(index, queries: np.ndarray, k: int = 10) -> dict[str, float]:
    singles = []
    for q in queries[:300]:
        began = time.perf_counter()
        index.search(q[None, :], k)
        singles.append(1000 * (time.perf_counter() - began))
    began = time.perf_counter()
    index.search(queries, k)
    batched = 1000 * (time.perf_counter() - began) / len(queries)
    return {"single_p50_ms": round(float(np.percentile(singles, 50)), 3),
            "single_p99_ms": round(float(np.percentile(singles, 99)), 3), "batched_ms_per_query": round(batched, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--source", choices=("titles", "synthetic"), default="titles")
    parser.add_argument("--dim", type=int, default=384, help="Dimension of --source synthetic.")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", default="hnsw,ivf-pq")
    parser.add_argument("--store", type=Path, default=None, help="Use a real store's vectors instead of synthetic ones.")
    parser.add_argument("--expert", default=default_router_expert(), help="Expert card (default: the cards' router expert, the cheapest).")
    parser.add_argument("--threads", type=int, default=0, help="FAISS threads (0: its default, all cores).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import faiss

    from hetmoe.store.index import FLAT_MAX, exact_neighbours, make_index, tune_held_out

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    if args.store:
        items, queries = from_store(args.store, args.expert, args.queries)
        source = f"store:{args.store}/{args.expert}"
    elif args.source == "titles":
        items, queries = static_titles(args.items, args.queries)
        source = f"{default_router_expert()} expert over synthetic product titles"
    else:
        items, queries = synthetic(args.items, args.queries, args.dim)
        source = "synthetic clustered low-rank + noise"
    rows, truth = [], exact_neighbours(items, queries)
    for kind in ["flat", *[k for k in args.kinds.split(",") if k and k != "flat"]]:
        began = time.perf_counter()
        index, params = make_index(kind, items)
        build = time.perf_counter() - began
        recall = 1.0 if kind == "flat" else tune_held_out(index, kind, params, queries, truth)[1]
        rows.append({"kind": kind, "params": params, "build_seconds": round(build, 2), "recall@10": round(recall, 4),
                     **latency(index, queries)})
        del index
    out = {"name": "index", "source": source, "items": len(items), "dim": items.shape[1], "queries": len(queries),
           "auto_picks": "flat" if len(items) <= FLAT_MAX else "hnsw", "faiss": faiss.__version__,
           "threads": faiss.omp_get_max_threads(), "kinds": rows}
    publish("index", out)
    print_table(rows, [("kind", "kind", 8), ("build_seconds", "build s", 9), ("recall@10", "recall@10", 11),
                       ("single_p50_ms", "1q p50 ms", 11), ("single_p99_ms", "1q p99 ms", 11),
                       ("batched_ms_per_query", "batch ms/q", 12)])


if __name__ == "__main__":
    main()
