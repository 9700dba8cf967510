"""Per-query latency of each runtime of a sentence-transformers expert (torch, onnx, onnx-int8), on one thread and on
two, for MiniLM and a tiny Qwen3 decoder (built here as the tests build it): ``python bench/experts.py --runtimes``.

One query per call, as the online Scorer encodes a cache miss. The configurations (runtime x threads) are timed in
interleaved rounds, each round in a fresh random order, so load from other processes falls on all of them alike; the
spread of the per-round medians and the load average before and after are reported with the figures. Writes
bench/results/experts-runtime.json.
"""
from __future__ import annotations

import os
import sys
from collections import Counter
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
THREADS = (1, 2)


def tiny_decoder(root: Path) -> Any:
    """The tests' tiny last-token Qwen3 (random weights, BPE tokenizer trained here) as a torch card."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_experts_llm import _save

    from hetmoe.experts.card import ExpertCard

    return ExpertCard(name="tiny-qwen3", backend="sentence-transformers", model=str(_save(root, "qwen3", "left")),
                      pooling="lasttoken", query_prompt="Query: ", max_length=64, device="cpu", batch_size=4)


def runtime_encoders(card: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """{runtime: encoder} for the torch card and the two cards its export writes, and the export report."""
    from hetmoe.experts.export import export_expert
    from hetmoe.experts.registry import build_encoder

    report = export_expert(card)
    cards = {"torch": card, **{c.runtime: c for c in report.pop("cards").values()}}
    return {runtime: build_encoder(c) for runtime, c in cards.items()}, report


def _stats(ms: list[float], rounds: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "mean": round(float(a.mean()), 3), "n": int(a.size),
            "round_p50_min": round(min(rounds), 3), "round_p50_max": round(max(rounds), 3)}


def interleaved(encoders: dict[tuple[str, str], Any], queries: list[str], rounds: int, per_round: int,
                seed: int = 0) -> dict[tuple[str, str, int], dict[str, float]]:
    """Latency (ms) of one-query encodes for every (model, runtime) x thread count, interleaved over rounds."""
    configs = [(*key, t) for key in encoders for t in THREADS]
    for model, runtime, t in configs:  # warm: thread pools, ONNX Runtime sessions per thread count
        for q in queries[:20]:
            encoders[model, runtime].encode([q], "query", threads=t)
    times: dict[tuple[str, str, int], list[float]] = {c: [] for c in configs}
    medians: dict[tuple[str, str, int], list[float]] = {c: [] for c in configs}
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        batch = [queries[(r * per_round + i) % len(queries)] for i in range(per_round)]
        for i in rng.permutation(len(configs)):
            model, runtime, t = configs[i]
            encoder, spent = encoders[model, runtime], []
            for q in batch:
                began = time.perf_counter()
                encoder.encode([q], "query", threads=t)
                spent.append(1000 * (time.perf_counter() - began))
            times[configs[i]] += spent
            medians[configs[i]].append(float(np.median(spent)))
    return {c: _stats(times[c], medians[c]) for c in configs}


def run(queries: list[str], rounds: int, per_round: int) -> dict[str, Any]:
    """The benchmark: export (or reuse) both models' graphs, time every configuration, summarise."""
    from hetmoe.experts.card import get_card

    load_before = os.getloadavg()
    began = time.perf_counter()
    encoders: dict[tuple[str, str], Any] = {}
    exports = {}
    with tempfile.TemporaryDirectory(prefix="hetmoe-bench-tiny-") as root:
        for label, card in (("minilm", get_card("minilm")), ("tiny-qwen3", tiny_decoder(Path(root)))):
            by_runtime, exports[label] = runtime_encoders(card)
            encoders.update({(label, runtime): e for runtime, e in by_runtime.items()})
        timed = interleaved(encoders, queries, rounds, per_round)
    result: dict[str, Any] = {"name": "experts-runtime", "cpu_count": os.cpu_count(), "queries": len(queries),
                              "rounds": rounds, "per_round": per_round,
                              "loadavg_before": [round(x, 2) for x in load_before], "models": {}, "speedup_p50": {}}
    for (model, runtime, t), stats in timed.items():
        result["models"].setdefault(model, {}).setdefault(runtime, {})[str(t)] = stats
    for model, runtimes in result["models"].items():
        result["speedup_p50"][model] = {
            runtime: {t: round(runtimes["torch"][t]["p50"] / runtimes[runtime][t]["p50"], 2) for t in runtimes[runtime]}
            for runtime in runtimes if runtime != "torch"}
    result["exports"] = {m: {"seconds": r["seconds"], "reused": r["reused"],
                             "bytes": {rt: v["bytes"] for rt, v in r["runtimes"].items()},
                             "min_cosine_to_torch": {rt: v["min_cosine_to_torch"] for rt, v in r["runtimes"].items()}}
                         for m, r in exports.items()}
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - began, 1)
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"{'model':<11} {'runtime':<10} {'thr':>3} {'p50 ms':>8} {'p99 ms':>8} {'round p50 range':>16} {'x torch':>8}"]
    for model, runtimes in result["models"].items():
        for runtime, by_threads in runtimes.items():
            for t, s in by_threads.items():
                speed = result["speedup_p50"][model].get(runtime, {}).get(t, 1.0)
                lines.append(f"{model:<11} {runtime:<10} {t:>3} {s['p50']:>8.3f} {s['p99']:>8.3f} "
                             f"{s['round_p50_min']:>7.2f}-{s['round_p50_max']:<8.2f} {speed:>8.2f}")
    lines.append(f"load average before {result['loadavg_before']}, after {result['loadavg_after']} "
                 f"({result['cpu_count']} cores)")
    return "\n".join(lines)


def serving_encoders(model_dir: Path, runtime: str) -> dict[str, Any] | None:
    """Query encoders of a fitted model's sentence-transformers experts in ``runtime`` (exported on first use), each
    card stating it stands in for the card the model was fitted with, so the Scorer accepts them beside the item
    vectors the torch card made. For timing: whether that holds is what ``hetmoe experts check --data`` measures."""
    if runtime == "torch":
        return None
    import dataclasses

    from hetmoe.experts.card import ExpertCard
    from hetmoe.experts.export import export_expert
    from hetmoe.experts.registry import build_encoder
    from hetmoe.moe.artifacts import read_config

    encoders = {}
    for expert, info in read_config(model_dir)["experts"].items():
        card = ExpertCard.from_dict(info["card"])
        if card.backend != "sentence-transformers":
            continue
        new = next(c for c in export_expert(card)["cards"].values() if c.runtime == runtime)
        encoders[expert] = build_encoder(dataclasses.replace(new, name=expert, threads=1,
                                                             interchangeable_with=card.hash))
    return encoders


def online(model_dir: Path, runtimes: list[str], n_queries: int, rounds: int, items: int = 100) -> dict[str, Any]:
    """Uncached ``score`` of ``items`` items on the model, one Scorer per runtime, interleaved per round (caches
    cleared before every call), with each Scorer's measured per-expert encode costs and the share of queries routed
    to each set of experts (routed experts are encoded concurrently: the slowest one sets a query's latency)."""
    sys.path.insert(0, str(HERE))
    from online import percentiles, timed, workload

    from hetmoe.online.scorer import Scorer

    scorers = {rt: Scorer.load(model_dir, with_indexes=None, encoders=serving_encoders(model_dir, rt)) for rt in runtimes}
    for scorer in scorers.values():
        scorer.warm()
    work = workload(scorers[runtimes[0]], Path(scorers[runtimes[0]].model.config["dataset"]), n_queries, items, 0)
    ms: dict[str, list[float]] = {rt: [] for rt in runtimes}
    medians: dict[str, list[float]] = {rt: [] for rt in runtimes}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for i in rng.permutation(len(runtimes)):
            scorer, spent = scorers[runtimes[i]], []
            for text, market, ids in work:
                scorer.clear_caches()
                spent.append(timed(lambda: scorer.score(text, ids, market)))  # noqa: B023 - called at once
            ms[runtimes[i]] += spent
            medians[runtimes[i]].append(float(np.median(spent)))
    routes = Counter("+".join(sorted(scorers[runtimes[0]].route(t, m).experts)) for t, m, _ in work)
    out = {"model": str(model_dir), "items_per_score": items, "queries": len(work), "rounds": rounds,
           "experts": scorers[runtimes[0]].experts, "routed_share": {r: round(n / len(work), 3) for r, n in routes.items()},
           "score_uncached_ms": {}, "encoding": {}}
    for rt, scorer in scorers.items():
        stats = percentiles(ms[rt])
        stats.update(round_p50_min=round(min(medians[rt]), 3), round_p50_max=round(max(medians[rt]), 3))
        out["score_uncached_ms"][rt] = stats
        out["encoding"][rt] = scorer.encoding_stats()
        scorer.close()
    return out
