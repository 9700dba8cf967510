"""Where to fuse the routed experts: the MoE's concatenation of per-expert pair features, their gate-weighted sum, or
a gate-weighted average of the experts' projected embeddings before the pair is compared.

The brief's claim is that concatenation preserves what a weighted average of the experts' differently-shaped,
anisotropic spaces collapses. ``fit`` trains the issue's ``weighted`` baseline, which sums per-expert *features*
(each expert's interaction vector through its own layer); this ablation adds the fusion the claim is about:

- ``concat``: the MoE (hard top-k, per-expert interaction ``[u*v, |u-v|, cosine stats]`` -> own layer -> slots side by
  side -> MLP);
- ``weighted``: the same per-expert features, gate-weighted and summed into one width-h vector -> MLP;
- ``average``: each routed expert's query and item vectors projected into one shared rank-r space and averaged with the
  gates, then one interaction (``[u*v, |u-v|]`` and the gate-weighted average of the experts' pair statistics)
  -> one layer -> MLP (``fusion="average"``, also an ``eval`` variant).

All three share the router, the training loop, the seed and the concat-all teacher (as in ``fit``), and are scored
on the split ``fit`` would report on. Differences carry 95% bootstrap CIs over queries within markets.

Usage: ``python bench/fusion.py [--data stores/demo/data --stores stores/demo/stores] [--seeds 0,1,2]``.
Prints one JSON object (also written to bench/results/fusion.json) and a short table.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any


from hetmoe.experts.card import default_router_expert
from hetmoe.metrics import auc, auc_by_market, bootstrap_delta, macro
from hetmoe.moe.features import load_pairs
from hetmoe.moe.fit import load_data, resolve_experts, training_pairs
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.train import TrainConfig, net_logits, train_net
from hetmoe.moe.variants import variant_spec

RESULTS = Path(__file__).resolve().parent / "results"


FUSIONS = ("concat", "weighted", "average")  # the three ModelSpec fusions; ``fit`` trains each as a variant


def run_seed(data: Path, stores: Path, experts: list[str], k: int, seed: int) -> dict[str, Any]:
    """Train the teacher and the three fusions with one seed; their held-out scores and metrics."""
    dataset = load_data(data)
    router = default_router_expert()
    train, stop, plan = training_pairs(dataset, stores.resolve(), experts, router, None, seed)
    test = load_pairs(dataset, stores.resolve(), experts, [plan["eval_split"]], router, markets=train.markets)
    cfg = replace(TrainConfig(), seed=seed)
    base = ModelSpec(experts=experts, dims=train.dims, markets=list(train.markets), k=k, router_expert=router,
                     router_dim=int(train.rvec.shape[1]))
    teacher_spec = variant_spec("concat-all", base, {})
    teacher = train_net(teacher_spec, train, stop, replace(cfg, distill_weight=0.0))
    teacher_logits = net_logits(teacher_spec, teacher.weights, train)
    scores, rows = {}, {}
    for name in FUSIONS:
        spec = replace(base, fusion=name)
        began = time.perf_counter()
        result = train_net(spec, train, stop, cfg, teacher=teacher_logits)
        scores[name] = net_logits(spec, result.weights, test)
        by_market = auc_by_market(scores[name], test.y, test.market_names)
        rows[name] = {"auc_macro": macro(by_market), "auc": auc(scores[name], test.y), "auc_by_market": by_market,
                      "train_seconds": round(time.perf_counter() - began, 1),
                      "best_epoch": result.metrics["best_epoch"]}
    deltas = {f"concat_vs_{other}": bootstrap_delta(scores["concat"], scores[other], test.y, test.qi, test.market_names,
                                                    seed=seed) for other in ("weighted", "average")}
    return {"seed": seed, "split": plan["eval_split"], "pairs": len(test), "variants": rows, "deltas": deltas}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("stores/demo/data"))
    parser.add_argument("--stores", type=Path, default=Path("stores/demo/stores"))
    parser.add_argument("--experts", default=None,
                        help="Comma-separated experts (default: the cards file's default set).")
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2", help="Training seeds (the data stays the same).")
    parser.add_argument("--out", type=Path, default=RESULTS / "fusion.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    experts = resolve_experts(args.experts.split(",") if args.experts else None)
    runs = [run_seed(args.data, args.stores, experts, args.k, int(s)) for s in args.seeds.split(",") if s]
    out = {"name": "fusion", "data": args.data.name, "experts": experts, "k": args.k, "runs": runs}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    print(f"{'seed':>4} {'concat':>8} {'weighted':>9} {'average':>8}   "
          "concat-weighted (95% CI)   concat-average (95% CI)")
    for r in runs:
        v, d = r["variants"], r["deltas"]
        cells = [f"{d[key]['delta_auc_macro']:+.4f} ({d[key]['ci95_macro'][0]:+.4f}..{d[key]['ci95_macro'][1]:+.4f})"
                 for key in ("concat_vs_weighted", "concat_vs_average")]
        print(f"{r['seed']:>4} {v['concat']['auc_macro']:>8.4f} {v['weighted']['auc_macro']:>9.4f} "
              f"{v['average']['auc_macro']:>8.4f}   {cells[0]:<26} {cells[1]}")


if __name__ == "__main__":
    main()
