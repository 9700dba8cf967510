"""What ``hetmoe distil`` learns from: each train query's judged pairs plus hard in-market candidates, labelled by the
mixture through the bulk scoring path.

Candidates are the teacher's own view of the query: its routed experts each search the query's market in their
market index (the index reference rows read: exact for small markets, HNSW above) for its nearest items, N more
than the query has judged ones; the lists are merged rank by rank (every expert's best, then every expert's second,
...), duplicates and the query's judged items dropped, and the first N kept. Hard negatives and unjudged positives both come from there, which a
random draw would almost never give.

Labels are ``hetmoe score`` run on the drawn pairs file (one process or a Ray pool): the same path as bulk scoring,
so a label equals what ``score`` gives that pair (a pair's score depends on its query's other pairs, and both see
the same list). Everything is kept in a labels folder named after what it depends on (the teacher's weights, the
dataset's files and the drawing options), so a second student reuses it, and a killed labelling resumes from its
finished parts.

Costs, per train query: routing (one router call per batch) and k index searches, O(k log n) on an HNSW market;
per drawn pair the teacher's bulk cost; per catalog nothing (the market indexes already exist for reference rows).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hetmoe.data.dataset import Dataset
from hetmoe.errors import HetmoeError
from hetmoe.files import write_json_atomic
from hetmoe.scale.pairs import fingerprint as file_fingerprint
from hetmoe.scale.parts import model_fingerprint
from hetmoe.scale.session import PoolSpec
from hetmoe.vectors import l2_normalize

log = logging.getLogger(__name__)
PAIRS_FILE, SCORES_FILE, LABELS_FILE, DRAWN_FILE = "pairs.parquet", "scores.parquet", "labels.json", "drawn.json"
BLOCK_QUERIES = 50_000  # queries routed, encoded and searched together while drawing


def labels_identity(model_dir: Path, dataset: Dataset, per_query: int, held_out: float, seed: int) -> dict[str, Any]:
    """What the labels depend on: the teacher's weights, the dataset's files, and the drawing options."""
    files = {name: file_fingerprint(dataset.root / name) for name in ("items.parquet", "queries.parquet",
                                                                     "judgments.parquet")}
    return {"teacher": model_fingerprint(model_dir), "data": files, "pairs_per_query": per_query,
            "held_out": held_out, "seed": seed}


def labels_folder(identity: dict[str, Any]) -> Path:
    """The default labels folder: ``stores/distil/labels-<12 hex digits of the identity>``."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return Path("stores") / "distil" / f"labels-{digest[:12]}"


def draw_pairs(model_dir: Path, dataset: Dataset, train: pl.DataFrame, per_query: int) -> pl.DataFrame:
    """(query_id, item_id, market, label) for the queries of ``train`` (judged train pairs with their market): their
    judged pairs, then up to ``per_query`` drawn candidates each (label null), sorted by query."""
    judged = train.select("query_id", "item_id", "market", pl.col("label").cast(pl.Float64))
    if per_query == 0:
        return judged.sort("query_id", "item_id")
    queries = (train.group_by("query_id", "market").len("judged").sort("query_id")
               .join(dataset.query_texts(), on="query_id", how="left"))
    found = _candidates(model_dir, dataset.root, queries, per_query)
    seen = {q: set(items) for q, items in judged.group_by("query_id").agg("item_id").iter_rows()}
    rows: list[tuple[str, str, str]] = []
    for qid, market, items in zip(queries["query_id"].to_list(), queries["market"].to_list(), found):
        fresh = [i for i in items if i not in seen.get(qid, ())][:per_query]
        rows.extend((qid, item, market) for item in fresh)
    drawn = pl.DataFrame(rows, schema={"query_id": pl.String, "item_id": pl.String, "market": pl.String}, orient="row")
    log.info("drew %d candidates for %d train queries (%.1f per query; %d asked)", drawn.height, queries.height,
             drawn.height / max(queries.height, 1), per_query)
    return pl.concat([judged, drawn.with_columns(pl.lit(None, pl.Float64).alias("label"))]).sort("query_id", "item_id")


def _candidates(model_dir: Path, data_root: Path, queries: pl.DataFrame, per_query: int) -> list[list[str]]:
    """Per query, its routed experts' nearest items of its market (``per_query`` more than its ``judged`` count),
    merged rank by rank, duplicates dropped; BLOCK_QUERIES queries at a time, so memory does not grow with them."""
    from tqdm import tqdm

    from hetmoe.online.scorer import Scorer

    scorer = Scorer.load(model_dir, data_dir=data_root, with_indexes=False, cache_size=0)
    out: list[list[str]] = []
    try:
        with tqdm(total=queries.height, desc="draw candidates", unit="query", leave=False) as bar:
            for lo in range(0, queries.height, BLOCK_QUERIES):
                block = queries.slice(lo, BLOCK_QUERIES)
                out.extend(_block(scorer, data_root, block, per_query))
                bar.update(block.height)
    finally:
        scorer.close()
    return out


def _block(scorer: Any, data_root: Path, queries: pl.DataFrame, per_query: int) -> list[list[str]]:
    from hetmoe.scale.score import known_query_vectors

    texts, markets = queries["text"].to_list(), queries["market"].to_list()
    known = known_query_vectors(scorer, data_root, queries["query_id"].to_numpy())
    routes = scorer.route_batch(texts, markets, known)
    vectors = scorer.query_vectors(texts, [r.experts for r in routes], known)
    depth = per_query + queries["judged"].to_numpy()
    lists: list[dict[int, np.ndarray]] = [{} for _ in texts]  # query -> {route position: catalog rows, best first}
    context = scorer.context
    for expert in scorer.model.experts:
        for market in sorted(set(markets)):
            at = [q for q, (m, r) in enumerate(zip(markets, routes)) if m == market and expert in r.experts]
            if not at:
                continue
            index, rows_of = context.market_index(expert, "" if scorer.catalog.markets is None else market)
            units = l2_normalize(np.stack([vectors[q][expert] for q in at]).astype(np.float32), inplace=True)
            _, local = index.nearest(units, lambda rows, e=expert, r=rows_of: context.unit_items(e, r[rows]),
                                     int(depth[at].max()))
            found = np.where(local >= 0, rows_of[np.maximum(local, 0)] if rows_of.size else -1, -1)
            for q, row in zip(at, found):
                lists[q][routes[q].experts.index(expert)] = row[:depth[q]]
    ids = scorer.catalog.ids
    out = []
    for per_expert in lists:
        ranked = np.full((len(per_expert), int(max((r.shape[0] for r in per_expert.values()), default=0))), -1)
        for i, position in enumerate(sorted(per_expert)):
            ranked[i, :per_expert[position].shape[0]] = per_expert[position]
        merged = ranked.T.ravel()  # every expert's best, then every expert's second, ...
        merged = merged[merged >= 0]
        _, first = np.unique(merged, return_index=True)
        out.append(ids[merged[np.sort(first)]].tolist())
    return out


def label_pairs(model_dir: Path, dataset: Dataset, train: pl.DataFrame, per_query: int, folder: Path,
                identity: dict[str, Any], engine: str, pool: PoolSpec | None, progress: bool) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The drawn pairs with the teacher's ``teacher`` score, and the labelling summary: read from ``folder`` when a
    finished labelling of the same identity is there, else drawn (once) and scored (resuming any finished parts)."""
    from hetmoe.scale.score import score_pairs

    marker = folder / LABELS_FILE
    if marker.is_file():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("identity") != identity:
            raise HetmoeError(f"{folder} holds labels of another teacher, dataset or drawing; pass another --labels "
                              "folder or remove this one")
        log.info("reusing the teacher's labels in %s (%d pairs)", folder, done["summary"]["pairs"])
        return _read_labels(folder), done["summary"]
    folder.mkdir(parents=True, exist_ok=True)
    pairs, drawn = folder / PAIRS_FILE, folder / DRAWN_FILE
    if pairs.is_file() and (not drawn.is_file() or json.loads(drawn.read_text(encoding="utf-8")) != identity):
        raise HetmoeError(f"{pairs} was drawn for another teacher, dataset or drawing; pass another --labels folder "
                          "or remove this one")
    if not pairs.is_file():  # drawn once: a resumed labelling must score the very same file
        staging = pairs.with_name(f".{PAIRS_FILE}.tmp")
        draw_pairs(model_dir, dataset, train, per_query).write_parquet(staging)
        write_json_atomic(drawn, identity)
        staging.replace(pairs)
    summary = score_pairs(model_dir, pairs, folder / SCORES_FILE, engine, pool, dataset.root, progress=progress)
    labels = _read_labels(folder)
    summary = {**{k: summary[k] for k in ("engine", "workers", "pairs", "scored", "blocks", "blocks_resumed",
                                           "seconds", "work_seconds", "cpu_seconds", "pairs_per_s")},
               "judged": int(labels["label"].is_not_null().sum()), "drawn": int(labels["label"].is_null().sum()),
               "pairs_per_cpu_s": round(summary["scored"] / summary["cpu_seconds"], 1) if summary["cpu_seconds"] else None}
    write_json_atomic(marker, {"identity": identity, "summary": summary})
    return labels, summary


def _read_labels(folder: Path) -> pl.DataFrame:
    """The scored pairs, every one with a finite teacher score (a pair the teacher cannot score is refused)."""
    scored = pl.read_parquet(folder / SCORES_FILE).rename({"score": "teacher"}).drop("experts")
    bad = scored.filter(pl.col("teacher").is_null() | ~pl.col("teacher").is_finite())
    if bad.height:
        row = bad.row(0, named=True)
        raise HetmoeError(f"{folder / SCORES_FILE}: the teacher gave {bad.height} pairs no score (e.g. query "
                          f"{row['query_id']!r}, item {row['item_id']!r}); the teacher's stores must cover the dataset")
    return scored
