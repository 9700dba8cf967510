"""Where to fuse the routed experts: the MoE's concatenation of per-expert pair features, their gate-weighted sum, or
a gate-weighted average of the experts' projected embeddings before the pair is compared.

The brief's claim is that concatenation preserves what a weighted average of the experts' differently-shaped,
anisotropic spaces collapses. ``fit`` trains the issue's ``weighted`` baseline, which sums per-expert *features*
(each expert's interaction vector through its own layer); this ablation adds the fusion the claim is about:

- ``concat``: the MoE (hard top-k, per-expert interaction ``[u*v, |u-v|, cosine stats]`` -> own layer -> slots side by
  side -> MLP);
- ``weighted``: the same per-expert features, gate-weighted and summed into one width-h vector -> MLP;
- ``average``: each routed expert's query and item vectors projected into one shared rank-r space and averaged with the
  gates, then one interaction (``[u*v, |u-v|]`` and the fused pair's cosine, its z-score and rank within the query)
  -> one layer -> MLP.

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

import numpy as np
import torch

from hetmoe.moe.features import load_pairs
from hetmoe.moe.fit import load_data, resolve_experts, training_pairs, variant_spec
from hetmoe.moe.metrics import auc, auc_by_market, bootstrap_delta, macro
from hetmoe.moe.net import MoENet
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.train import TrainConfig, net_logits, train_net

RESULTS = Path(__file__).resolve().parent / "results"


def group_stats_torch(cos: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(B, 3): cosine, its z-score and average-rank fraction within each group, as numpy's
    :func:`hetmoe.moe.pairstats.group_stats` computes them."""
    n_groups = int(groups.max()) + 1
    size = torch.bincount(groups, minlength=n_groups).to(cos.dtype)
    mean = torch.zeros(n_groups, dtype=cos.dtype).index_add_(0, groups, cos) / size
    var = torch.zeros(n_groups, dtype=cos.dtype).index_add_(0, groups, cos * cos) / size - mean**2
    std = var.clamp_min(1e-12).sqrt()[groups]  # not sqrt(0): its infinite gradient would turn the weights into NaN
    z = torch.where(std > 1e-6, (cos - mean[groups]) / std.clamp_min(1e-6), torch.zeros_like(cos))
    key = groups.double() * 4.0 + cos.detach().double()  # cosines lie in [-1, 1]: groups stay apart in one sorted key
    ordered = torch.sort(key).values
    lo = torch.searchsorted(ordered, key, right=False)
    hi = torch.searchsorted(ordered, key, right=True)
    start = torch.cumsum(size, 0) - size
    rank = (lo + hi - 1).double() / 2.0 - start[groups].double()
    frac = torch.where(size[groups] > 1, rank / (size[groups].double() - 1).clamp_min(1.0), torch.full_like(rank, 0.5))
    return torch.stack([cos, z, frac.to(cos.dtype)], dim=1)


class AverageNet(MoENet):
    """Embedding-level fusion: the gate-weighted average of the routed experts' projected vectors is the pair's one
    query and one item vector; ``inter[0]`` is the only interaction layer (trained with ``fusion="weighted"``, so the
    head takes one width-h vector)."""

    def forward(self, qv, dv, stats, q_local, market, rvec, fixed_gates=None):  # type: ignore[no-untyped-def]
        gates, probs, mask = self.gates(market, rvec)
        gates = fixed_gates if fixed_gates is not None else gates[q_local]
        u = sum(self.proj[i](self.centered(i, qv[i]))[q_local] * gates[:, i : i + 1] for i in range(len(qv)))
        v = sum(self.proj[i](self.centered(i, dv[i])) * gates[:, i : i + 1] for i in range(len(dv)))
        cos = torch.nn.functional.cosine_similarity(u, v, dim=1)
        x = self.drop(torch.cat([u * v, (u - v).abs(), group_stats_torch(cos, q_local)], dim=1))
        return self.finish(torch.relu(self.inter[0](x)), probs, mask)


VARIANTS: dict[str, tuple[str, type | None]] = {"concat": ("concat", None), "weighted": ("weighted", None),
                                                "average": ("weighted", AverageNet)}


def run_seed(data: Path, stores: Path, experts: list[str], k: int, seed: int) -> dict[str, Any]:
    """Train the teacher and the three fusions with one seed; their held-out scores and metrics."""
    dataset = load_data(data)
    train, stop, plan = training_pairs(dataset, stores.resolve(), experts, "static", None, seed)
    test = load_pairs(dataset, stores.resolve(), experts, [plan["eval_split"]], "static", markets=train.markets)
    cfg = replace(TrainConfig(), seed=seed)
    base = ModelSpec(experts=experts, dims=train.dims, markets=list(train.markets), k=k,
                     router_dim=int(train.rvec.shape[1]))
    teacher_spec = variant_spec("concat-all", base, {})
    teacher = train_net(teacher_spec, train, stop, replace(cfg, distill_weight=0.0))
    teacher_logits = net_logits(teacher_spec, teacher.weights, train)
    scores, rows = {}, {}
    for name, (fusion, net_class) in VARIANTS.items():
        spec = replace(base, fusion=fusion)
        began = time.perf_counter()
        result = train_net(spec, train, stop, cfg, teacher=teacher_logits, net_class=net_class)
        scores[name] = net_logits(spec, result.weights, test, net_class)
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
    out = {"name": "fusion", "data": str(args.data), "experts": experts, "k": args.k, "runs": runs}
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
