"""User-facing errors: one line that says what is wrong and how to fix it.

Anything raised as :class:`HetmoeError` is printed by the CLI as a single line and exits non-zero;
everything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class HetmoeError(Exception):
    """A problem with the user's input or artifacts, explained in one line (what is wrong; how to fix it)."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
