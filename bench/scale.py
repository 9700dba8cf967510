"""Scale-out on this machine: ``embed`` and ``score`` throughput with 1 and 2 Ray workers against the single-process
path, in one run, and Ray's fixed start cost.

Usage: ``python bench/scale.py [--experts static,wordllama] [--items 131072] [--pairs-per-query 100]
[--model DIR] [--block-pairs 10000] [--repeats 1]``.

Method: every configuration (local; Ray with 1 worker; Ray with 2 workers, 1 CPU each) runs the same job; its rate is
units / ``work_seconds``, the wall time from the first unit's start to the last unit's end as the workers report it,
so each run's fixed costs (actor process start and model load, Ray Data's executor start; the local model load) are
left out and reported on their own as ``fixed_seconds`` (the run's wall time minus its work). ``per_cpu_s`` is units
per CPU second of the work (every thread's), the per-core rate a cluster plan is worked from, and ``cores_busy`` = CPU /
work seconds shows how many cores the run really had: below the workers' count, other jobs held the rest. Ray's own start
(``ray.init`` of a local cluster) is timed once. Embed: a synthetic catalog of unique product titles (bench/embed.py's),
chunk size 4096 for every engine; the local engine (encoder built beforehand, so its work time still holds dataset
checks and fingerprints, ~2% by bench/embed.json) uses all cores in one process, each Ray worker one thread. Score:
the demo model (``--model``, else one fitted here on the demo catalog with static and wordllama experts, router
static), each demo query paired with ``--pairs-per-query`` items of its market, once by ``query_id`` (stored query
vectors, as ``eval``) and once by query text (encoded); plus ``score`` against ``eval`` on the demo's valid judgments
(largest absolute difference, pairs/s; and against the model on vectors read from the stores again; both with one
BLAS thread, as the Scorer runs). The machine's load average is recorded: its 2 cores are shared with other jobs, so figures move
between runs. With ``--repeats`` the best run of each configuration is kept.
Prints one JSON object (also written to bench/results/scale.json) and a short table. ``--eval-only --model DIR``
runs only the score-vs-eval check, on that model's dataset (e.g. a multimarket model).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl
from embed import write_catalog

from hetmoe.experts.card import default_experts

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 4096
ENGINES = (("local", 0), ("ray", 1), ("ray", 2))


def _best(runs: list[tuple[float, float, float]], units: int) -> dict:
    """The run with the shortest work time, of (wall, work, CPU) seconds; ``cores_busy`` = CPU / work seconds."""
    wall, work, cpu = min(runs, key=lambda run: run[1])
    return {"units": units, "seconds": round(wall, 3), "work_seconds": round(work, 3), "per_s": round(units / work, 1),
            "fixed_seconds": round(wall - work, 3), "cpu_seconds": round(cpu, 3), "per_cpu_s": round(units / cpu, 1),
            "cores_busy": round(cpu / work, 2)}


def bench_embed(work: Path, experts: list[str], n_items: int, repeats: int) -> list[dict]:
    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder
    from hetmoe.scale.ray_embed import embed_dataset_ray
    from hetmoe.scale.session import PoolSpec
    from hetmoe.store.embed import embed_dataset

    data, store, rows = work / "catalog", work / "stores", []
    items, queries = write_catalog(data, n_items)
    for expert in experts:
        card = get_card(expert)
        began = time.perf_counter()
        encoder = build_encoder(card)
        load = time.perf_counter() - began
        for engine, workers in ENGINES:
            runs = []
            for _ in range(repeats):
                shutil.rmtree(store, ignore_errors=True)
                began, cpu = time.perf_counter(), time.process_time()
                if engine == "local":
                    embed_dataset(data, card, store, chunk_size=CHUNK, encoder=encoder, progress=False)
                    wall = time.perf_counter() - began
                    runs.append((wall + load, wall, time.process_time() - cpu))
                else:
                    summary = embed_dataset_ray(data, card, store, PoolSpec(workers=workers), chunk_size=CHUNK, progress=False)
                    runs.append((time.perf_counter() - began, summary["work_seconds"], summary["cpu_seconds"]))
            rows.append({"expert": expert, "engine": engine, "workers": workers, **_best(runs, len(items) + len(queries))})
            logging.info("embed %s", rows[-1])
    return rows


def demo_model(work: Path) -> Path:
    """The demo catalog with the cards' fast experts (router: the default router expert), embedded and fitted (MoE only)."""
    from hetmoe.data.demo import generate_demo
    from hetmoe.experts.card import default_experts, get_card
    from hetmoe.moe.fit import fit
    from hetmoe.store.embed import embed_dataset

    generate_demo(work / "demo")
    fast = default_experts(key="fast_experts")
    for expert in fast:
        embed_dataset(work / "demo", get_card(expert), work / "demo-stores", progress=False)
    fit(work / "demo", work / "demo-stores", work / "demo-model", fast, variants=())
    return work / "demo-model"


def pairs_files(work: Path, data: Path, per_query: int) -> dict[str, Path]:
    """{mode: pairs file}: every query x ``per_query`` items of its market (seeded), by id and by text."""
    rng = random.Random(0)
    items = pl.read_parquet(data / "items.parquet", columns=["item_id", "market"])
    by_market = {m: g["item_id"].to_list() for (m,), g in items.group_by("market")}
    queries = pl.read_parquet(data / "queries.parquet", columns=["query_id", "text", "market"])
    rows = [(q, t, m, i) for q, t, m in queries.iter_rows() for i in rng.sample(by_market[m], min(per_query, len(by_market[m])))]
    frame = pl.DataFrame(rows, schema=["query_id", "query", "market", "item_id"], orient="row")
    out = {}
    for mode, columns in (("stored", ["query_id", "market", "item_id"]), ("text", ["query", "market", "item_id"])):
        out[mode] = work / f"pairs-{mode}.parquet"
        frame.select(columns).write_parquet(out[mode])
    return out


def bench_score(work: Path, model: Path, per_query: int, block_pairs: int, repeats: int) -> list[dict]:
    from hetmoe.moe.artifacts import read_config
    from hetmoe.scale.score import score_pairs
    from hetmoe.scale.session import PoolSpec

    files, rows = pairs_files(work, Path(read_config(model)["dataset"]), per_query), []
    for mode, path in files.items():
        for engine, workers in ENGINES:
            runs = []
            for _ in range(repeats):
                out = work / "scores" / "out.parquet"
                shutil.rmtree(out.parent, ignore_errors=True)
                began = time.perf_counter()
                summary = score_pairs(model, path, out, engine, PoolSpec(workers=workers or None),
                                      block_pairs=block_pairs, progress=False)
                runs.append((time.perf_counter() - began, summary["work_seconds"], summary["cpu_seconds"]))
            rows.append({"mode": mode, "engine": engine, "workers": workers, **_best(runs, summary["scored"])})
            logging.info("score %s", rows[-1])
    return rows


def score_vs_eval(work: Path, model: Path) -> dict:
    """``score`` on the model dataset's valid judgments against eval's own scores (score_net over the pairs as eval loads them)."""
    from hetmoe.moe.evaluate import model_pairs, score_net
    from hetmoe.moe.fit import load_data
    from hetmoe.moe.infer import MoEModel
    from hetmoe.scale.score import score_pairs

    moe = MoEModel.load(model)
    data = Path(moe.config["dataset"])
    judged = model_pairs(moe, load_data(data), ["valid"])  # the pairs exactly as eval loads them
    reference, _ = score_net(moe, judged)
    eval_scores = pl.DataFrame({"query_id": judged.query_ids[judged.qi].tolist(),
                                "item_id": judged.item_ids[judged.di].tolist(), "eval": reference})
    queries = pl.read_parquet(data / "queries.parquet", columns=["query_id", "market"])
    valid = pl.read_parquet(data / "judgments.parquet").filter(pl.col("split") == "valid").join(queries, on="query_id")
    valid.select("query_id", "market", "item_id").write_parquet(work / "valid.parquet")
    summary = score_pairs(model, work / "valid.parquet", work / "valid-scores.parquet", progress=False)
    both = pl.read_parquet(work / "valid-scores.parquet").join(eval_scores, on=["query_id", "item_id"])
    return {"data": data.name, "experts": moe.experts, "pairs": summary["pairs"], "matched": both.height, "pairs_per_s": summary["pairs_per_s"],
            "seconds": summary["seconds"], "cpu_seconds": summary["cpu_seconds"],
            "pairs_per_cpu_s": round(summary["pairs"] / max(summary["cpu_seconds"], 1e-9)),
            "max_abs_diff": float((both["score"] - both["eval"]).abs().max())}


def ratios(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r[key] for r in rows):
        rate = {r["workers"]: r["per_s"] for r in rows if r[key] == name}
        out[name] = {"ray1_vs_local": round(rate[1] / rate[0], 3), "ray2_vs_local": round(rate[2] / rate[0], 3),
                     "ray2_vs_ray1": round(rate[2] / rate[1], 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", default=",".join(default_experts(key="fast_experts")), help="Experts for the embed figures (comma-separated; default: the cards' fast_experts).")
    parser.add_argument("--items", type=int, default=32 * CHUNK, help="Items of the embed catalog (plus 100 queries).")
    parser.add_argument("--pairs-per-query", type=int, default=500, help="Items of its market paired with each demo query.")
    parser.add_argument("--block-pairs", type=int, default=20_000, help="Pairs per score block (part).")
    parser.add_argument("--model", type=Path, default=None, help="A fitted model (default: fit the demo model here).")
    parser.add_argument("--repeats", type=int, default=1, help="Runs per configuration (the best is kept).")
    parser.add_argument("--eval-only", action="store_true",
                        help="Only score --model's valid judgments against eval (writes results/scale-vs-eval.json).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("hetmoe", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.eval_only:
        if args.model is None:
            parser.error("--eval-only needs --model")
        with tempfile.TemporaryDirectory() as tmp:
            result = {"name": "scale-vs-eval", **score_vs_eval(Path(tmp), args.model)}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "scale-vs-eval.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result))
        return
    import ray

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model or demo_model(work)
        began = time.perf_counter()
        ray.init(include_dashboard=False, logging_level="WARNING")
        ray_start = time.perf_counter() - began
        cores = ray.cluster_resources().get("CPU")
        try:
            embed = bench_embed(work, args.experts.split(","), args.items, args.repeats)
            score = bench_score(work, model, args.pairs_per_query, args.block_pairs, args.repeats)
        finally:
            ray.shutdown()
        versus_eval = score_vs_eval(work, model)
    out = {"name": "scale", "cores": cores, "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in os.getloadavg()], "ray_start_seconds": round(ray_start, 3),
           "chunk_size": CHUNK, "block_pairs": args.block_pairs, "repeats": args.repeats, "embed": embed, "score": score,
           "ratios": {"embed": ratios(embed, "expert"), "score": ratios(score, "mode")}, "score_vs_eval": versus_eval,
           "note": "2 vCPUs shared with other jobs: noisy. per_s = units / work_seconds (first unit start to last end)"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    print(f"ray start {ray_start:.1f} s; load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'job':<16}{'engine':<7}{'workers':>8}{'units':>9}{'per s':>10}{'per cpu s':>11}{'cores':>7}{'work s':>8}{'fixed s':>9}")
    for r in embed + score:
        job = f"embed {r['expert']}" if "expert" in r else f"score {r['mode']}"
        print(f"{job:<16}{r['engine']:<7}{r['workers']:>8}{r['units']:>9}{r['per_s']:>10}{r['per_cpu_s']:>11}{r['cores_busy']:>7}"
              f"{r['work_seconds']:>8}{r['fixed_seconds']:>9}")
    print(f"score vs eval: {versus_eval['matched']} pairs, max |diff| {versus_eval['max_abs_diff']:.2e}, "
          f"{versus_eval['pairs_per_s']} pairs/s")


if __name__ == "__main__":
    main()
