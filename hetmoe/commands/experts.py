"""``hetmoe experts`` (list the cards, check that their models load and encode here, add a card for your own model)
and ``hetmoe tune`` (LoRA-tune a sentence-transformers expert into a new card)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from hetmoe.commands.options import CARDS, DATA, JSON, SPLIT, example, experts_option, group, with_options
from hetmoe.commands.training import train_options, train_params
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import CARDS_ENV, MODEL_FREE, ExpertCard
from hetmoe.experts.train_options import TuneOptions

SAMPLE = ["cordless drill 18v", "lámpara de techo LED", "kemeja batik pria lengan panjang"]


def _check_lexical(card: ExpertCard) -> dict[str, object]:
    """A model-free card has nothing to load: fit it on the sample texts and score each query against its own
    text and the others, so the check still shows it matches what it should."""
    import numpy as np

    from hetmoe.lexical.model import LexicalModel

    began = time.perf_counter()
    model = LexicalModel.fit([str(i) for i in range(len(SAMPLE))], SAMPLE, None, ["check"] * len(SAMPLE))
    rows = np.tile(np.arange(len(SAMPLE)), len(SAMPLE))
    groups = np.repeat(np.arange(len(SAMPLE)), len(SAMPLE))
    feats = model.features(SAMPLE, rows, groups)
    first = feats[:, 0].reshape(len(SAMPLE), len(SAMPLE))  # feature 0 of each (query, item) pair
    best = bool((first.argmax(1) == np.arange(len(SAMPLE))).all())
    return {"expert": card.name, "hash": card.hash, "backend": card.backend, "features": len(model.feature_names),
            "fit_seconds": round(time.perf_counter() - began, 3), "first_feature": model.feature_names[0],
            "each_query_matches_its_own_text_best": best}


def probe(card: ExpertCard) -> tuple[dict[str, Any], Any]:
    """Load the card's model and encode the sample texts as queries and documents; vectors that are not finite or
    are zero fail here, naming the expert (a model that loads is not yet a model that embeds)."""
    import numpy as np

    from hetmoe.experts.registry import build_encoder

    began = time.perf_counter()
    encoder = build_encoder(card)
    loaded = time.perf_counter() - began
    queries, docs = encoder.encode(SAMPLE, "query"), encoder.encode(SAMPLE, "document")
    norms = np.linalg.norm(np.vstack([queries, docs]), axis=1)
    if not np.isfinite(norms).all() or (norms == 0).any():
        raise HetmoeError(f"expert {card.name!r}: the model returns non-finite or zero vectors for the probe texts; "
                          "check its dtype (float16 overflows in some models: use bfloat16 or float32) and pooling")
    cosines = [round(float(q @ d) / float(np.linalg.norm(q) * np.linalg.norm(d)), 4) for q, d in zip(queries, docs)]
    return {"expert": card.name, "hash": card.hash, "dim": encoder.dim, "load_seconds": round(loaded, 3),
            "query_doc_cosine": cosines}, encoder


def _written_model(model: str, cards_file: Path) -> tuple[str, str]:
    """(the model the card loads now, the model string written to the cards file): an existing path is written
    relative to the cards file when it lies beside or under it, else absolute; anything else is a hub id."""
    path = Path(model).expanduser()
    if not path.exists():
        return model, model
    folder = cards_file.expanduser().resolve().parent
    absolute = path.resolve()
    relative = os.path.relpath(absolute, folder)
    return str(absolute), (f"./{relative}" if not relative.startswith("..") else str(absolute))


def add_expert(name: str, model: str, cards_file: Path, fields: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Check a new card end to end (its model loads and encodes) and append it, with the measured dim, to the file."""
    from hetmoe.experts.cardfile import add_card, check_can_add

    check_can_add(cards_file, name, replace=overwrite)
    loaded, written = _written_model(model, cards_file)
    card = ExpertCard(name=name, model=loaded, **{k: v for k, v in fields.items() if v is not None})
    result, _ = probe(card)
    add_card(cards_file, replace(card, dim=result["dim"]), replace=overwrite, model=written)
    return {**result, "cards": str(cards_file), "model": written}


def register(app: typer.Typer) -> None:
    experts = group("Expert cards: list them, check that their models load and encode, add your own model.")
    app.add_typer(experts, name="experts")

    @experts.command("list", epilog=example("hetmoe experts list", "hetmoe experts list --cards my-cards.toml --json"))
    def list_cmd(cards: Path = CARDS, as_json: bool = JSON) -> None:
        """Every card (packaged and yours) with its backend, dim, dtype, identity hash and whether it is a default."""
        from rich.console import Console
        from rich.table import Table

        from hetmoe.experts.card import default_experts, load_cards

        declared, defaults = load_cards(cards), default_experts(cards)
        if as_json:
            described = {n: {**c.to_dict(), "hash": c.hash} for n, c in declared.items()}
            typer.echo(json.dumps({"defaults": defaults, "cards": described}))
            return
        table = Table("expert", "backend", "dim", "dtype", "device", "default")
        table.add_column("hash", no_wrap=True)
        table.add_column("model", overflow="fold")
        for name, card in declared.items():
            table.add_row(name, card.backend, str(card.dim or "?"), card.dtype, card.device,
                          "yes" if name in defaults else "", card.hash, card.model)
        Console(width=max(Console().width, 140)).print(table)

    @experts.command("check", epilog=example(
        "hetmoe experts check", "hetmoe experts check minilm-int8 --cards my-cards.toml --data data/homedepot"))
    def check_cmd(
        names: list[str] = typer.Argument(None, help="Card names (default: the default set)."),
        cards: Path = CARDS,
        data: Path = typer.Option(None, "--data", help="Dataset folder: runtime cards also report the raw-cosine "
                                  "AUC change on its --split, and their cosines use a sample of its texts."),
        split: str = SPLIT,
        sample: int = typer.Option(500, "--sample", help="Dataset texts for the cosine agreement (with --data)."),
    ) -> None:
        """Load each expert and encode a few texts; a missing model fails with the fix in one line. A card with
        runtime "onnx" or "onnx-int8" is also compared with its float32 torch twin (mean / min cosine; AUC change with
        --data) and judged safe to interchange or not."""
        from hetmoe.experts.agreement import check_runtime, data_and_texts
        from hetmoe.experts.card import default_experts, get_card
        from hetmoe.pipeline.run import report_split

        dataset, texts = data_and_texts(data, sample)
        for name in names or default_experts(cards):
            card = get_card(name, cards)
            if card.backend in MODEL_FREE:
                typer.echo(json.dumps(_check_lexical(card)))
                continue
            report, encoder = probe(card)
            report["runtime"] = card.runtime
            if card.runtime != "torch":
                chosen = report_split(dataset, split) if dataset is not None else "valid"
                report["agreement"] = check_runtime(card, encoder, texts, dataset, chosen)
            typer.echo(json.dumps(report))

    @experts.command("export", epilog=example(
        "hetmoe experts export minilm --cards-out my-cards.toml",
        "hetmoe experts check minilm-int8 --cards my-cards.toml --data data/homedepot"))
    def export_cmd(
        name: str = typer.Argument(..., help="A sentence-transformers card with runtime \"torch\"."),
        cards: Path = CARDS,
        out: Path = typer.Option(None, "--out", help="Folder for the graphs (default: <model>/onnx beside local "
                                 "weights; ~/.cache/hetmoe/onnx/<name>-<hash> or $HETMOE_CACHE for packaged and hub "
                                 "models)."),
        cards_out: Path = typer.Option(None, "--cards-out", help="Also add the two new cards to this TOML file."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Export again over existing files; replace "
                                       "same-name cards in --cards-out."),
    ) -> None:
        """Export the expert's model to ONNX (float32) plus its dynamically quantized int8 copy, check both against
        torch, and print the cards that run them (<name>-onnx, <name>-int8: runtime, file and its sha256)."""
        from hetmoe.experts.card import get_card
        from hetmoe.experts.cardfile import add_card, card_table, check_can_add
        from hetmoe.experts.export import export_expert

        card = get_card(name, cards)
        for suffix in ("onnx", "int8") if cards_out is not None else ():
            try:
                check_can_add(cards_out, f"{name}-{suffix}", overwrite)
            except HetmoeError:
                raise HetmoeError(f"{cards_out} already declares expert '{name}-{suffix}'; pass --overwrite to "
                                  "replace it") from None
        report = export_expert(card, out, overwrite)
        new_cards = report.pop("cards")
        for new in new_cards.values() if cards_out is not None else ():
            add_card(cards_out, new, overwrite)
        report["cards_toml"] = "\n".join(card_table(c) for c in new_cards.values())
        report["cards_out"] = str(cards_out) if cards_out is not None else None
        typer.echo(json.dumps(report))

    @experts.command("add", epilog=example(
        "hetmoe experts add bge --model models/bge-m3 --pooling cls --cards my-cards.toml",
        "hetmoe experts add qwen3 --model Qwen/Qwen3-Embedding-0.6B --pooling lasttoken --dtype bfloat16 "
        "--cards my-cards.toml"))
    def add_cmd(
        name: str = typer.Argument(..., help="The new card's name (letters, digits, '_' and '-')."),
        model: str = typer.Option(..., "--model", help="A local model folder (sentence-transformers or plain "
                                  "Hugging Face) or a hub id found in the local Hugging Face cache."),
        cards: Path = CARDS,
        backend: str = typer.Option("sentence-transformers", "--backend", help="The card's backend."),
        pooling: str = typer.Option(None, "--pooling", help="cls, mean, max, lasttoken, ... (needed for a plain "
                                    "Hugging Face folder; lasttoken for decoder LLMs)."),
        max_length: int = typer.Option(None, "--max-length", min=1, help="Tokens kept per text."),
        query_prompt: str = typer.Option(None, "--query-prompt", help="Literal text put before every query."),
        document_prompt: str = typer.Option(None, "--document-prompt", help="Literal text put before every item."),
        dtype: str = typer.Option("auto", "--dtype", help="Precision on CUDA: auto (bfloat16 where the GPU has it, "
                                  "else float32), bfloat16, float16, float32. CPU runs float32."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a card of that name in the file."),
    ) -> None:
        """Write a checked card for your own model: it is loaded, encodes probe texts, and its dim is recorded; the
        card is appended to --cards (created if absent), which every command then reads beside the packaged cards."""
        from hetmoe.experts.card import user_cards_path

        target = user_cards_path(cards)
        if target is None:
            raise HetmoeError(f"name the cards file to write with --cards FILE (or set ${CARDS_ENV})")
        fields = {"backend": backend, "pooling": pooling, "max_length": max_length, "query_prompt": query_prompt,
                  "document_prompt": document_prompt, "dtype": dtype, "device": device}
        typer.echo(json.dumps(add_expert(name, model, target, fields, overwrite)))

    @app.command("tune", epilog=example("hetmoe tune -e minilm --data data/D --cards-out my-cards.toml"))
    @with_options(train_params(TuneOptions()))
    def tune_cmd(
        experts: list[str] = experts_option("none: name the card to tune"),
        data: Path = DATA,
        cards: Path = CARDS,
        name: str = typer.Option(None, "--name", help="New card's name (default: <expert>-tuned)."),
        out: Path = typer.Option(None, "--out", help="Folder for the merged model, card.toml and tune.json "
                                 "(default: stores/tuned/<name>-<fingerprint12>)."),
        cards_out: Path = typer.Option(None, "--cards-out", help="Also add the new card to this TOML file "
                                       "(created if absent), e.g. to embed several tuned experts from one file."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder / same-name card."),
        **training: Any,
    ) -> None:
        """LoRA-tune a sentence-transformers expert on the train judgments (CoSENT loss on graded labels, early
        stopping on held-out train queries) and write a new expert card; prints the report JSON and the embed
        command."""
        from hetmoe.experts.card import get_card
        from hetmoe.experts.openmp import short_spin

        if not experts or len(experts) != 1:
            raise HetmoeError(f"-e: name exactly one card to tune (got {', '.join(experts or []) or 'none'})")
        with short_spin():  # tune imports torch: its libgomp must load with short spin-waits, as the backend's does
            from hetmoe.experts.tune import tune_expert

        report = tune_expert(get_card(experts[0], cards), data, out, cards_out, train_options(training, name), overwrite)
        typer.echo(json.dumps(report))
