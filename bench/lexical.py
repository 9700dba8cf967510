"""The lexical expert's cost: fit per 100k items offline, features per query online (1 query x 100 items), bulk pairs/s.

Usage: ``python bench/lexical.py [--data DIR] [--items 100000] [--queries 1000] [--candidates 100] [--bulk 200000]``.

Items are a dataset folder's (``--data``, e.g. the real multimarket set), else bench/embed.py's synthetic titles,
repeated with new ids up to ``--items``. Online: ``--queries`` distinct query texts, each scored against
``--candidates`` random items in one ``LexicalModel.features`` call, as the Scorer does; wall p50/p99 and the
thread's CPU time (what the call costs when the machine is not oversubscribed), once with the per-word caches empty
(cold: first-seen words are tokenized and hashed), once more over the same calls (warm), and once with each query's
side prepared before (cached: what the Scorer pays for a query it has seen). Bulk: ``--bulk`` random
(query, item) pairs in one call, as training features are made. Prints one JSON object (also
bench/results/lexical.json) and a short table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def catalog(
    data: Path | None, n_items: int
) -> tuple[list[str], list[str], list[str | None], list[str], list[str], str]:
    """(ids, titles, texts, markets, query texts, source) with the items repeated (new ids) up to ``n_items``."""
    if data is not None:
        from hetmoe.data.validate import check_dataset

        ds = check_dataset(data)
        items = ds.items
        titles = items["title"].to_list()
        texts = items["text"].to_list() if "text" in items.columns else [None] * len(titles)
        markets, queries, source = items["market"].to_list(), ds.queries["text"].to_list(), str(data)
    else:
        from embed import titles as synthetic  # bench/embed.py: the same catalog generator

        titles = synthetic(n_items)
        texts, markets, source = [None] * n_items, ["us"] * n_items, "synthetic titles (bench/embed.py)"
        queries = [" ".join(t.split()[: 2 + i % 3]) for i, t in enumerate(synthetic(5000, seed=7))]
    reps = -(-n_items // len(titles))
    ids = [f"{r}:{i}" for r in range(reps) for i in range(len(titles))][:n_items]
    return ids, (titles * reps)[:n_items], (texts * reps)[:n_items], (markets * reps)[:n_items], queries, source


def online(model, queries: list[str], n_queries: int, candidates: int, seed: int = 0) -> dict[str, float]:
    """Three passes over the same calls: ``cold`` (the per-word caches start empty), ``warm`` (every word seen) and
    ``cached`` (the query side prepared before, as the Scorer keeps it for a query it saw: the pair features only)."""
    rng = np.random.default_rng(seed)
    distinct = list(dict.fromkeys(queries))
    picked = [distinct[i] for i in rng.permutation(len(distinct))[:n_queries]]
    calls = [(text, rng.integers(0, model.item_ids.size, candidates)) for text in picked]
    groups = np.zeros(candidates, dtype=np.int64)
    result: dict[str, float] = {"queries": len(picked), "candidates": candidates}
    prepared = {}
    for name in ("cold", "warm", "cached"):
        if name == "cached":  # built only now: the cold pass must be the first to meet each word
            prepared = {text: model.prepare_queries([text]) for text, _ in calls}
        wall, cpu = [], []
        for text, rows in calls:
            began, began_cpu = time.perf_counter(), time.thread_time()
            if name == "cached":  # the Scorer's repeated query: its lexical side comes from its LRU
                model.prepared_features(prepared[text], rows, groups)
            else:
                model.features([text], rows, groups)
            cpu.append(time.thread_time() - began_cpu)
            wall.append(time.perf_counter() - began)
        for label, values in (("wall", wall), ("cpu", cpu)):
            for q in (50, 99):
                result[f"{name}_{label}_ms_p{q}"] = round(float(np.percentile(values, q)) * 1e3, 3)
    return result


def bulk(model, queries: list[str], n_pairs: int, seed: int = 1) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, model.item_ids.size, n_pairs)
    groups = rng.integers(0, len(queries), n_pairs)
    began = time.perf_counter()
    model.features(queries, rows, groups)
    seconds = time.perf_counter() - began
    return {
        "pairs": n_pairs,
        "queries": len(queries),
        "seconds": round(seconds, 3),
        "pairs_per_s": round(n_pairs / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default: synthetic titles)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--bulk", type=int, default=200_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from hetmoe.lexical import LexicalModel

    ids, titles, texts, markets, queries, source = catalog(args.data, args.items)
    began = time.perf_counter()
    model = LexicalModel.fit(ids, titles, texts, markets)
    fit_s = time.perf_counter() - began
    folder = Path(tempfile.mkdtemp()) / "lexical"
    try:
        began = time.perf_counter()
        model.save(folder)
        save_s = time.perf_counter() - began
        size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        began = time.perf_counter()
        model = LexicalModel.load(folder)
        load_s = time.perf_counter() - began
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
    result = {
        "source": source,
        "items": len(ids),
        "features": len(model.feature_names),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "offline": {
            "fit_s": round(fit_s, 2),
            "fit_s_per_100k": round(fit_s * 100_000 / len(ids), 2),
            "save_s": round(save_s, 2),
            "load_s": round(load_s, 2),
            "store_mb": round(size_mb, 1),
        },
        "online": online(model, queries, args.queries, args.candidates),
        "bulk": bulk(model, queries, args.bulk),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lexical.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    off, on, bk = result["offline"], result["online"], result["bulk"]
    print(f"\n{'what':52s} {'value':>12s}")
    print(f"{'fit per 100k items (s)':52s} {off['fit_s_per_100k']:12.2f}")
    print(f"{'saved model (MB) / load (s)':52s} {off['store_mb']:7.1f} / {off['load_s']:.2f}")
    call = f"online 1 query x {on['candidates']} items"
    for name in ("cold", "warm", "cached"):
        for label in ("wall", "cpu"):
            p50, p99 = on[f"{name}_{label}_ms_p50"], on[f"{name}_{label}_ms_p99"]
            print(f"{call + f' {name} {label} p50 / p99 (ms)':52s} {p50:6.3f} / {p99:.3f}")
    print(f"{'bulk pairs per second':52s} {bk['pairs_per_s']:12,d}")


if __name__ == "__main__":
    main()
