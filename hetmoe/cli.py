"""The ``hetmoe`` command line: one typer app; each area registers its own commands.

Command modules import their heavy dependencies inside the command bodies, so ``hetmoe --help`` stays fast.
"""
from __future__ import annotations

import logging
import sys
from importlib import import_module

import typer

from hetmoe import __version__
from hetmoe.commands.options import HetmoeGroup
from hetmoe.errors import HetmoeError
from hetmoe.files import disk_full_error, is_disk_full
from hetmoe.logs import setup_logging

app = typer.Typer(
    help="hetmoe: route each query to the experts that suit it and score with a head over their concatenated features.",
    epilog="Start with 'hetmoe demo', or 'hetmoe run --data D --out O' on your own dataset (see 'hetmoe data import-csv').",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=HetmoeGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module exposes ``register(app)``; order is the order of --help.
COMMAND_MODULES: tuple[str, ...] = (
    "hetmoe.commands.data",
    "hetmoe.commands.experts",
    "hetmoe.commands.distil",
    "hetmoe.commands.store",
    "hetmoe.commands.scale",
    "hetmoe.commands.moe",
    "hetmoe.commands.diagnose",
    "hetmoe.commands.online",
    "hetmoe.commands.pipeline",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"hetmoe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version."),
) -> None:
    setup_logging(verbose)


for _module in COMMAND_MODULES:
    import_module(_module).register(app)


def main() -> None:
    """Entry point: user errors (and a full disk) become one line on stderr and exit code 2; bugs keep their
    traceback."""
    try:
        app()
    except HetmoeError as err:
        logging.getLogger("hetmoe").debug("user error", exc_info=True)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except Exception as err:
        if not is_disk_full(err):
            raise
        logging.getLogger("hetmoe").debug("disk full", exc_info=True)
        print(f"error: {disk_full_error(err, getattr(err, 'filename', None) or 'a file')}", file=sys.stderr)
        sys.exit(HetmoeError.exit_code)
    except KeyboardInterrupt:
        print("interrupted: completed work is kept; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
