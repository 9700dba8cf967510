"""A day's new rows: ``embed --append`` + ``index --append`` against re-embedding and re-indexing everything.

Usage: ``python bench/append.py --data DATA/homedepot [--expert static] [--new 0.02]
[--kinds flat,hnsw] [--workdir DIR]``.

The dataset is split into a base (all but the last ``--new`` share of its items and queries, with the judgments
that name only base rows) and the full dataset as the grown one. The base is embedded and indexed, then grown by
append, and compared with a full embed and index build of the grown dataset: seconds of each, whether the two stores
are bit-identical (ids, vectors), and for each index kind whether top-10 results over the expert's query vectors
agree (share of identical neighbour lists). One encoder is built up front and shared, so model loading is not timed.
Prints one JSON object (also written to bench/results/append.json) and a short table.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from hetmoe.experts.card import default_router_expert

RESULTS = Path(__file__).resolve().parent / "results"


def split(data: Path, out: Path, share: float) -> tuple[Path, dict[str, int]]:
    """Write the base dataset (the first 1 - share of items and queries) to ``out``; returns it and the row counts."""
    from hetmoe.data.dataset import load_dataset, write_dataset

    ds = load_dataset(data)
    items = ds.items.head(int(ds.items.height * (1 - share)))
    queries = ds.queries.head(int(ds.queries.height * (1 - share)))
    judgments = ds.judgments.filter(pl.col("item_id").is_in(items["item_id"].implode())
                                    & pl.col("query_id").is_in(queries["query_id"].implode()))
    write_dataset(out, items, queries, judgments)
    return out, {"items": ds.items.height, "queries": ds.queries.height, "base_items": items.height, "base_queries": queries.height}


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    began = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, round(time.perf_counter() - began, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="A real dataset folder (e.g. DATA/homedepot).")
    parser.add_argument("--expert", default=default_router_expert(), help="Expert card (default: the cards' router expert, the cheapest).")
    parser.add_argument("--new", type=float, default=0.02, help="share of items and queries that arrive as new")
    parser.add_argument("--kinds", default="flat,hnsw")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder
    from hetmoe.store.append import append_dataset
    from hetmoe.store.embed import embed_dataset
    from hetmoe.store.index import ItemIndex, build_index
    from hetmoe.store.index_append import append_index
    from hetmoe.store.zarr_store import open_expert

    work = args.workdir or Path(tempfile.mkdtemp(prefix="hetmoe-append-"))
    base, counts = split(args.data, work / "base", args.new)
    card = get_card(args.expert)
    encoder = build_encoder(card)
    embed_dataset(base, card, work / "appended", encoder=encoder, progress=False)
    _, append_s = timed(append_dataset, args.data, card, work / "appended", encoder=encoder, progress=False)
    _, rebuild_s = timed(embed_dataset, args.data, card, work / "rebuilt", encoder=encoder, progress=False)
    a, r = open_expert(work / "appended", args.expert), open_expert(work / "rebuilt", args.expert)
    identical = all(np.array_equal(getattr(a, p).ids, getattr(r, p).ids) and getattr(a, p).load().tobytes() == getattr(r, p).load().tobytes()
                    for p in ("items", "queries"))
    out = {"data": args.data.name, "expert": args.expert, **counts, "embed_append_seconds": append_s,
           "embed_rebuild_seconds": rebuild_s, "stores_bit_identical": identical, "indexes": []}
    queries = r.queries.load().astype(np.float32)
    for kind in args.kinds.split(","):
        shutil.rmtree(work / "indexed", ignore_errors=True)
        embed_dataset(base, card, work / "indexed", encoder=encoder, progress=False)
        build_index(work / "indexed", args.expert, kind=kind)
        append_dataset(args.data, card, work / "indexed", encoder=encoder, progress=False)
        grown, add_s = timed(append_index, work / "indexed", args.expert)
        built, build_s = timed(build_index, work / "rebuilt", args.expert, kind=kind)
        got = ItemIndex.load(work / "indexed", args.expert).search(queries, 10)[0]
        want = ItemIndex.load(work / "rebuilt", args.expert).search(queries, 10)[0]
        out["indexes"].append({"kind": kind, "append_seconds": add_s, "rebuild_seconds": build_s,
                               "same_top10": round(float(np.mean((got == want).all(axis=1))), 4),
                               "recall@10_appended": grown.get("recall@10"), "recall@10_rebuilt": built.get("recall@10")})
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "append.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    print(f"embed: append {append_s} s vs rebuild {rebuild_s} s ({out['items'] - out['base_items']} new items, "
          f"{out['queries'] - out['base_queries']} new queries), bit-identical: {identical}")
    print(f"{'index':<7}{'append s':>10}{'rebuild s':>11}{'same top10':>12}")
    for row in out["indexes"]:
        print(f"{row['kind']:<7}{row['append_seconds']:>10}{row['rebuild_seconds']:>11}{row['same_top10']:>12}")


if __name__ == "__main__":
    main()
