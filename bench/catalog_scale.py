"""How every stage grows with the catalog: one synthetic market at 100k, 300k and 1M items, the cheap experts (static,
wordllama) plus the lexical expert, from data to bulk scoring.

Each offline stage runs as its own ``hetmoe`` command under GNU time (wall seconds, peak RSS): embed (both experts),
index (the market HNSW graphs), neighbourhoods (every item's neighbour row), lexical fit, fit-head (the MoE and its
stacked head over a fixed 2,000 queries, so it measures what the catalog's size costs it), the search index
(``hetmoe index``); online ``score(100)`` p50 / p99 with warm caches, cold caches, and cold caches with the query
vectors given (the time outside encoding), under each head the fit saved (the chosen head differs between sizes); bulk ``hetmoe score`` of the valid pairs by query id; last, a 1% append
(embed --append of both experts, which grows their market indexes, and of the lexical expert) against the full build
it replaces. The growth exponent of a stage is
log(t_big / t_small) / log(n_big / n_small).

Usage: ``python bench/catalog_scale.py --sizes 100000,300000,1000000 --work /tmp/scale`` (about an hour on 2 cores);
writes bench/results/catalog_scale.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

RESULTS = Path(__file__).resolve().parent / "results"
EXPERTS = ("static", "wordllama")
QUERIES = 2000
ONLINE_QUERIES, ONLINE_ITEMS = 1000, 100  # a p99 over 1,000 calls rests on its 10 slowest, not on 2 of 200
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(args: list[str]) -> dict[str, Any]:
    """A hetmoe command under GNU time: its wall seconds, peak RSS (MB) and the JSON line it printed last, if any."""
    print(f"{time.strftime('%H:%M:%S')} hetmoe {' '.join(args)}", file=sys.stderr, flush=True)
    cmd = ["/usr/bin/time", "-f", "TIME %e %M", str(Path(sys.executable).parent / "hetmoe"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    seconds, kb = re.findall(r"TIME ([\d.]+) (\d+)", done.stderr)[-1]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    return {"seconds": float(seconds), "peak_mb": round(int(kb) / 1024), "out": json.loads(lines[-1]) if lines else None}


def stage(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"seconds": round(sum(p["seconds"] for p in parts), 2), "peak_mb": max(p["peak_mb"] for p in parts)}


def with_new_items(base: Path, bigger: Path, out: Path) -> int:
    """``base`` plus the items ``bigger`` adds (the demo grows its catalog by drawing more items after the same
    ones), the queries and judgments unchanged: what a catalog feed adds in a day."""
    items = pl.read_parquet(base / "items.parquet")
    more = pl.read_parquet(bigger / "items.parquet").filter(~pl.col("item_id").is_in(items["item_id"].implode()))
    out.mkdir(parents=True, exist_ok=True)
    pl.concat([items, more]).write_parquet(out / "items.parquet")
    for name in ("queries", "judgments"):
        pl.read_parquet(base / f"{name}.parquet").write_parquet(out / f"{name}.parquet")
    return more.height


def online(model: Path, data: Path) -> dict[str, Any]:
    """score(100) latency: warm caches, cold caches, and cold caches with the query vectors given (``data``: the
    dataset whose items the store holds, which gives the catalog its markets)."""
    from hetmoe.online.results import ScoreRequest
    from hetmoe.online.scorer import Scorer

    scorer = Scorer.load(model, data_dir=data, with_indexes=False)
    scorer.warm()
    queries = pl.read_parquet(data / "queries.parquet").head(ONLINE_QUERIES)
    ids = pl.read_parquet(data / "items.parquet", columns=["item_id"])["item_id"].to_numpy()
    rng = np.random.default_rng(0)
    work = [ScoreRequest(t, ids[rng.choice(ids.shape[0], ONLINE_ITEMS, replace=False)].tolist(), m)
            for t, m in zip(queries["text"], queries["market"])]
    encoders = [e for e in dict.fromkeys([*scorer.model.experts, scorer.model.router_expert]) if e]
    known = [{e: scorer.encoder(e).encode([r.query], kind="query")[0] for e in encoders} for r in work]

    def timed(cold: bool, given: bool) -> list[float]:
        out = []
        for request, vectors in zip(work, known):
            if cold:
                scorer.clear_caches()
            began = time.perf_counter()
            scorer.score_batch([request], [vectors] if given else None)
            out.append((time.perf_counter() - began) * 1000)
        return out

    for r in work:  # fills every cache
        scorer.score_batch([r])
    rows = {"cached": timed(False, False), "uncached": timed(True, False), "uncached_outside_encoding": timed(True, True)}
    scorer.close()
    return {name: {"p50_ms": round(float(np.percentile(v, 50)), 3), "p99_ms": round(float(np.percentile(v, 99)), 3)}
            for name, v in rows.items()}


def head_models(model: Path) -> dict[str, Path]:
    """The fitted MoE under each head it saved ({"stacked": ..., "net": ...}): each size fits its own model, so the
    online figures compare one head shape across sizes."""
    index = json.loads((model / "fit.json").read_text())
    chosen = index["moe_selection"]["head"]
    out = {chosen: model}
    for head in ("net", "stacked"):
        if head != chosen and f"moe:{head}" in index["variants"]:
            out[head] = model / index["variants"][f"moe:{head}"]
    return out


def timed_heads(model: Path, data: Path) -> dict[str, Any]:
    return {head: online(path, data) for head, path in sorted(head_models(model).items())}


def one_size(n: int, work: Path, search_index: bool) -> dict[str, Any]:
    data, store, model = work / f"d{n}", work / f"s{n}", work / f"m{n}"
    out: dict[str, Any] = {"items": n, "queries": QUERIES}
    demo = ["data", "demo", "--market", "SG", "--queries-per-market", str(QUERIES)]
    out["data"] = stage([run([*demo, "--out", str(data), "--items-per-market", str(n)])])
    out["embed"] = stage([run(["embed", "-e", e, "--data", str(data), "--store", str(store)]) for e in EXPERTS])
    built = [run(["neighbours", "-e", e, "--data", str(data), "--store", str(store)]) for e in EXPERTS]
    summaries = [next(iter(b["out"].values())) for b in built]
    memory = max(b["peak_mb"] for b in built)
    out["index"] = {"seconds": round(sum(s["index_seconds"] for s in summaries), 2), "peak_mb": memory}
    out["neighbourhoods"] = {"seconds": round(sum(s["table_seconds"] for s in summaries), 2), "peak_mb": memory}
    out["lexical_fit"] = stage([run(["embed", "-e", "lexical", "--data", str(data), "--store", str(store)])])
    out["fit_head"] = stage([run(["fit-head", "--data", str(data), "--store", str(store), "--out", str(model),
                                  "-e", ",".join(EXPERTS), "--k", "1", "--router-expert", "static",
                                  "--lexical", "lexical", "--variants", "none"])])
    if search_index:
        out["search_index"] = stage([run(["index", "-e", e, "--store", str(store)]) for e in EXPERTS])
    out["online"] = timed_heads(model, data)
    valid = pl.read_parquet(data / "judgments.parquet").filter(pl.col("split") == "valid")
    valid.select("query_id", "item_id").write_parquet(work / f"valid{n}.parquet")
    scored = run(["score", "--model", str(model), "--pairs", str(work / f"valid{n}.parquet"), "--out",
                  str(work / f"scored{n}"), "--data", str(data)])
    out["bulk"] = {"pairs": scored["out"]["pairs"], "pairs_per_s": scored["out"]["pairs_per_s"],
                   "pairs_per_cpu_s": round(scored["out"]["pairs"] / max(scored["out"]["cpu_seconds"], 1e-9))}
    # a 1% append of new items against the full build it replaces (embed + index + neighbourhoods + lexical fit)
    grown, bigger = work / f"d{n}-grown", work / f"d{n}-bigger"
    run([*demo, "--out", str(bigger), "--items-per-market", str(n + n // 100)])
    added = with_new_items(data, bigger, grown)
    appended = [run(["embed", "-e", e, "--data", str(grown), "--store", str(store), "--append"])
                for e in (*EXPERTS, "lexical")]  # an expert's append grows its market indexes too
    full = sum(out[k]["seconds"] for k in ("embed", "index", "neighbourhoods", "lexical_fit"))
    out["append_1pct"] = {**stage(appended), "items": added, "full_build_seconds": round(full, 2),
                          "share_of_full_build": round(stage(appended)["seconds"] / full, 4)}
    print(json.dumps({"size": n, **out}), flush=True)
    return out


def growth(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per timed stage: the exponent between each pair of consecutive sizes and between the smallest and largest."""
    stages = [k for k, v in rows[0].items() if isinstance(v, dict) and "seconds" in v and k != "data"]
    pairs = list(zip(rows, rows[1:])) + ([(rows[0], rows[-1])] if len(rows) > 2 else [])
    out: dict[str, dict[str, float]] = {}
    for name in stages:
        out[name] = {f"{a['items']}->{b['items']}": round(math.log(b[name]["seconds"] / a[name]["seconds"]) /
                                                          math.log(b["items"] / a["items"]), 3)
                     for a, b in pairs if a[name]["seconds"] > 0}
    return out


def table(rows: list[dict[str, Any]], exponents: dict[str, dict[str, float]]) -> str:
    sizes = [r["items"] for r in rows]
    lines = [f"{'stage':<18}" + "".join(f"{s:>14,}" for s in sizes) + f"{'exponent':>12}"]
    for name, by in exponents.items():
        cells = "".join(f"{r[name]['seconds']:>12.1f} s" for r in rows)
        lines.append(f"{name:<18}{cells}{list(by.values())[-1]:>12.2f}")
    for head in ("net", "stacked"):
        for what in ("cached", "uncached_outside_encoding"):
            cells = "".join(f"{r['online'][head][what]['p99_ms']:>11.2f} ms" if head in r["online"] else f"{'-':>14}"
                            for r in rows)
            lines.append(f"{f'p99 {head} ' + what[:9]:<18}{cells}")
    lines.append(f"{'bulk pairs/cpu s':<18}" + "".join(f"{r['bulk']['pairs_per_cpu_s']:>14,}" for r in rows))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--work", type=Path, required=True, help="Scratch folder for data, stores and models.")
    parser.add_argument("--search-index", action="store_true", help="Also time 'hetmoe index' (the /search index).")
    parser.add_argument("--out", type=Path, default=RESULTS / "catalog_scale.json")
    parser.add_argument("--online-only", action="store_true",
                        help="Re-time only score(100) on the models a finished run left in --work (after its append: "
                        "the grown catalogs), updating --out; online timings need a quiet machine.")
    args = parser.parse_args()
    if args.online_only:
        result = json.loads(args.out.read_text())
        for row in result["sizes"]:
            n = row["items"]
            row["online"] = {**timed_heads(args.work / f"m{n}", args.work / f"d{n}-grown"), "items": n + n // 100}
        result["online_retimed"] = {"date": time.strftime("%Y-%m-%d"), "load_after": os.getloadavg(),
                                    "calls_per_figure": ONLINE_QUERIES}
        args.out.write_text(json.dumps(result, indent=1))
        print(table(result["sizes"], result["growth_exponent"]))
        return
    rows = [one_size(int(n), args.work, args.search_index) for n in args.sizes.split(",")]
    exponents = growth(rows) if len(rows) > 1 else {}
    machine = {"cpus": os.cpu_count(), "load_after": os.getloadavg()}
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine, "experts": EXPERTS, "sizes": rows,
              "growth_exponent": exponents}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    if exponents:
        print(table(rows, exponents))


if __name__ == "__main__":
    main()
