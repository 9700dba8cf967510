"""``hetmoe score``: label a pairs file with a trained model, in this process or on a Ray actor pool.

The paper's three stages, per block of whole queries: route every query in bulk (one router call), group the queries
by routed expert and encode each expert's queries in one batch (judged queries of the model's own dataset reuse their
stored vectors instead, as ``eval`` does), then score every pair of the block in one head call. All of it is the online
:class:`~hetmoe.online.scorer.Scorer`'s own ``score_batch``, so bulk scores are the served scores, whatever the head.
Each block becomes one output part (see :mod:`hetmoe.scale.parts`): a killed run resumes from its finished parts, and
Ray actors (each loading the Scorer once) write parts exactly as the local loop does.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from hetmoe.errors import HetmoeError
from hetmoe.scale.pairs import HELPERS, ITEM, KEY, MKT, QUERY_ID, STORED, TEXT, fingerprint, plan_blocks, read_pairs, resolve
from hetmoe.scale.parts import block_identity, check_out, gather, model_fingerprint, open_parts, parts_dir, stats_file, write_part
from hetmoe.scale.session import PoolSpec, map_units, pool_size, ray_session

if TYPE_CHECKING:
    import pyarrow as pa

    from hetmoe.moe.infer import MoEModel

log = logging.getLogger(__name__)
BLOCK_PAIRS = 50_000


def _needed(model: MoEModel) -> list[str]:
    """Experts whose query vectors scoring may need: the model's, and the router's."""
    return list(dict.fromkeys([*model.experts, *([model.router_expert] if model.router_expert else [])]))


class BlockScorer:
    """Scores blocks of resolved pairs with one loaded Scorer (one per process, or per Ray actor)."""

    def __init__(self, model_dir: str, use_stored: bool, encode: bool, encode_cores: int | None = None) -> None:
        """``use_stored``: some queries use stored vectors (open the query stores); ``encode``: some are encoded
        (build the encoders now, so that model loads do not count as scoring time)."""
        from hetmoe.online.scorer import Scorer
        from hetmoe.store.zarr_store import open_expert

        self.scorer = Scorer.load(model_dir, with_indexes=False, encode_cores=encode_cores, cache_size=0)
        root = self.scorer.model.store_root
        self.stores = {e: open_expert(root, e).queries for e in _needed(self.scorer.model)} if use_stored else {}
        if encode:
            self.scorer.warm()

    def score(self, block: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, Any]]:
        """The block's input columns plus ``score`` and ``experts`` (null where a pair cannot be scored), and counts."""
        from hetmoe.scale.columns import score_columns

        began, cpu, n = time.perf_counter(), time.process_time(), block.height
        query_ok = block[KEY].is_not_null().to_numpy()
        market_ok = block[MKT].is_in(self.scorer.markets).fill_null(False).to_numpy()
        rows = np.zeros(n, np.int64)
        found, unknown = self.scorer.catalog.rows(block[ITEM].fill_null("").to_numpy())
        item_ok = np.ones(n, dtype=bool)
        item_ok[unknown] = False
        rows[item_ok] = found
        valid = query_ok & market_ok & item_ok
        pairs = block.with_row_index("_pos").filter(pl.Series(valid))
        firsts = [pl.col(TEXT).first(), pl.col(STORED).first()] + ([pl.col(QUERY_ID).first()] if QUERY_ID in block.columns else [])
        queries = pairs.group_by([KEY, MKT], maintain_order=True).agg(*firsts).with_row_index("_g")
        pairs = pairs.join(queries.select(KEY, MKT, "_g"), on=[KEY, MKT], how="left", maintain_order="left")
        scores, experts = np.full(n, np.nan), np.full(n, None, dtype=object)
        if pairs.height:
            texts = queries[TEXT].fill_null(queries[KEY]).to_numpy().astype(object)
            stored_rows = queries[STORED].to_numpy().astype(bool) & bool(self.stores)
            got, names = score_columns(self.scorer, texts, queries[MKT].to_numpy().astype(object),
                                       rows[pairs["_pos"].to_numpy()], pairs["_g"].to_numpy().astype(np.int64),
                                       self._stored(queries, stored_rows), stored_rows)
            at = pairs["_pos"].to_numpy()
            scores[at], experts[at] = got, names[pairs["_g"].to_numpy()]
        out = block.drop([c for c in HELPERS if c in block.columns]).with_columns(
            pl.Series("score", scores, dtype=pl.Float64).fill_nan(None), pl.Series("experts", experts.tolist(), dtype=pl.String))
        bad_market = query_ok & ~market_ok
        stats = {"pairs": n, "scored": int(valid.sum()), "unknown_queries": int((~query_ok).sum()),
                 "unknown_markets": int(bad_market.sum()), "unknown_items": int((query_ok & market_ok & ~item_ok).sum()),
                 "unknown_market_names": sorted({m for m in block[MKT].filter(pl.Series(bad_market)).to_list() if m})[:20],
                 "seconds": round(time.perf_counter() - began, 4), "cpu_seconds": round(time.process_time() - cpu, 4),
                 **block_identity(block)}
        return out, stats

    def _stored(self, queries: pl.DataFrame, stored_rows: np.ndarray) -> dict[str, np.ndarray]:
        """Per needed expert, the stored raw query vectors of the rows ``stored_rows`` marks (zeros elsewhere)."""
        out: dict[str, np.ndarray] = {}
        if not stored_rows.any():
            return out
        ids = queries[QUERY_ID].to_numpy()[stored_rows]
        for expert, store in self.stores.items():
            out[expert] = np.zeros((queries.height, store.dim), np.float32)
            out[expert][stored_rows] = store.get(ids)  # as stored: the encoder's own output
        return out


class ScoreWorker:
    """One Ray actor: loads the Scorer once, then scores blocks and writes each block's part itself."""

    def __init__(self, model_dir: str, use_stored: bool, encode: bool, parts: str, threads: int) -> None:
        self.blocks, self.parts = BlockScorer(model_dir, use_stored, encode, threads), Path(parts)

    def __call__(self, unit: pa.Table) -> dict[str, list[Any]]:
        began, block = time.time(), pl.from_arrow(unit)
        assert isinstance(block, pl.DataFrame)
        index = int(block["_block"][0])
        if not stats_file(self.parts, index).exists():  # a retry of a block finished meanwhile writes nothing
            write_part(self.parts, index, *self.blocks.score(block))
        return {"block": [index], "pairs": [block.height], "began": [began], "ended": [time.time()]}


def _queries(data_dir: Path | None) -> pl.DataFrame | None:
    path = data_dir / "queries.parquet" if data_dir else None
    if path is None or not path.is_file():
        return None
    return pl.read_parquet(path, columns=[QUERY_ID, "text", "market"])


def _stored_ids(model: MoEModel, data_dir: Path | None) -> np.ndarray | None:
    """Query ids with stored vectors for every needed expert, when their stores were embedded from ``data_dir``."""
    from hetmoe.store.layout import expert_dir, read_manifest
    from hetmoe.store.zarr_store import open_expert

    root = model.store_root
    if data_dir is None or root is None:
        return None
    ids: np.ndarray | None = None
    for expert in _needed(model):
        manifest = read_manifest(expert_dir(root, expert)) or {}
        if Path(manifest.get("data", "")).resolve() != data_dir.resolve():
            return None
        have = open_expert(root, expert).queries.ids
        ids = have if ids is None else np.intersect1d(ids, have)
    return ids


def known_query_vectors(scorer: Any, data_dir: Path, query_ids: np.ndarray) -> list[dict[str, np.ndarray]] | None:
    """Per query id, the stored raw vectors of every expert scoring may need, when the model's stores were embedded
    from ``data_dir`` and hold every id (else None: the queries are encoded)."""
    from hetmoe.store.zarr_store import open_expert

    stored = _stored_ids(scorer.model, data_dir)
    if stored is None or not np.isin(query_ids, stored).all():
        return None
    vectors = {e: open_expert(scorer.model.store_root, e).queries.get(query_ids) for e in _needed(scorer.model)}
    return [{e: v[i] for e, v in vectors.items()} for i in range(query_ids.shape[0])]


def score_pairs(model_dir: str | Path, pairs_path: str | Path, out: str | Path, engine: str = "local",
                pool: PoolSpec | None = None, data_dir: str | Path | None = None, block_pairs: int = BLOCK_PAIRS,
                overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Score every row of ``pairs_path`` with the model into ``out`` (Parquet: the input columns, score, experts).

    ``data_dir``: the dataset whose query ids the pairs use (default: the model's); resumable from ``OUT.parts``.
    ``pairs_per_s`` is over ``work_seconds``, the first block's start to the last one's end (model loads excluded);
    ``cpu_seconds``: the CPU time (every thread's) the blocks took to score, what a plan per core is worked from.
    """
    from tqdm import tqdm

    from hetmoe.moe.infer import MoEModel

    if engine not in ("local", "ray"):
        raise HetmoeError(f"--engine {engine!r}: choose local or ray")
    began, model_dir, out = time.perf_counter(), Path(model_dir), Path(out)
    check_out(out, Path(pairs_path))
    model = MoEModel.load(model_dir)
    data = Path(data_dir) if data_dir else (Path(model.config["dataset"]) if model.config.get("dataset") else None)
    stored_ids = _stored_ids(model, data)
    planned = plan_blocks(resolve(read_pairs(pairs_path), _queries(data), stored_ids), block_pairs)
    use_stored = bool(planned[STORED].any())
    encode = bool((planned[KEY].is_not_null() & ~planned[STORED]).any())
    blocks = planned.partition_by("_block", as_dict=True, maintain_order=True)
    parts = parts_dir(out)
    identity = {"model": model_fingerprint(model_dir), "pairs": fingerprint(pairs_path), "block_pairs": block_pairs,
                "data": str(data.resolve()) if data else None}
    done = open_parts(parts, identity, overwrite, {key[0]: frame for key, frame in blocks.items()})
    todo = {key[0]: frame for key, frame in blocks.items() if key[0] not in done}
    if done:
        log.info("%s: resuming, %d of %d blocks already scored", parts, len(blocks) - len(todo), len(blocks))
    workers, start_seconds, window = 0, 0.0, [float("inf"), 0.0]  # first block's start, last block's end
    with tqdm(total=sum(f.height for f in todo.values()), desc=f"score ({engine})", unit="pair",
              disable=not progress or not todo, leave=False) as bar:
        if todo and engine == "local":
            scorer, workers = BlockScorer(str(model_dir), use_stored, encode), 1
            window[0] = time.time()
            for index, frame in todo.items():
                write_part(parts, index, *scorer.score(frame))
                bar.update(frame.height)
            window[1] = time.time()
        elif todo:
            pool = pool or PoolSpec()
            with ray_session(pool.address) as start_seconds:
                workers = min(pool_size(pool), len(todo))
                args = (str(model_dir), use_stored, encode, str(parts), pool.threads)
                for row in map_units([f.to_arrow() for f in todo.values()], ScoreWorker, args, pool):
                    window = [min(window[0], row["began"]), max(window[1], row["ended"])]
                    bar.update(row["pairs"])
    work = max(window[1] - window[0], 0.0)
    totals = gather(parts, sorted(k[0] for k in blocks), out)
    missing = planned.height - int(totals.get("scored", 0))
    if missing:
        names = ", ".join(totals["unknown_market_names"][:5])
        log.warning("%s: %d of %d pairs have no score (null): %d unknown query ids or texts, %d unknown markets%s, "
                    "%d unknown item ids", out, missing, planned.height, totals.get("unknown_queries", 0),
                    totals.get("unknown_markets", 0), f" ({names})" if names else "", totals.get("unknown_items", 0))
    scored_now = sum(f.height for f in todo.values())
    return {"out": str(out), "engine": engine, "workers": workers, "pairs": planned.height,
            "scored": int(totals.get("scored", 0)), "blocks": len(blocks), "blocks_resumed": len(blocks) - len(todo),
            "unknown": {k: totals.get(k, 0) for k in ("unknown_queries", "unknown_markets", "unknown_items")},
            "stored_query_vectors": use_stored, "seconds": round(time.perf_counter() - began, 3),
            "work_seconds": round(work, 3), "cpu_seconds": round(float(totals.get("cpu_seconds", 0.0)), 3),
            "ray_start_seconds": round(start_seconds, 3),
            "pairs_per_s": round(scored_now / work, 1) if scored_now and work > 0 else None}
