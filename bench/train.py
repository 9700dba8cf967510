"""Time to train the stage-two MoE (router + concatenation head) on N judgments of synthetic vectors.

The vectors have the dimensions of the cards' default experts (hetmoe/experts/cards.toml) and carry a
shared latent relevance signal whose strength differs per expert and market, so routing has something to learn.
Target: 100k judgments trained (early stopping included) in under 60 s on a 2-core CPU. The time includes the
concat-all teacher the MoE is distilled from (as in ``fit``).

    python bench/train.py [--pairs 100000] [--threads 1] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from hetmoe.experts.card import default_experts, default_router_expert, get_card
from hetmoe.moe.features import PairSet
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.train import TrainConfig, net_logits, train_net
from hetmoe.vectors import l2_normalize

EXPERTS = {name: int(get_card(name).dim or 0) for name in default_experts()}  # the cards' default set and dims
ROUTER = default_router_expert()
MARKETS = ["ID", "TH", "VN", "MY", "PH", "SG"]
PER_QUERY = 20
LATENT = 32


def synthetic_pairs(n_pairs: int, seed: int) -> PairSet:
    """A PairSet of ``n_pairs`` judgments over n_pairs / 20 queries and as many items as pairs / 2."""
    rng = np.random.default_rng(seed)
    n_q, n_i = max(1, n_pairs // PER_QUERY), max(PER_QUERY, n_pairs // 2)
    zq, zi = rng.normal(size=(n_q, LATENT)), rng.normal(size=(n_i, LATENT))
    q_market = rng.integers(0, len(MARKETS), size=n_q)
    qi = np.repeat(np.arange(n_q), PER_QUERY)[:n_pairs]
    di = rng.integers(0, n_i, size=n_pairs)
    rel = np.einsum("ij,ij->i", zq[qi], zi[di]) / np.sqrt(LATENT)
    y = (rel + 0.5 * rng.normal(size=n_pairs) > 1.0).astype(np.float32)
    quality = rng.uniform(0.3, 1.5, size=(len(EXPERTS), len(MARKETS)))  # expert x market signal strength
    q_list, d_list = [], []
    for e, dim in enumerate(EXPERTS.values()):
        mix = rng.normal(size=(LATENT, dim)) / np.sqrt(LATENT)
        noise_q = rng.normal(size=(n_q, dim)) / quality[e, q_market][:, None]
        q_list.append(l2_normalize(zq @ mix + noise_q))
        d_list.append(l2_normalize(zi @ mix + rng.normal(size=(n_i, dim))))
    return PairSet.from_arrays(list(EXPERTS), q_list, d_list, qi, di, y, MARKETS, q_market,
                               q_list[list(EXPERTS).index(ROUTER)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--stop-pairs", type=int, default=15_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train.json")
    args = parser.parse_args()

    pairs = synthetic_pairs(args.pairs + args.stop_pairs, args.seed)
    cut = pairs.qi < (args.pairs // PER_QUERY)
    train, stop = pairs.subset(cut), pairs.subset(~cut)
    spec = ModelSpec(experts=list(EXPERTS), dims=list(EXPERTS.values()), markets=MARKETS, k=2,
                     router_expert=ROUTER, router_dim=EXPERTS[ROUTER])
    cfg = TrainConfig(seed=args.seed, threads=args.threads)
    t0 = time.perf_counter()
    # As 'fit' does: the concat-all teacher first (labels only), then the MoE distilled from its logits.
    teacher_spec = replace(spec, router="none")
    teacher = train_net(teacher_spec, train, stop, replace(cfg, distill_weight=0.0))
    teacher_logits = net_logits(teacher_spec, teacher.weights, train)
    teacher_seconds = time.perf_counter() - t0
    result = train_net(spec, train, stop, cfg, teacher=teacher_logits if cfg.distill_weight > 0 else None)
    seconds = time.perf_counter() - t0
    epochs = len(result.metrics["history"])
    out = {
        "bench": "train",
        "pairs": len(train),
        "stop_pairs": len(stop),
        "experts": EXPERTS,
        "threads": args.threads,
        "seconds": round(seconds, 2),
        "teacher_seconds": round(teacher_seconds, 2),
        "distill_weight": cfg.distill_weight,
        "epochs": epochs,
        "seconds_per_epoch": round((seconds - teacher_seconds) / max(1, epochs), 3),
        "best_epoch": result.metrics["best_epoch"],
        "stop_auc_macro": round(result.metrics["stop_auc_macro"], 4),
        "target_seconds": 60,
        "meets_target": seconds < 60,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
    print(f"trained router + head on {len(train):,} judgments in {seconds:.1f}s, concat-all teacher included "
          f"({teacher_seconds:.1f}s); MoE {epochs} epochs; target < 60s: {'yes' if out['meets_target'] else 'NO'}")


if __name__ == "__main__":
    main()
