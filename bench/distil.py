"""What a distilled student keeps of its teacher, on valid (per market and macro), and what each option costs online.

Compared, all on the same valid pairs:
- the student's raw cosine and its base model's raw cosine (the eval report's zero-shot rows);
- the student with the lexical head, ``single:<student>``, and ``single:<base>`` beside it;
- the mixture that taught it (``--teacher``), re-evaluated here;
- a mixture that includes the student as one more expert (the teacher's experts + the student, and its base where
  the teacher has none, fitted with the teacher's k, lexical store and seed);
- a cascade: the student's head for every query, the teacher for the share it is least certain about.

Online cost: ``score`` of 100 items of the query's market, every query new (uncached), p50 and p99 over ``--queries``
distinct queries; for a raw cosine, the card's query encode plus the 100 dot products over stored item vectors.

Usage: ``python bench/distil.py --teacher MODEL --data DATA/multimarket --stores S --cards STUDENT/card.toml
--student minilm-distil --base minilm [--work W] [--seed 0]`` (embeds the student into S first when its store is
missing).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from _tables import print_table, publish
from online import percentiles, timed, workload

log = logging.getLogger("bench.distil")


def fit_with_student(args: argparse.Namespace, teacher: dict[str, Any]) -> Path:
    """The teacher's experts + the student (+ its base, where the teacher lacks it), fitted like the teacher, with
    every single-expert variant."""
    from hetmoe.experts.card import get_card
    from hetmoe.moe.fit import fit
    from hetmoe.store.embed import embed_dataset

    out = args.work / "with-student"
    if not (out / "config.json").is_file():
        spec = teacher["spec"]
        experts = list(dict.fromkeys([*spec["experts"], args.base, args.student]))
        for expert in experts:
            embed_dataset(args.data, get_card(expert, args.cards), args.stores)
        fit(args.data, args.stores, out, experts, k=spec["k"], seed=args.seed,
            eval_split="valid", router_expert=spec["router_expert"], variants=["single"],
            spec_overrides={"lexical_store": spec["lexical_store"], "pair_stats": spec["pair_stats"]})
    return out


def quality(report: dict[str, Any], names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Macro and per-market AUC of the report rows ``names`` maps to (label -> report variant)."""
    variants = report["variants"]
    return {label: {"macro": round(variants[name]["auc_macro"], 4),
                    "by_market": {m: round(a, 4) for m, a in variants[name]["auc_by_market"].items()}}
            for label, name in names.items()}


def model_latency(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from hetmoe.online.scorer import Scorer

    scorer = Scorer.load(model_dir, data_dir=args.data, with_indexes=False, store_root=args.stores)
    try:
        scorer.warm()
        work = workload(scorer, args.data, args.queries, 100, args.seed)
        scorer.clear_caches()
        return percentiles([timed(lambda w=w: scorer.score(w[0], w[2], w[1])) for w in work])
    finally:
        scorer.close()


def cosine_latency(expert: str, args: argparse.Namespace, work: list[tuple[str, str, list[str]]]) -> dict[str, Any]:
    """The card's query encode plus 100 dot products with stored item vectors, per query (every query new)."""
    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder
    from hetmoe.store.zarr_store import open_expert

    encoder = build_encoder(get_card(expert, args.cards))
    items = open_expert(args.stores, expert).items
    vectors = items.load()
    encoder.encode(["warm up"], "query")

    def one(text: str, ids: list[str]) -> np.ndarray:
        query = encoder.encode([text], "query")[0]
        return vectors[items.rows(ids)].astype(np.float32) @ (query / np.linalg.norm(query))

    return percentiles([timed(lambda w=w: one(w[0], w[2])) for w in work])


def cascade(args: argparse.Namespace, student_model: Path, shares: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0)
            ) -> list[dict[str, Any]]:
    """Serve every query with the student's head and send the least certain share of queries to the teacher too
    (certainty: the mean distance of the student's scores from 0.5 over the query's pairs): macro AUC per share.
    Both models score valid's judged pairs through ``hetmoe score``'s path."""
    import polars as pl

    from hetmoe.metrics import auc_by_market, macro
    from hetmoe.scale.score import score_pairs

    judged = pl.read_parquet(args.data / "judgments.parquet").filter(pl.col("split") == "valid")
    pairs = args.work / "valid-pairs.parquet"
    judged.select("query_id", "item_id", "relevant").write_parquet(pairs)
    scored = {}
    for name, model in (("student", student_model), ("teacher", args.teacher)):
        out = args.work / f"valid-{name}.parquet"
        if not out.is_file():
            score_pairs(model, pairs, out, data_dir=args.data, progress=False)
        scored[name] = pl.read_parquet(out).sort("query_id", "item_id")
    frame = scored["student"].with_columns(scored["teacher"]["score"].alias("teacher"))
    markets = dict(pl.read_parquet(args.data / "queries.parquet").select("query_id", "market").iter_rows())
    frame = frame.with_columns(pl.col("query_id").replace_strict(markets).alias("market"))
    certainty = frame.group_by("query_id").agg((pl.col("score") - 0.5).abs().mean().alias("c")).sort("c", "query_id")
    rows = []
    for share in shares:
        hard = certainty["query_id"].head(round(share * certainty.height)).implode()
        mixed = frame.select(pl.when(pl.col("query_id").is_in(hard)).then("teacher").otherwise("score"))
        by_market = auc_by_market(mixed.to_series().to_numpy(), frame["relevant"].to_numpy(),
                                  frame["market"].to_numpy())
        rows.append({"share_to_teacher": share, "macro": round(macro(by_market), 4),
                     "by_market": {m: round(a, 4) for m, a in by_market.items()}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True, help="The mixture that taught the student.")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--stores", type=Path, required=True, help="The teacher's store root (the student is added).")
    parser.add_argument("--cards", type=Path, required=True, help="Cards file holding the student's card.")
    parser.add_argument("--student", required=True)
    parser.add_argument("--base", required=True, help="The student's base card (e.g. minilm).")
    parser.add_argument("--queries", type=int, default=300, help="Distinct queries timed per option.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("stores/bench-distil"))
    parser.add_argument("--name", default="distil", help="Result file name under bench/results.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from hetmoe.experts.card import get_card
    from hetmoe.moe.evaluate import evaluate
    from hetmoe.store.embed import embed_dataset

    began = time.perf_counter()
    embedded = {k: v for k, v in embed_dataset(args.data, get_card(args.student, args.cards), args.stores).items()
                if k != "store"}  # results name datasets and experts, not this machine's paths
    embed_seconds = time.perf_counter() - began
    teacher = json.loads((args.teacher / "config.json").read_text())
    mixed = fit_with_student(args, teacher)
    taught = evaluate(args.teacher, args.data, "valid", args.work / "report-teacher", store_root=args.stores)
    both = evaluate(mixed, args.data, "valid", args.work / "report-with-student", store_root=args.stores)
    rows = {**quality(both, {f"{args.student} raw cosine": f"zero-shot:{args.student}",
                             f"{args.base} raw cosine": f"zero-shot:{args.base}",
                             f"single:{args.student}": f"single:{args.student}",
                             f"single:{args.base}": f"single:{args.base}"}),
            **quality(taught, {"teacher mixture": "moe"}),
            **quality(both, {"mixture + student": "moe"})}
    from hetmoe.online.scorer import Scorer

    probe = Scorer.load(args.teacher, data_dir=args.data, with_indexes=False, store_root=args.stores)
    work = workload(probe, args.data, args.queries, 100, args.seed)
    probe.close()
    latency = {f"{args.student} raw cosine": cosine_latency(args.student, args, work),
               f"{args.base} raw cosine": cosine_latency(args.base, args, work),
               f"single:{args.student}": model_latency(mixed / "variants" / f"single-{args.student}", args),
               f"single:{args.base}": model_latency(mixed / "variants" / f"single-{args.base}", args),
               "teacher mixture": model_latency(args.teacher, args),
               "mixture + student": model_latency(mixed, args)}
    for label, row in rows.items():
        row["score100_uncached_ms"] = latency[label]
    routed = cascade(args, mixed / "variants" / f"single-{args.student}")
    out = {"name": args.name, "data": args.data.name, "student": args.student, "base": args.base,
           "teacher_experts": teacher["spec"]["experts"], "seed": args.seed, "embed": embedded,
           "embed_seconds": round(embed_seconds, 1), "rows": rows, "cascade": routed}
    publish(args.name, out)
    markets = sorted(next(iter(rows.values()))["by_market"])
    print_table([{"option": label, "macro": f"{r['macro']:.4f}", **{m: f"{r['by_market'][m]:.4f}" for m in markets},
                  "p50": r["score100_uncached_ms"]["p50"], "p99": r["score100_uncached_ms"]["p99"]}
                 for label, r in rows.items()],
                [("option", "option", 24), ("macro", "macro AUC", 11), *[(m, m, 14) for m in markets],
                 ("p50", "p50 ms", 9), ("p99", "p99 ms", 9)])
    print_table([{"share": r["share_to_teacher"], "macro": r["macro"]} for r in routed],
                [("share", "share of queries also scored by the teacher", 46), ("macro", "macro AUC", 11)])


if __name__ == "__main__":
    main()
