"""``hetmoe embed`` and ``hetmoe index``: thin wrappers over :mod:`hetmoe.store.embed` and :mod:`hetmoe.store.index`."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hetmoe.errors import HetmoeError
from hetmoe.store.index import TARGET_RECALL
from hetmoe.store.layout import DEFAULT_STORE


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed_cmd(
        expert: str = typer.Option(..., "--expert", "-e", help="Expert card name (see configs/experts.toml)."),
        data: Path = typer.Option(..., "--data", help="Dataset folder (items/queries/judgments Parquet)."),
        store: Path = typer.Option(DEFAULT_STORE, "--store", help="Store root; writes STORE/<expert>/{items,queries}.zarr."),
        shard: str = typer.Option(None, "--shard", help="i/N: write only this worker's share of chunks (N workers fill one store)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild a store made by another card, input or chunk size."),
        cards: Path = typer.Option(None, "--cards", help="Expert cards TOML (default: configs/experts.toml or $HETMOE_CARDS)."),
        chunk_size: int = typer.Option(None, "--chunk-size", help="Texts per chunk (the unit of resume and sharding); default max(4096, 16 batches)."),
        engine: str = typer.Option("local", "--engine", help="local: this process | ray: a Ray Data actor pool (one model per actor), same store."),
        address: str = typer.Option(None, "--address", help="--engine ray: Ray cluster to join (e.g. auto, ray://HEAD:10001); default: start a local Ray."),
        workers: int = typer.Option(None, "--workers", help="--engine ray: actors (default: the cluster's CPUs / --cpus-per-worker, or GPUs / --gpus-per-worker)."),
        gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="--engine ray: GPUs each actor reserves (0: CPU)."),
        cpus_per_worker: float = typer.Option(1.0, "--cpus-per-worker", help="--engine ray: CPUs each actor reserves (and its model's threads)."),
        wait: bool = typer.Option(True, "--wait/--no-wait", help="If another embed is writing this expert's store (same shard): wait for it, then resume (default), or fail at once naming its pid."),
        append: bool = typer.Option(False, "--append", help="Add the dataset's new items and queries to a finished store, encoding only them; every id the store holds must keep its text (else use --overwrite). Resumable."),
    ) -> None:
        """Embed a dataset's items and queries with one expert; resumable (run again after a kill) and shardable.
        With --append, a finished store grows by the rows the dataset adds (only those are encoded).
        A lexical expert (backend "lexical") is instead fitted on the items: BM25, char n-grams, token statistics."""
        from hetmoe.experts.card import get_card
        from hetmoe.store.embed import embed_dataset, parse_shard

        parsed, card = parse_shard(shard), get_card(expert, cards)
        if card.backend == "lexical":  # fitted on the catalog, not encoded chunk by chunk
            from hetmoe.lexical.store import fit_lexical_store

            if parsed is not None or chunk_size is not None or engine != "local" or (append and overwrite):
                raise HetmoeError(f"expert {expert!r} is lexical (one fit over the catalog, grown by --append): drop "
                                  "--shard, --chunk-size and --engine, and pass one of --append and --overwrite")
            if append:
                from hetmoe.lexical.store import append_lexical_store

                typer.echo(json.dumps(append_lexical_store(data, store, name=card.name)))
                return
            typer.echo(json.dumps(fit_lexical_store(data, store, name=card.name, overwrite=overwrite, card=card, progress=True)))
            return
        if append:
            from hetmoe.store.append import append_dataset

            if overwrite or parsed is not None or engine != "local":
                raise HetmoeError("--append adds rows to a store in one local process: drop --overwrite, --shard and --engine")
            summary = append_dataset(data, card, store, chunk_size=chunk_size, wait=wait)
        elif engine == "ray":
            from hetmoe.commands.scale import pool_spec
            from hetmoe.scale.ray_embed import embed_dataset_ray

            if parsed is not None:
                raise HetmoeError("--shard is for hand-launched local workers; --engine ray spreads the chunks itself, drop --shard")
            pool = pool_spec(address, workers, gpus_per_worker, cpus_per_worker)
            summary = embed_dataset_ray(data, card, store, pool, overwrite=overwrite, chunk_size=chunk_size)
        elif engine == "local":
            summary = embed_dataset(data, card, store, shard=parsed, overwrite=overwrite, chunk_size=chunk_size,
                                    wait=wait)
        else:
            raise HetmoeError(f"--engine {engine!r}: choose local or ray")
        typer.echo(json.dumps(summary))

    @app.command("index")
    def index_cmd(
        expert: str = typer.Option(..., "--expert", "-e", help="Expert whose item vectors to index."),
        store: Path = typer.Option(DEFAULT_STORE, "--store", help="Store root holding STORE/<expert>/items.zarr."),
        kind: str = typer.Option("auto", "--kind", help="auto (exact up to 50k items, HNSW above) | flat | hnsw | ivf-pq."),
        target_recall: float = typer.Option(
            TARGET_RECALL, "--target-recall",
            help="Approximate kinds raise efSearch / nprobe until recall@10 vs exact reaches this.",
        ),
        append: bool = typer.Option(False, "--append", help="Add the items 'hetmoe embed --append' added since the index was built, instead of rebuilding it."),
    ) -> None:
        """Build a FAISS index over an expert's item vectors; approximate kinds are tuned to a recall@10 target against
        exact search on a sample of the expert's query vectors, and print the recall of held-out sample queries."""
        if append:
            from hetmoe.store.index_append import append_index

            typer.echo(json.dumps(append_index(store, expert, kind, target_recall=target_recall)))
            return
        from hetmoe.store.index import build_index

        typer.echo(json.dumps(build_index(store, expert, kind, target_recall=target_recall)))

    @app.command("neighbours")
    def neighbours_cmd(
        expert: str = typer.Option(..., "--expert", "-e", help="Expert whose items to index per market."),
        data: Path = typer.Option(..., "--data", help="Dataset folder: its items and their markets."),
        store: Path = typer.Option(DEFAULT_STORE, "--store", help="Store root holding STORE/<expert>/items.zarr."),
    ) -> None:
        """Index each market's items of an expert and compute their neighbourhoods (reference rows and item
        neighbourhoods read them); kept in STORE/<expert>/neighbours/. Done on first use otherwise; after 'hetmoe
        embed --append' only the new items and the rows they change are computed.

        Example: hetmoe neighbours -e wordllama --data data/demo --store stores"""
        from hetmoe.data.validate import check_dataset
        from hetmoe.pairs.catalog import dataset_catalog
        from hetmoe.pairs.context import FeatureContext

        catalog, _ = dataset_catalog(check_dataset(data), store, [expert])
        context = FeatureContext(catalog, store)
        context.prepare([expert], {"neighbours"})
        typer.echo(json.dumps(context.index_summary()))
