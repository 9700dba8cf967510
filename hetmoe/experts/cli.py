"""``hetmoe experts``: list the declared expert cards and check that their models load and encode here."""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer

CARDS_OPTION = typer.Option(None, "--cards", help="Expert cards TOML (default: configs/experts.toml or $HETMOE_CARDS).")
SAMPLE = ["cordless drill 18v", "lámpara de techo LED", "kemeja batik pria lengan panjang"]


def register(app: typer.Typer) -> None:
    experts = typer.Typer(help="Expert cards: list them, check that their models load and encode.",
                          no_args_is_help=True)
    app.add_typer(experts, name="experts")

    @experts.command("list")
    def list_cmd(
        cards: Path = CARDS_OPTION,
        as_json: bool = typer.Option(False, "--json", help="One JSON object instead of a table."),
    ) -> None:
        """Every card with its backend, dim, languages, identity hash and whether it is in the default set."""
        from rich.console import Console
        from rich.table import Table

        from hetmoe.experts.card import default_experts, load_cards

        declared, defaults = load_cards(cards), default_experts(cards)
        if as_json:
            described = {n: {**c.to_dict(), "hash": c.hash} for n, c in declared.items()}
            typer.echo(json.dumps({"defaults": defaults, "cards": described}))
            return
        table = Table("expert", "backend", "dim", "languages", "default")
        table.add_column("hash", no_wrap=True)
        table.add_column("model", overflow="fold")
        for name, card in declared.items():
            table.add_row(name, card.backend, str(card.dim or "?"), ",".join(card.languages),
                          "yes" if name in defaults else "", card.hash, card.model)
        Console().print(table)

    @experts.command("check")
    def check_cmd(
        names: list[str] = typer.Argument(None, help="Card names (default: the default set)."),
        cards: Path = CARDS_OPTION,
    ) -> None:
        """Load each expert and encode a few texts; a missing model fails with the fix in one line."""
        from hetmoe.experts.card import default_experts, get_card
        from hetmoe.experts.registry import build_encoder

        for name in names or default_experts(cards):
            card = get_card(name, cards)
            began = time.perf_counter()
            encoder = build_encoder(card)
            loaded = time.perf_counter() - began
            queries, docs = encoder.encode(SAMPLE, "query"), encoder.encode(SAMPLE, "document")
            cosines = [round(float(q @ d), 4) for q, d in zip(queries, docs)]
            typer.echo(json.dumps({"expert": name, "hash": card.hash, "dim": encoder.dim,
                                   "load_seconds": round(loaded, 3), "query_doc_cosine": cosines}))
