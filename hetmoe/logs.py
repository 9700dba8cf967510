"""Logging setup shared by the CLI and the service (library code only calls ``logging.getLogger``)."""
from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler


def setup_logging(verbose: bool = False) -> None:
    """Route log records through rich to stderr, so stdout stays free for tables and JSON."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=True, markup=False)],
        force=True,
    )
    for noisy in ("httpx", "urllib3", "sentence_transformers", "transformers", "numexpr", "faiss", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
