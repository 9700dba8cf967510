"""Relevance on real judged data: fit and evaluate every variant over several training seeds, one table per market.

The issue's bar for the routed MoE is read off here: its macro AUC against LightGBM over every expert, the best
single expert and rule routing, each with 95% bootstrap CIs over queries within markets, per seed. Stores may be a
superset of the dataset (a multi-market store serves each market's slice: stores are checked per row against the
dataset's texts). ``--eval-data`` scores the fitted models on another dataset too (a market the model never saw).

Usage: ``python bench/quality.py --data DATA/homedepot --stores S -e minilm,e5,use,static,wordllama
[--lexical lexical] [--seeds 0,1,2] [--eval-data DATA/shopee] --out bench/results/quality-homedepot.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from hetmoe.experts.card import default_router_expert
from hetmoe.moe.train import MARKET_POWER

RESULTS = Path(__file__).resolve().parent / "results"


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the closing note needs from one eval report."""
    variants = report["variants"]
    singles = {n: v["auc_macro"] for n, v in variants.items() if n.startswith("single:")}
    return {
        "split": report["split"], "queries": report["queries"], "pairs": report["pairs"],
        "auc_macro": {n: v["auc_macro"] for n, v in variants.items()},
        "auc_pooled": {n: v["auc"] for n, v in variants.items()},
        "auc_by_market": {n: v["auc_by_market"] for n, v in variants.items()},
        "experts_per_query": {n: v["experts_per_query"] for n, v in variants.items()},
        "best_single": max(singles, key=singles.get) if singles else None,
        "moe_vs_best_single": report.get("moe_vs_best_single"),
        "fusions": report.get("fusions"),  # each fusion against concatenation under the same head
        "stacked_gain": report.get("stacked_gain"),
        "market_guard": report.get("market_guard"),
        "routing_share_by_market": variants["moe"].get("routing_share_by_market"),
    }


def run_seed(args: argparse.Namespace, seed: int, experts: list[str]) -> dict[str, Any]:
    from hetmoe.moe.evaluate import evaluate
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig

    out = args.work / f"seed{seed}"
    began = time.perf_counter()
    overrides = {**({"lexical_store": args.lexical} if args.lexical else {}), "pair_stats": args.pair_stats}
    fit(args.data, args.stores, out / "model", experts, k=args.k, seed=seed, eval_split=args.split,
        router_expert=args.router_expert, spec_overrides=overrides, stack=not args.no_stack,
        train_config=TrainConfig(market_power=args.market_power))
    fit_seconds = time.perf_counter() - began
    selection = json.loads((out / "model" / "fit.json").read_text())["moe_selection"]
    report = evaluate(out / "model", args.data, args.split, out / "report", store_root=args.stores)
    row = {"seed": seed, "fit_seconds": round(fit_seconds, 1), "moe_selection": selection, "report": summarise(report)}
    if args.eval_data:
        held = evaluate(out / "model", args.eval_data, args.split, out / "report-heldout", store_root=args.stores)
        row["heldout"] = summarise(held)
    return row


def table(rows: list[dict[str, Any]], key: str) -> str:
    lines = []
    for row in rows:
        rep = row[key]
        names = list(rep["auc_macro"])
        markets = sorted(next(iter(rep["auc_by_market"].values())))
        lines.append(f"seed {row['seed']} ({key}, {rep['split']}): MoE = {row['moe_selection']['router']} routing, "
                     f"{row['moe_selection']['head']} head")
        lines.append(f"{'variant':<22}{'macro':>8}" + "".join(f"{m:>16}" for m in markets) + f"{'exp/q':>7}")
        for n in names:
            per = "".join(f"{rep['auc_by_market'][n].get(m, float('nan')):>16.4f}" for m in markets)
            lines.append(f"{n:<22}{rep['auc_macro'][n]:>8.4f}{per}{rep['experts_per_query'][n]:>7.2f}")
        d = rep["moe_vs_best_single"]
        if d:
            lines.append(f"MoE - {rep['best_single']}: {d['delta_auc_macro']:+.4f} "
                         f"({d['ci95_macro'][0]:+.4f}..{d['ci95_macro'][1]:+.4f})")
        flags = {m: g["flag"] for m, g in (rep["market_guard"] or {}).items() if g["flag"] != "ok"}
        lines.append(f"guard: {flags or 'every market ok'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--stores", type=Path, required=True)
    parser.add_argument("-e", "--experts", required=True, help="Comma-separated experts.")
    parser.add_argument("--lexical", default=None, help="Name of the lexical store to feed the heads (none if unset).")
    parser.add_argument("--router-expert", default=default_router_expert())
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-stack", action="store_true")
    parser.add_argument("--pair-stats", default="reference", choices=["reference", "listwise"])
    parser.add_argument("--market-power", type=float, default=MARKET_POWER, help="Market weighting (see hetmoe.moe.train).")
    parser.add_argument("--eval-data", type=Path, default=None, help="Also report on this dataset (held-out market).")
    parser.add_argument("--work", type=Path, default=Path("stores/quality"), help="Models and reports go here.")
    parser.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    experts = [e for e in args.experts.split(",") if e]
    rows = [run_seed(args, int(s), experts) for s in args.seeds.split(",") if s]
    out = {"name": "quality", "data": args.data.name, "experts": experts, "lexical": args.lexical, "k": args.k,
           "market_power": args.market_power,
           "eval_data": args.eval_data.name if args.eval_data else None, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    print(table(rows, "report"))
    if args.eval_data:
        print(table(rows, "heldout"))


if __name__ == "__main__":
    main()
