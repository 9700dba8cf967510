"""``hetmoe data ...``: make, import and validate datasets."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hetmoe.commands.options import JSON, SEED, example, group
from hetmoe.data.demo_vocab import ITEMS_PER_MARKET, QUERIES_PER_MARKET

if TYPE_CHECKING:
    import polars as pl  # imported lazily at run time: `hetmoe --help` stays fast

data_app = group("Create, import and validate datasets (items / queries / judgments Parquet).")


@data_app.command("validate", epilog=example("hetmoe data validate data/D", "hetmoe data validate data/D --json"))
def validate_cmd(
    root: Path = typer.Argument(..., help="Dataset folder with items.parquet, queries.parquet, judgments.parquet."),
    as_json: bool = JSON,
) -> None:
    """Check columns, types, ids, texts, splits and markets; print a per-market summary and a warning for each
    market with no items, no train judgments or no relevant train pair. Exit 2 on any problem."""
    _report(root, as_json)


def _report(root: Path, as_json: bool = False) -> None:
    """Summary table (or JSON) on stdout, then one 'warning:' line per weak market and one 'error:' line per problem
    on stderr; exit 2 if any problem."""
    from hetmoe.data.validate import inspect_dataset, market_warnings, summary

    problems, dataset = inspect_dataset(root)
    warnings = market_warnings(dataset) if dataset is not None and not problems else []  # for a valid dataset
    if dataset is not None:
        table = summary(dataset)
        if as_json:
            typer.echo(json.dumps({"root": str(root), "valid": not problems, "markets": table.to_dicts(),
                                   "problems": [str(p) for p in problems], "warnings": warnings}))
        else:
            _print_summary(table, root)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        typer.echo(f"error: {len(problems)} problem(s) in {root}", err=True)
        raise typer.Exit(2)
    if not as_json:
        typer.echo(f"ok: {root} is a valid dataset" + (f" ({len(warnings)} warning(s) above)" if warnings else ""))


@data_app.command("demo", epilog=example("hetmoe data demo --out data/demo --market SG --market TH"))
def demo_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to write items/queries/judgments Parquet into."),
    items_per_market: int = typer.Option(ITEMS_PER_MARKET, help="Listings per market."),
    queries_per_market: int = typer.Option(QUERIES_PER_MARKET, help="Queries per market (about 22 judged items each)."),
    seed: int = SEED,
    market: list[str] = typer.Option(None, "--market", help="Only these markets (repeatable): ID TH VN MY PH SG."),
) -> None:
    """Generate the multilingual demo dataset (six Southeast Asian markets; see hetmoe.data.demo for its grammar)."""
    from hetmoe.data.demo import MARKETS, generate_demo

    generate_demo(out, items_per_market, queries_per_market, seed, tuple(m.upper() for m in market) if market else MARKETS)
    typer.echo(f"wrote demo dataset to {out}; check it with 'hetmoe data validate {out}'")


@data_app.command("import-esci", epilog=example(
    "hetmoe data import-esci --examples shopping_queries_dataset_examples.parquet "
    "--products shopping_queries_dataset_products.parquet --out data/esci --small --locale us"))
def import_esci_cmd(
    examples: Path = typer.Option(..., "--examples", help="ESCI shopping_queries_dataset_examples (.parquet or .csv)."),
    products: Path = typer.Option(..., "--products", help="ESCI shopping_queries_dataset_products (.parquet or .csv)."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write."),
    small: bool = typer.Option(False, "--small", help="Keep only the 'small_version' (Task 1) examples."),
    locale: list[str] = typer.Option(None, "--locale", help="Only these locales (repeatable): us, es, jp."),
    valid_fraction: float = typer.Option(0.1, help="Share of train queries moved to 'valid' (by query)."),
) -> None:
    """Import Amazon ESCI: market=locale, label E3/S2/C1/I0, relevant=E|S, item_id='<locale>:<product_id>', official test kept."""
    from hetmoe.data.esci import import_esci

    import_esci(examples, products, out, small, valid_fraction, tuple(locale or ()))
    _report(out)


@data_app.command("import-csv", epilog=example(
    "hetmoe data import-csv log.csv --out data/D --query-col q --item-id-col sku --label-col grade "
    "--items catalog.parquet --items-id-col product_id --items-title-col name --default-market SG"))
def import_csv_cmd(
    pairs: Path = typer.Argument(..., help="Judged pairs log, one (query, item) per row: .csv, .tsv or .parquet."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write."),
    items: Path = typer.Option(None, "--items", help="Optional item catalog file (its columns: the --items-*-col options, else the log's)."),
    query_col: str = typer.Option("query", help="Column with the query text."),
    item_id_col: str = typer.Option("item_id", help="Column with the item id."),
    label_col: str = typer.Option("label", help="Column with the (graded) label; repeated pairs are averaged."),
    title_col: str = typer.Option("title", help="Column with the item title."),
    query_id_col: str = typer.Option(None, help="Column with a query id (default: hash of market + query text)."),
    text_col: str = typer.Option(None, help="Column with extra item text (description)."),
    market_col: str = typer.Option(None, help="Column with the market code (default: --market for every row)."),
    lang_col: str = typer.Option(None, help="Column with the language code (default: --lang)."),
    split_col: str = typer.Option(None, help="Column with train/valid/test (also dev/val/validation/eval)."),
    relevant_col: str = typer.Option(None, help="Column with a 0/1 relevant flag (default: label >= --relevant-min)."),
    items_id_col: str = typer.Option(None, help="--items file: its item id column (default: --item-id-col)."),
    items_title_col: str = typer.Option(None, help="--items file: its title column (default: --title-col)."),
    items_text_col: str = typer.Option(None, help="--items file: its text column (default: --text-col)."),
    items_market_col: str = typer.Option(None, help="--items file: its market column (default: --market-col)."),
    default_market: str = typer.Option("default", help="Market code when there is no market column."),
    default_lang: str = typer.Option(None, help="Language code when there is no language column."),
    relevant_min: float = typer.Option(1.0, help="relevant = label >= this (e.g. 2 for 0-3 grades)."),
    valid_fraction: float = typer.Option(0.15, help="Without a split column: share of queries in 'valid'."),
    test_fraction: float = typer.Option(0.15, help="Without a split column: share of queries in 'test'."),
    sep: str = typer.Option(",", help="CSV field separator (.tsv files always use tab)."),
    encoding: str = typer.Option("utf-8", help="Text encoding of CSV/TSV files, e.g. latin-1, cp1252, utf-16 (non-UTF-8 files are read whole)."),
) -> None:
    """Import a relevance log of any shape by naming its columns, e.g. --query-col q --item-id-col sku --label-col grade."""
    from hetmoe.data.tabular import Mapping, import_table

    mapping = Mapping(query=query_col, item_id=item_id_col, label=label_col, title=title_col, query_id=query_id_col,
                      text=text_col, market=market_col, lang=lang_col, split=split_col, relevant=relevant_col,
                      items_item_id=items_id_col, items_title=items_title_col, items_text=items_text_col,
                      items_market=items_market_col)
    import_table(pairs, out, mapping, items, default_market, default_lang, relevant_min, valid_fraction, test_fraction,
                 sep, encoding)
    _report(out)


@data_app.command("sample", epilog=example("hetmoe data sample data/big --out data/slice --queries-per-market 500"))
def sample_cmd(
    src: Path = typer.Argument(..., help="Dataset folder to take the slice from."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write."),
    queries_per_market: int = typer.Option(1000, help="About this many judged queries kept per market (split shares preserved; up to one extra per split)."),
    seed: int = SEED,
) -> None:
    """Write a smaller slice of a dataset: some queries per market, their judgments and the items they judge."""
    from hetmoe.data.sample import sample_dataset

    sample_dataset(src, out, queries_per_market, seed)
    _report(out)


def _print_summary(table: pl.DataFrame, root: Path) -> None:
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
