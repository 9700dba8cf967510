"""``hetmoe data ...``: make, import and validate datasets."""
from __future__ import annotations

import typer

data_app = typer.Typer(help="Create, import and validate datasets (items / queries / judgments Parquet).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
