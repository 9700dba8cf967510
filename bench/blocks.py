"""What each feature block earns and costs: the MoE fitted with every block, then without each optional one.

Blocks (``hetmoe/pairs/blocks``): the item-neighbourhood block (``--no-item-neighbourhood``), the lexical block
(``lexical_store`` unset) and the router expert's columns in the stacked head (``--no-router-features``); the expert
statistics are the heads' core input and stay; and one block added by name (``reference_tail``, ``--block``). For each run: the valid macro AUC of the chosen MoE (and per market),
and the block's cost: the CPU seconds its columns take per 1,000 valid pairs on the fitted model's features, computed
once more after the fit (one thread).

Usage: ``python bench/blocks.py --data ../shared/data/multimarket --stores S -e minilm,use,static,wordllama
--lexical lexical --seeds 0 --work /tmp/blocks`` (writes bench/results/blocks-<data>.json).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ABLATIONS = {"all": {}, "no-neighbourhood": {"item_neighbourhood": False}, "no-lexical": {"lexical": False},
             "no-router-columns": {"router_features": False}, "with-reference-tail": {"extra_blocks": ["reference_tail"]}}


def block_seconds(model_dir: Path, data: Path, stores: Path) -> dict[str, float]:
    """CPU milliseconds per 1,000 valid pairs of each block the fitted model reads, computed afresh on one thread."""
    from threadpoolctl import threadpool_limits

    from hetmoe.moe.evaluate import model_pairs
    from hetmoe.moe.fit import load_data
    from hetmoe.moe.infer import MoEModel

    model = MoEModel.load(model_dir, store_root=stores)
    pairs = model_pairs(model, load_data(data), ["valid"], stores)  # computes every block once (warm caches)
    feats = pairs.features
    out = {}
    with threadpool_limits(1):
        for name, block in feats.blocks.items():
            fresh = type(feats)(feats.batch, feats.context, feats.blocks)
            began = time.process_time()
            for expert in model.experts if block.per_expert else [None]:
                fresh.block(name, expert)
            out[name] = round((time.process_time() - began) / len(pairs) * 1e6, 1)  # ms per 1,000 pairs
    return out


def run(args: argparse.Namespace, name: str, seed: int) -> dict[str, Any]:
    from hetmoe.moe.evaluate import evaluate
    from hetmoe.moe.fit import fit

    change = ABLATIONS[name]
    work = args.work / f"{name}-seed{seed}"
    lexical = args.lexical if change.get("lexical", True) else ""
    overrides = {**({"lexical_store": lexical} if lexical else {}), "extra_blocks": change.get("extra_blocks", [])}
    began = time.perf_counter()
    fit(args.data, args.stores, work / "model", args.experts.split(","), k=args.k, seed=seed, eval_split="valid",
        variants=(), spec_overrides=overrides,
        item_neighbourhood=change.get("item_neighbourhood", True), router_features=change.get("router_features", True))
    fit_seconds = time.perf_counter() - began
    report = evaluate(work / "model", args.data, "valid", work / "report", store_root=args.stores)
    moe = report["variants"]["moe"]
    return {"ablation": name, "seed": seed, "fit_seconds": round(fit_seconds, 1), "auc_macro": moe["auc_macro"],
            "auc_by_market": moe["auc_by_market"], "block_ms_per_1k_pairs": block_seconds(work / "model", args.data,
                                                                                          args.stores)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--stores", type=Path, required=True)
    parser.add_argument("-e", "--experts", required=True)
    parser.add_argument("--lexical", default="lexical")
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--ablations", default=",".join(ABLATIONS))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = [run(args, name, int(seed)) for seed in args.seeds.split(",") for name in args.ablations.split(",")]
    out = args.out or RESULTS / f"blocks-{args.data.name}.json"
    result = {"date": time.strftime("%Y-%m-%d"), "data": args.data.name, "experts": args.experts, "runs": rows}
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    base = {r["seed"]: r["auc_macro"] for r in rows if r["ablation"] == "all"}
    print(f"{'run':<20}{'seed':>5}{'macro AUC':>11}{'vs all':>9}  block ms / 1k pairs")
    for r in rows:
        delta = r["auc_macro"] - base.get(r["seed"], r["auc_macro"])
        print(f"{r['ablation']:<20}{r['seed']:>5}{r['auc_macro']:>11.4f}{delta:>+9.4f}  {r['block_ms_per_1k_pairs']}")


if __name__ == "__main__":
    main()
