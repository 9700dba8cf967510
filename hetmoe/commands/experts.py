"""``hetmoe experts`` (list the declared expert cards, check that their models load and encode here) and ``hetmoe
tune`` (LoRA-tune a sentence-transformers expert into a new card)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from hetmoe.experts.card import MODEL_FREE, ExpertCard

CARDS_OPTION = typer.Option(None, "--cards", help="Expert cards TOML (default: configs/experts.toml or $HETMOE_CARDS).")
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


def register(app: typer.Typer) -> None:
    experts = typer.Typer(help="Expert cards: list them, check that their models load and encode.",
                          no_args_is_help=True)
    app.add_typer(experts, name="experts")

    @experts.command("list")
    def list_cmd(
        cards: Path = CARDS_OPTION,
        as_json: bool = typer.Option(False, "--json", help="One JSON object instead of a table."),
    ) -> None:
        """Every card with its backend, dim, identity hash and whether it is in the default set."""
        from rich.console import Console
        from rich.table import Table

        from hetmoe.experts.card import default_experts, load_cards

        declared, defaults = load_cards(cards), default_experts(cards)
        if as_json:
            described = {n: {**c.to_dict(), "hash": c.hash} for n, c in declared.items()}
            typer.echo(json.dumps({"defaults": defaults, "cards": described}))
            return
        table = Table("expert", "backend", "dim", "default")
        table.add_column("hash", no_wrap=True)
        table.add_column("model", overflow="fold")
        for name, card in declared.items():
            table.add_row(name, card.backend, str(card.dim or "?"), "yes" if name in defaults else "", card.hash, card.model)
        Console().print(table)

    @experts.command("check")
    def check_cmd(
        names: list[str] = typer.Argument(None, help="Card names (default: the default set)."),
        cards: Path = CARDS_OPTION,
        data: Path = typer.Option(None, "--data", help="Dataset folder: runtime cards also report the raw-cosine "
                                  "AUC change on its --split, and their cosines use a sample of its texts."),
        split: str = typer.Option("valid", "--split", help="Split whose judged pairs give the AUC (with --data)."),
        sample: int = typer.Option(500, "--sample", help="Dataset texts for the cosine agreement (with --data)."),
    ) -> None:
        """Load each expert and encode a few texts; a missing model fails with the fix in one line. A card with
        runtime "onnx" or "onnx-int8" is also compared with its float32 torch twin (mean / min cosine; AUC change with
        --data) and judged safe to interchange or not.

        Example: hetmoe experts check minilm-int8 --cards my-cards.toml --data data/homedepot
        """
        from hetmoe.experts.agreement import check_runtime, data_and_texts
        from hetmoe.experts.card import default_experts, get_card
        from hetmoe.experts.registry import build_encoder

        dataset, texts = data_and_texts(data, sample)
        for name in names or default_experts(cards):
            card = get_card(name, cards)
            if card.backend in MODEL_FREE:
                typer.echo(json.dumps(_check_lexical(card)))
                continue
            began = time.perf_counter()
            encoder = build_encoder(card)
            loaded = time.perf_counter() - began
            queries, docs = encoder.encode(SAMPLE, "query"), encoder.encode(SAMPLE, "document")
            cosines = [round(float(q @ d), 4) for q, d in zip(queries, docs)]
            report = {"expert": name, "hash": card.hash, "dim": encoder.dim, "runtime": card.runtime,
                      "load_seconds": round(loaded, 3), "query_doc_cosine": cosines}
            if card.runtime != "torch":
                report["agreement"] = check_runtime(card, encoder, texts, dataset, split)
            typer.echo(json.dumps(report))

    @experts.command("export")
    def export_cmd(
        name: str = typer.Argument(..., help="A sentence-transformers card with runtime \"torch\"."),
        cards: Path = CARDS_OPTION,
        out: Path = typer.Option(None, "--out", help="Folder for the graphs (default: <model>/onnx beside local "
                                 "weights; ~/.cache/hetmoe/onnx/<name>-<hash> or $HETMOE_CACHE for packaged and hub "
                                 "models)."),
        cards_out: Path = typer.Option(None, "--cards-out", help="Also add the two new cards to this TOML file."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Export again over existing files; replace "
                                       "same-name cards in --cards-out."),
    ) -> None:
        """Export the expert's model to ONNX (float32) plus its dynamically quantized int8 copy, check both against
        torch, and print the cards that run them (<name>-onnx, <name>-int8: runtime, file and its sha256).

        Example: hetmoe experts export minilm --cards-out my-cards.toml && hetmoe experts check minilm-int8 --cards
        my-cards.toml --data data/homedepot
        """
        from hetmoe.errors import HetmoeError
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

    @app.command("tune")
    def tune_cmd(
        expert: str = typer.Option(..., "--expert", "-e", help="Base card to tune (backend sentence-transformers)."),
        data: Path = typer.Option(..., "--data", help="Dataset folder; its 'train' judgments are the training data."),
        cards: Path = CARDS_OPTION,
        name: str = typer.Option(None, "--name", help="New card's name (default: <expert>-tuned)."),
        out: Path = typer.Option(None, "--out", help="Folder for the merged model, card.toml and tune.json "
                                 "(default: stores/tuned/<name>-<fingerprint12>)."),
        cards_out: Path = typer.Option(None, "--cards-out", help="Also add the new card to this TOML file "
                                       "(created if absent), e.g. to embed several tuned experts from one file."),
        epochs: float = typer.Option(1.0, "--epochs", help="Passes over the training pairs."),
        max_steps: int = typer.Option(-1, "--max-steps", help="Stop after this many steps (overrides --epochs)."),
        lr: float = typer.Option(2e-4, "--lr", help="Learning rate of the LoRA weights."),
        lora_r: int = typer.Option(8, "--lora-r", help="LoRA rank (alpha = 2 x rank) on every linear layer."),
        batch_size: int = typer.Option(32, "--batch-size", help="Pairs per step (CoSENT ranks all pairs of a batch)."),
        max_pairs: int = typer.Option(None, "--max-pairs", help="Train on a seeded sample of at most this many pairs."),
        held_out: float = typer.Option(0.12, "--held-out", help="Share of each market's train queries held out."),
        eval_steps: int = typer.Option(0, "--eval-steps", help="Evaluate every N steps (0: four times per epoch)."),
        patience: int = typer.Option(2, "--patience", help="Stop after this many evaluations without a gain."),
        seed: int = typer.Option(0, "--seed", help="Seed of the held-out draw, the sampling and the training."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder / same-name card."),
    ) -> None:
        """LoRA-tune a sentence-transformers expert on the train judgments (CoSENT loss on graded labels, early
        stopping on held-out train queries) and write a new expert card; prints the report JSON and the embed
        command."""
        from hetmoe.experts.card import get_card
        from hetmoe.experts.openmp import short_spin

        with short_spin():  # tune imports torch: its libgomp must load with short spin-waits, as the backend's does
            from hetmoe.experts.tune import TuneOptions, tune_expert

        options = TuneOptions(name=name, epochs=epochs, max_steps=max_steps, lr=lr, lora_r=lora_r,
                              batch_size=batch_size, max_pairs=max_pairs, held_out=held_out, eval_steps=eval_steps,
                              patience=patience, seed=seed)
        report = tune_expert(get_card(expert, cards), data, out, cards_out, options, overwrite)
        typer.echo(json.dumps(report))
