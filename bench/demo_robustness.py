"""Is the MoE's lead on the demo robust? The demo pipeline over data seeds x training seeds, under thread and kernel
profiles that stand in for another CPU.

For each profile and each data seed the demo catalog is generated and embedded once (its own stores), then every
variant is fitted and evaluated with each training seed (the embeddings are shared by the training seeds). Profiles:
``default`` leaves BLAS, OpenMP and the encoders on every core with this CPU's kernels; ``one-thread`` puts all of
them on one thread (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``threads = 1`` in a copy of
the expert cards); ``avx2-one-thread`` also makes OpenBLAS, MKL, oneDNN and torch use the kernels of an AVX2 CPU (an
AMD Zen's for OpenBLAS). On a 2-core AVX-512 Xeon, one thread leaves every encoder's vectors bit-identical; the AVX2
kernels change minilm's and use's in the last bits (e5's engine picks its own), as another CPU does. Each profile
runs in its own process, niced, with its settings in place before any library loads.

Per run: every variant's macro AUC and the MoE's rank; the MoE's margin over the best single expert and over the
weighted and average fusions under the MoE's own head; the fusions compared head for head; the stacked head's own
gain (95% bootstrap CIs over queries within markets, from the report). Across profiles: how many stored vectors
differ from the first profile's, and the largest shift of any run's macro AUC.

Usage: ``python bench/demo_robustness.py --work DIR [--data-seeds 0,1,2] [--train-seeds 0,1,2]
[--profiles default,avx2-one-thread] [--name demo_robustness]`` (DIR keeps the data, stores and models; a rerun
reuses finished runs). Writes bench/results/NAME.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import print_table, publish  # bench/_tables.py (a script's own folder is on sys.path)

log = logging.getLogger("bench")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Another CPU's kernels on this one: what OpenBLAS picks on an AMD Zen, and AVX2 (not AVX-512) for MKL, oneDNN and
# torch's own kernels. Thread counts alone leave every encoder's vectors bit-identical here; these do not.
AVX2 = {"OPENBLAS_CORETYPE": "Zen", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2"}
# profile -> (threads for BLAS, OpenMP and the encoders, 0: the libraries' default; environment besides)
PROFILES: dict[str, tuple[int, dict[str, str]]] = {"default": (0, {}), "one-thread": (1, {}),
                                                   "avx2-one-thread": (1, AVX2)}


def cards_with_threads(source: Path, threads: int, target: Path) -> Path:
    """A copy of the cards file with ``threads = N`` in every expert's table (an existing value replaced), local
    model paths made absolute so that they still resolve from the copy's folder; given as the user's cards, its
    cards replace the packaged ones of the same name."""
    text = re.sub(r"(?m)^threads\s*=.*\n", "", source.read_text(encoding="utf-8"))
    text = re.sub(r'(?m)^(model\s*=\s*")(\.\.?/[^"]*)"',
                  lambda m: f'{m.group(1)}{(source.parent / m.group(2)).resolve()}"', text)
    text = re.sub(r"(?m)^(\[experts\.[^\]]+\]\s*)$", rf"\1\nthreads = {threads}", text)
    target.write_text(text, encoding="utf-8")
    return target


def summarise(report: dict[str, Any], data_seed: int, train_seed: int, seconds: float) -> dict[str, Any]:
    """One run's row: macro AUC of every variant, the MoE's rank and margins, the fusions and the stacked gain."""
    aucs = {name: v["auc_macro"] for name, v in report["variants"].items()}
    ranked = sorted(aucs, key=lambda n: aucs[n], reverse=True)
    keep = ("delta_auc_macro", "ci95_macro")
    single = report["moe_vs_best_single"]
    fused = report.get("moe_vs_fusions", {})
    return {
        "data_seed": data_seed, "train_seed": train_seed, "seconds": round(seconds, 1),
        "auc_macro": aucs, "moe_rank": ranked.index("moe") + 1, "best_other": next(n for n in ranked if n != "moe"),
        "moe_head": fused.get("head"), "moe_router": fused.get("router"),
        "moe_vs_best_single": {"best_single": single["best_single"], **{k: single[k] for k in keep}},
        "moe_vs_fusions": {r: {k: d[k] for k in keep} for r, d in fused.get("vs", {}).items()},
        "fusions": {head: {"concat": row["concat"], "router": row["router"],
                           "vs": {r: {k: d[k] for k in keep} for r, d in row["vs"].items()}}
                    for head, row in report.get("fusions", {}).items()},
        "stacked_gain": {k: report["stacked_gain"][k] for k in keep} if report.get("stacked_gain") else None,
    }


def run_profile(work: Path, profile: str, data_seeds: list[int], train_seeds: list[int], experts: list[str],
                items: int, queries: int) -> None:
    """The child: every run of one profile (its thread settings are already in the environment)."""
    from hetmoe.data.demo import generate_demo
    from hetmoe.data.validate import check_dataset
    from hetmoe.pipeline.config import FitOptions
    from hetmoe.pipeline.run import build_stores, fit_and_evaluate
    from hetmoe.provenance import machine

    root = work / profile
    runs = []
    for d in data_seeds:
        data = check_dataset(generate_demo(work / "data" / f"seed-{d}", items_per_market=items,
                                           queries_per_market=queries, seed=d))
        stores = root / f"stores-{d}"
        started = time.perf_counter()
        timings = build_stores(data, stores, FitOptions(experts=tuple(experts)))
        log.info("%s data seed %d: stores in %.0fs", profile, d, time.perf_counter() - started)
        for t in train_seeds:
            run = root / f"d{d}-t{t}"
            done = run / "run.json"
            if done.is_file():
                runs.append(json.loads(done.read_text()))
                continue
            began = time.perf_counter()
            report = fit_and_evaluate(data, stores, run, FitOptions(experts=tuple(experts), seed=t))
            row = {**summarise(report, d, t, time.perf_counter() - began), "store_seconds": timings}
            done.write_text(json.dumps(row, indent=1))
            runs.append(row)
            log.info("%s d%d t%d: moe %.4f, rank %d", profile, d, t, row["auc_macro"]["moe"], row["moe_rank"])
    (root / "profile.json").write_text(json.dumps({"made": machine(), "runs": runs}, indent=1))


def vector_differences(work: Path, profiles: list[str], data_seeds: list[int], experts: list[str]) -> dict[str, Any]:
    """Per other profile, data seed and expert: the share of stored item and query vectors (float16) that differ
    from the first profile's, and the largest absolute difference."""
    import numpy as np

    from hetmoe.store.zarr_store import EmbeddingStore

    out: dict[str, Any] = {}
    for other in profiles[1:]:
        for d in data_seeds:
            for expert in experts:
                row = {}
                for part in ("items", "queries"):
                    a, b = (EmbeddingStore.open(work / p / f"stores-{d}" / expert / f"{part}.zarr").load()
                            .astype(np.float32) for p in (profiles[0], other))
                    row[part] = {"rows_differing": float((a != b).any(axis=1).mean()),
                                 "max_abs_diff": float(np.abs(a - b).max())}
                out[f"{other}/seed-{d}/{expert}"] = row
    return out


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """How often the MoE is the best variant and its margins' CIs lie above 0, with the margins' range."""
    def above(rows: list[dict[str, Any]]) -> int:
        return sum(r["ci95_macro"][0] > 0 for r in rows)

    single = [r["moe_vs_best_single"] for r in runs]
    fused = {name: [r["moe_vs_fusions"][name] for r in runs if name in r["moe_vs_fusions"]]
             for name in sorted({n for r in runs for n in r["moe_vs_fusions"]})}
    return {
        "runs": len(runs),
        "moe_best": sum(r["moe_rank"] == 1 for r in runs),
        "beaten_by": sorted({r["best_other"] for r in runs if r["moe_rank"] > 1}),
        "moe_vs_best_single": {"ci_above_0": above(single),
                               "delta_range": [min(s["delta_auc_macro"] for s in single),
                                               max(s["delta_auc_macro"] for s in single)]},
        "moe_vs_fusions": {name: {"ci_above_0": above(rows), "delta_range": [min(r["delta_auc_macro"] for r in rows),
                                                                           max(r["delta_auc_macro"] for r in rows)]}
                           for name, rows in fused.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder for the data, stores and models (reused).")
    parser.add_argument("--data-seeds", default="0,1,2")
    parser.add_argument("--train-seeds", default="0,1,2")
    parser.add_argument("--profiles", default="default,avx2-one-thread", help=f"Profiles, of {', '.join(PROFILES)}.")
    parser.add_argument("--experts", default=None, help="Comma-separated experts (default: the cards' demo_experts).")
    parser.add_argument("--items-per-market", type=int, default=None)
    parser.add_argument("--queries-per-market", type=int, default=None)
    parser.add_argument("--name", default="demo_robustness", help="Results file: bench/results/NAME.json.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one profile
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("hetmoe").setLevel(logging.WARNING)
    from hetmoe.data.demo_vocab import ITEMS_PER_MARKET, QUERIES_PER_MARKET
    from hetmoe.experts.card import PACKAGED_CARDS, default_experts

    experts = args.experts.split(",") if args.experts else default_experts(key="demo_experts")
    items, queries = args.items_per_market or ITEMS_PER_MARKET, args.queries_per_market or QUERIES_PER_MARKET
    data_seeds = [int(s) for s in args.data_seeds.split(",") if s]
    train_seeds = [int(s) for s in args.train_seeds.split(",") if s]
    if args.child:
        run_profile(args.work, args.child, data_seeds, train_seeds, experts, items, queries)
        return
    profiles = [p for p in args.profiles.split(",") if p]
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        parser.error(f"unknown profile(s) {', '.join(unknown)}; choose from {', '.join(PROFILES)}")
    args.work.mkdir(parents=True, exist_ok=True)
    load_before, started = os.getloadavg(), time.perf_counter()
    result: dict[str, Any] = {"name": args.name, "experts": experts, "items_per_market": items,
                              "queries_per_market": queries, "data_seeds": data_seeds, "train_seeds": train_seeds,
                              "profiles": {}}
    for profile in profiles:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        threads, settings = PROFILES[profile]
        env.update(settings)
        if threads:
            env.update({name: str(threads) for name in THREAD_ENV})
            (args.work / profile).mkdir(exist_ok=True)
            env["HETMOE_CARDS"] = str(cards_with_threads(PACKAGED_CARDS, threads, args.work / profile / "cards.toml"))
        began = time.perf_counter()
        subprocess.run(["nice", "-n", "10", sys.executable, __file__, "--child", profile, "--work", str(args.work),
                        "--data-seeds", args.data_seeds, "--train-seeds", args.train_seeds, "--experts",
                        ",".join(experts), "--items-per-market", str(items), "--queries-per-market", str(queries)],
                       env=env, check=True)
        record = json.loads((args.work / profile / "profile.json").read_text())
        result["profiles"][profile] = {"threads": threads or "library default", "env": settings,
                                       "seconds": round(time.perf_counter() - began),
                                       "made": record["made"], "summary": aggregate(record["runs"]), "runs": record["runs"]}
    result["vector_differences"] = vector_differences(args.work, profiles, data_seeds, experts)
    first = result["profiles"][profiles[0]]["runs"]
    result["largest_auc_shift_from_" + profiles[0]] = {
        other: max(abs(a["auc_macro"][n] - b["auc_macro"][n]) for a, b in zip(first, result["profiles"][other]["runs"])
                   for n in a["auc_macro"] if n in b["auc_macro"]) for other in profiles[1:]}
    result.update({"seconds": round(time.perf_counter() - started), "load_average_before": load_before,
                   "load_average_after": os.getloadavg()})
    publish(args.name, result)
    rows = [{"profile": p, "run": f"d{r['data_seed']} t{r['train_seed']}", "moe": f"{r['auc_macro']['moe']:.4f}",
             "rank": r["moe_rank"], "best other": f"{r['best_other']} {r['auc_macro'][r['best_other']]:.4f}",
             "vs single": _cell(r["moe_vs_best_single"]),
             **{f"vs {n}": next((_cell(d) for k, d in r["moe_vs_fusions"].items() if k.split(":")[0] == n), "n/a")
                for n in ("weighted", "average")}}
            for p, block in result["profiles"].items() for r in block["runs"]]
    print_table(rows, [("profile", "profile", 17), ("run", "run", 7), ("moe", "moe", 8), ("rank", "rank", 5),
                       ("best other", "best other", 26), ("vs single", "moe − best single", 28),
                       ("vs weighted", "moe − weighted", 28), ("vs average", "moe − average", 28)])
    print(f"wall {result['seconds']} s; load average before {load_before[0]:.1f}, after {result['load_average_after'][0]:.1f}")


def _cell(d: dict[str, Any]) -> str:
    """A delta and its CI, for the table."""
    return f"{d['delta_auc_macro']:+.4f} ({d['ci95_macro'][0]:+.4f}..{d['ci95_macro'][1]:+.4f})"


if __name__ == "__main__":
    main()
