"""``hetmoe score``: bulk-label a pairs file with a trained model (``embed --engine ray`` lives in :mod:`hetmoe.commands.store`)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hetmoe.scale.session import PoolSpec

ADDRESS_HELP = "--engine ray: Ray cluster to join (e.g. auto, ray://HEAD:10001); default: start a local Ray."
WORKERS_HELP = "--engine ray: actors (default: the cluster's CPUs / --cpus-per-worker, or GPUs / --gpus-per-worker)."


def pool_spec(address: str | None, workers: int | None, gpus_per_worker: float, cpus_per_worker: float) -> PoolSpec:
    """The Ray pool the command-line options ask for (checked)."""
    return PoolSpec(workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, address=address)


def register(app: typer.Typer) -> None:
    @app.command("score")
    def score_cmd(
        model: Path = typer.Option(..., "--model", help="Model folder written by 'hetmoe fit-head' or 'hetmoe run' (OUT/model)."),
        pairs: Path = typer.Option(..., "--pairs", help="Parquet: item_id, and query_id or query (text); market (needed without query_id)."),
        out: Path = typer.Option(..., "--out", help="Output Parquet: the input columns + score + experts; parts in OUT.parts/."),
        engine: str = typer.Option("local", "--engine", help="local: this process | ray: an actor pool, each loading the model once."),
        data: Path = typer.Option(None, "--data", help="Dataset the query ids belong to (default: the model's; its judged queries reuse stored vectors)."),
        block_pairs: int = typer.Option(50_000, "--block-pairs", help="Pairs per output part (whole queries): the unit of resume and of work."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Discard parts left by a run with another model, pairs file or block size."),
        address: str = typer.Option(None, "--address", help=ADDRESS_HELP),
        workers: int = typer.Option(None, "--workers", help=WORKERS_HELP),
        gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="--engine ray: GPUs each actor reserves (0: CPU)."),
        cpus_per_worker: float = typer.Option(1.0, "--cpus-per-worker", help="--engine ray: CPUs each actor reserves (and its encoders' threads)."),
    ) -> None:
        """Score every (query, item) pair of a file: route all queries, encode them per routed expert in batches, score
        with the head. Unknown ids and markets get a null score and are counted in one line; resumable (run again)."""
        from hetmoe.scale.score import score_pairs

        pool = pool_spec(address, workers, gpus_per_worker, cpus_per_worker)
        summary = score_pairs(model, pairs, out, engine, pool, data, block_pairs, overwrite)
        typer.echo(json.dumps(summary))
