"""``hetmoe data ...``: make, import and validate datasets."""
from __future__ import annotations

import json
from pathlib import Path

import typer

data_app = typer.Typer(help="Create, import and validate datasets (items / queries / judgments Parquet).", no_args_is_help=True)


@data_app.command("validate")
def validate_cmd(
    root: Path = typer.Argument(..., help="Dataset folder with items.parquet, queries.parquet, judgments.parquet."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-market summary as JSON instead of a table."),
) -> None:
    """Check columns, types, ids, texts, splits and markets; print a per-market summary. Exit 2 on any problem."""
    from hetmoe.data.validate import inspect_dataset, summary

    problems, dataset = inspect_dataset(root)
    if dataset is not None:
        table = summary(dataset)
        if as_json:
            typer.echo(json.dumps({"root": str(root), "valid": not problems, "markets": table.to_dicts(), "problems": [str(p) for p in problems]}))
        else:
            _print_summary(table, root)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        typer.echo(f"error: {len(problems)} problem(s) in {root}", err=True)
        raise typer.Exit(2)
    if not as_json:
        typer.echo(f"ok: {root} is a valid dataset")


@data_app.command("demo")
def demo_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to write items/queries/judgments Parquet into."),
    items_per_market: int = typer.Option(500, help="Listings per market."),
    queries_per_market: int = typer.Option(150, help="Queries per market (about 22 judged items each)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives identical files."),
    market: list[str] = typer.Option(None, "--market", help="Only these markets (repeatable): ID TH VN MY PH SG."),
) -> None:
    """Generate the multilingual demo dataset (six Southeast Asian markets; see hetmoe.data.demo for its grammar)."""
    from hetmoe.data.demo import MARKETS, generate_demo

    generate_demo(out, items_per_market, queries_per_market, seed, tuple(m.upper() for m in market) if market else MARKETS)
    typer.echo(f"wrote demo dataset to {out}; check it with 'hetmoe data validate {out}'")


def _print_summary(table: "pl.DataFrame", root: Path) -> None:  # noqa: F821 - polars imported lazily
    from rich.console import Console
    from rich.table import Table

    view = Table(title=f"{root}: per-market summary")
    for column in table.columns:
        view.add_column(column.replace("positive_rate", "pos rate"), justify="left" if column in ("market", "lang") else "right", no_wrap=True)
    for row in table.iter_rows():
        view.add_row(*("" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    pairs = int(table["pairs"].sum())
    positives = float((table["pairs"] * table["positive_rate"].fill_null(0)).sum())
    totals = {c: str(int(table[c].sum())) for c in ("items", "queries", "pairs", "train", "valid", "test")}
    view.add_row(*(("all" if c == "market" else "" if c == "lang" else f"{positives / max(pairs, 1):.3f}" if c == "positive_rate" else totals[c]) for c in table.columns), style="bold")
    Console(width=max(Console().width, 120)).print(view)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
