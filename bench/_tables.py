"""Shared output of the bench scripts: the result JSON written to bench/results and printed, then a short table.

The leading underscore keeps ``bench/run_all.py`` from running this module as a benchmark.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def publish(name: str, out: dict[str, Any]) -> None:
    """Write ``out`` to results/<name>.json and print it as one machine-readable line."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, int]]) -> None:
    """Rows as a fixed-width table; ``columns``: (key, header, width), the first left-aligned."""
    def cells(values: list[str]) -> str:
        return "".join(f"{v:<{w}}" if i == 0 else f"{v:>{w}}" for i, (v, (_, _, w)) in enumerate(zip(values, columns)))

    print(cells([header for _, header, _ in columns]))
    for row in rows:
        print(cells([str(row[key]) for key, _, _ in columns]))
