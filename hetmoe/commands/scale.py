"""``hetmoe score``: bulk-label a pairs file with a trained model (``embed --engine ray`` lives in :mod:`hetmoe.commands.store`)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hetmoe.commands.options import (ADDRESS, CPUS_PER_WORKER, ENGINE, GPUS_PER_WORKER, MODEL, MODEL_DATA, RAY_WORKERS,
                                     example)
from hetmoe.errors import HetmoeError
from hetmoe.scale.session import PoolSpec

SCORES_FILE = "scores.parquet"


def pool_spec(address: str | None, workers: int | None, gpus_per_worker: float, cpus_per_worker: float) -> PoolSpec:
    """The Ray pool the command-line options ask for (checked)."""
    return PoolSpec(workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, address=address)


def register(app: typer.Typer) -> None:
    @app.command("score", epilog=example("hetmoe score --model stores/model --pairs pairs.parquet --out scored",
                                         "hetmoe score --model stores/model --pairs pairs.parquet --out scored "
                                         "--engine ray --ray-workers 8"))
    def score_cmd(
        model: Path = MODEL,
        pairs: Path = typer.Option(..., "--pairs", help="Parquet: item_id, and query_id or query (text); market (needed without query_id)."),
        out: Path = typer.Option(..., "--out", help=f"Output folder: OUT/{SCORES_FILE} (the input columns + score + "
                                 f"experts), its parts in OUT/{SCORES_FILE}.parts/."),
        engine: str = ENGINE,
        data: Path = MODEL_DATA,
        block_pairs: int = typer.Option(50_000, "--block-pairs", help="Pairs per output part (whole queries): the unit of resume and of work."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Discard parts left by a run with another model, pairs file or block size."),
        address: str = ADDRESS,
        ray_workers: int = RAY_WORKERS,
        gpus_per_worker: float = GPUS_PER_WORKER,
        cpus_per_worker: float = CPUS_PER_WORKER,
    ) -> None:
        """Score every (query, item) pair of a file: route all queries, encode them per routed expert in batches, score
        with the head. Unknown ids and markets get a null score and are counted in one line; resumable (run again)."""
        from hetmoe.scale.score import score_pairs

        if out.is_file():
            raise HetmoeError(f"--out {out} is a file; --out is a folder, the scores go to {out / SCORES_FILE}")
        pool = pool_spec(address, ray_workers, gpus_per_worker, cpus_per_worker)
        summary = score_pairs(model, pairs, out / SCORES_FILE, engine, pool, data, block_pairs, overwrite)
        typer.echo(json.dumps(summary))
