"""``hetmoe embed`` and ``hetmoe index``: thin wrappers over :mod:`hetmoe.store.embed` and :mod:`hetmoe.store.index`."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hetmoe.commands.options import (ADDRESS, CARDS, CPUS_PER_WORKER, DATA, ENGINE, GPUS_PER_WORKER, RAY_WORKERS,
                                     STORE, example, experts_option)

DEFAULT_SET = experts_option("the cards' default set and the router expert")
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard
from hetmoe.store.index import TARGET_RECALL


def default_set(experts: list[str] | None, cards: Path | None) -> list[str]:
    """``-e`` as given, else the cards' default set and the router expert (what a fit reads)."""
    from hetmoe.experts.card import default_experts, default_router_expert

    return experts or list(dict.fromkeys([*default_experts(cards), default_router_expert(cards)]))


def _embed_one(card: ExpertCard, data: object, store: Path, shard: tuple[int, int] | None, overwrite: bool,
               chunk_size: int | None, engine: str, pool: object, wait: bool, append: bool) -> dict:
    """One expert's store: encoded (locally, sharded, on Ray, or appended) or, for a lexical card, fitted."""
    if card.backend == "lexical":  # fitted on the catalog, not encoded chunk by chunk
        from hetmoe.lexical.store import append_lexical_store, fit_lexical_store

        if shard is not None or chunk_size is not None or engine != "local" or (append and overwrite):
            raise HetmoeError(f"expert {card.name!r} is lexical (one fit over the catalog, grown by --append): drop "
                              "--shard, --chunk-size and --engine, and pass one of --append and --overwrite")
        if append:
            return append_lexical_store(data, store, name=card.name)
        return fit_lexical_store(data, store, name=card.name, overwrite=overwrite, card=card, progress=True)
    if append:
        from hetmoe.pairs.catalog import index_markets
        from hetmoe.store.append import append_dataset
        from hetmoe.store.layout import expert_dir
        from hetmoe.store.neighbourhood import NEIGHBOURS_DIR

        if overwrite or shard is not None or engine != "local":
            raise HetmoeError("--append adds rows to a store in one local process: drop --overwrite, --shard and --engine")
        summary = append_dataset(data, card, store, chunk_size=chunk_size, wait=wait)
        if (expert_dir(store, card.name) / NEIGHBOURS_DIR).is_dir():  # its market indexes grow by the same items
            summary["neighbours"] = index_markets(data, store, [card.name])
        return summary
    if engine == "ray":
        from hetmoe.scale.ray_embed import embed_dataset_ray

        if shard is not None:
            raise HetmoeError("--shard is for hand-launched local workers; --engine ray spreads the chunks itself, drop --shard")
        return embed_dataset_ray(data, card, store, pool, overwrite=overwrite, chunk_size=chunk_size)
    from hetmoe.store.embed import embed_dataset

    return embed_dataset(data, card, store, shard=shard, overwrite=overwrite, chunk_size=chunk_size, wait=wait)


def register(app: typer.Typer) -> None:
    @app.command("embed", epilog=example("hetmoe embed -e minilm,e5,static --data data/D --store stores",
                                         "hetmoe embed -e lexical --data data/D --store stores"))
    def embed_cmd(
        experts: list[str] = DEFAULT_SET,
        data: Path = DATA,
        store: Path = STORE,
        cards: Path = CARDS,
        shard: str = typer.Option(None, "--shard", help="i/N: write only this worker's share of chunks (N workers fill one store)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild a store made by another card, input or chunk size."),
        chunk_size: int = typer.Option(None, "--chunk-size", help="Texts per chunk (the unit of resume and sharding); default max(4096, 16 batches)."),
        engine: str = ENGINE,
        address: str = ADDRESS,
        ray_workers: int = RAY_WORKERS,
        gpus_per_worker: float = GPUS_PER_WORKER,
        cpus_per_worker: float = CPUS_PER_WORKER,
        wait: bool = typer.Option(True, "--wait/--no-wait", help="If another embed is writing this expert's store (same shard): wait for it, then resume (default), or fail at once naming its pid."),
        append: bool = typer.Option(False, "--append", help="Add the dataset's new items and queries to a finished store, encoding only them; every id the store holds must keep its text (else use --overwrite). Resumable."),
    ) -> None:
        """Embed a dataset's items and queries with each expert in turn (default: the cards' default set and the
        router expert); resumable (run again after a kill) and shardable.
        With --append, a finished store grows by the rows the dataset adds (only those are encoded).
        A lexical expert (backend "lexical") is instead fitted on the items: BM25, char n-grams, token statistics."""
        from hetmoe.commands.scale import pool_spec
        from hetmoe.data.validate import check_dataset
        from hetmoe.experts.card import get_card
        from hetmoe.store.embed import parse_shard

        if engine not in ("local", "ray"):
            raise HetmoeError(f"--engine {engine!r}: choose local or ray")
        parsed = parse_shard(shard)
        chosen = [get_card(name, cards) for name in default_set(experts, cards)]  # every card checked before work
        pool = pool_spec(address, ray_workers, gpus_per_worker, cpus_per_worker) if engine == "ray" else None
        dataset = check_dataset(data)
        for card in chosen:
            typer.echo(json.dumps(_embed_one(card, dataset, store, parsed, overwrite, chunk_size, engine, pool, wait,
                                             append)))

    @app.command("index", epilog=example("hetmoe index -e minilm,e5 --store stores", "hetmoe index -e static --kind hnsw"))
    def index_cmd(
        experts: list[str] = DEFAULT_SET,
        store: Path = STORE,
        cards: Path = CARDS,
        kind: str = typer.Option("auto", "--kind", help="auto (exact up to 50k items, HNSW above) | flat | hnsw | ivf-pq."),
        target_recall: float = typer.Option(
            TARGET_RECALL, "--target-recall",
            help="Approximate kinds raise efSearch / nprobe until recall@10 vs exact reaches this.",
        ),
        append: bool = typer.Option(False, "--append", help="Add the items 'hetmoe embed --append' added since the index was built, instead of rebuilding it."),
    ) -> None:
        """Build a FAISS index over each expert's item vectors (default: the cards' default set and the router
        expert); approximate kinds are tuned to a recall@10 target against exact search on a sample of the expert's
        query vectors, and print the recall of held-out sample queries."""
        from hetmoe.experts.card import MODEL_FREE, get_card
        from hetmoe.store.index import build_index
        from hetmoe.store.index_append import append_index

        names = default_set(experts, cards)
        free = [n for n in names if get_card(n, cards).backend in MODEL_FREE]
        if free:
            raise HetmoeError(f"-e {', '.join(free)}: a lexical expert has no vectors to index; drop it from -e")
        for name in names:
            result = (append_index(store, name, kind, target_recall=target_recall) if append
                      else build_index(store, name, kind, target_recall=target_recall))
            typer.echo(json.dumps(result))

    @app.command("neighbours", epilog=example("hetmoe neighbours -e wordllama --data data/demo --store stores"))
    def neighbours_cmd(
        experts: list[str] = DEFAULT_SET,
        data: Path = DATA,
        store: Path = STORE,
        cards: Path = CARDS,
    ) -> None:
        """Index each market's items of every expert and compute their neighbourhoods (reference rows and item
        neighbourhoods read them); kept in STORE/<expert>/neighbours/. Done on first use otherwise; 'hetmoe embed
        --append' grows an expert's indexes by the new items (and the rows they enter) itself."""
        from hetmoe.data.validate import check_dataset
        from hetmoe.pairs.catalog import index_markets

        typer.echo(json.dumps(index_markets(check_dataset(data), store, default_set(experts, cards))))
