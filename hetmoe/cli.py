"""The ``hetmoe`` command line: one typer app; each area registers its own commands.

Command modules import their heavy dependencies inside the command bodies, so ``hetmoe --help`` stays fast.
"""
from __future__ import annotations

import logging
import sys
from importlib import import_module

import typer

from hetmoe.errors import HetmoeError
from hetmoe.files import disk_full_error, is_disk_full
from hetmoe.logs import setup_logging

app = typer.Typer(
    help="hetmoe: route each query to the experts that suit it and score with a head over their concatenated features.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module exposes ``register(app)``; order is the order of --help.
COMMAND_MODULES: tuple[str, ...] = (
    "hetmoe.commands.data",
    "hetmoe.commands.experts",
    "hetmoe.commands.store",
    "hetmoe.commands.scale",
    "hetmoe.commands.moe",
    "hetmoe.commands.diagnose",
    "hetmoe.commands.online",
    "hetmoe.commands.pipeline",
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
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
