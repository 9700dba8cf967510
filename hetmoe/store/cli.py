"""``hetmoe embed`` and ``hetmoe index``: thin wrappers over :mod:`hetmoe.store.embed` and :mod:`hetmoe.store.index`."""
from __future__ import annotations

import json
from pathlib import Path

import typer

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
    ) -> None:
        """Embed a dataset's items and queries with one expert; resumable (run again after a kill) and shardable.
        A lexical expert (backend "lexical") is instead fitted on the items: BM25, char n-grams, token statistics."""
        from hetmoe.experts.card import get_card
        from hetmoe.store.embed import embed_dataset, parse_shard

        card = get_card(expert, cards)
        if card.backend == "lexical":  # fitted on the catalog, not encoded chunk by chunk
            from hetmoe.errors import HetmoeError
            from hetmoe.lexical.store import fit_lexical_store

            if shard is not None or chunk_size is not None:
                raise HetmoeError(f"expert {expert!r} is lexical (one fit over the catalog): drop --shard and --chunk-size")
            summary = fit_lexical_store(data, store, name=card.name, overwrite=overwrite, card=card, progress=True)
            typer.echo(json.dumps(summary))
            return
        parsed = parse_shard(shard)
        summary = embed_dataset(data, card, store, shard=parsed, overwrite=overwrite, chunk_size=chunk_size)
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
    ) -> None:
        """Build a FAISS index over an expert's item vectors; approximate kinds are tuned to a recall@10 target against
        exact search on a sample of the expert's query vectors, and print the recall of held-out sample queries."""
        from hetmoe.store.index import build_index

        typer.echo(json.dumps(build_index(store, expert, kind, target_recall=target_recall)))
