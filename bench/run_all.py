"""Run every benchmark script in bench/ and print a summary of the JSON each one wrote to bench/results/.

Usage: ``python bench/run_all.py [NAME ...]`` (``make bench`` runs them all). Each script is run in its own process
so that peak-memory figures are its own.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
log = logging.getLogger("bench")


def scripts(names: list[str]) -> list[Path]:
    found = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    return [p for p in found if not names or p.stem in names]


def needs_arguments(script: Path) -> bool:
    """Scripts with a required option (real data and stores: quality, item_neighbourhood) are run by hand."""
    return "required=True" in script.read_text(encoding="utf-8")


def main(names: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary_path = RESULTS / "summary.json"
    summary: dict[str, dict] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    failed = []
    for script in scripts(names):
        if needs_arguments(script):
            log.info("== %s: skipped, it needs arguments (see its docstring)", script.name)
            continue
        log.info("== %s", script.name)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        result = RESULTS / f"{script.stem}.json"
        summary[script.stem] = {
            "exit_code": code,
            "seconds": round(time.perf_counter() - start, 1),
            "result": json.loads(result.read_text()) if result.exists() else None,
        }
        if code:
            failed.append(script.stem)
    RESULTS.mkdir(exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2))  # merged: running one benchmark keeps the others' rows
    print(f"{'benchmark':<16}{'exit':>6}{'seconds':>10}  result")
    for name, row in sorted(summary.items()):
        seconds = "-" if row.get("seconds") is None else row["seconds"]  # rows merged in by hand carry no timing
        print(f"{name:<16}{row['exit_code']!s:>6}{seconds!s:>10}  bench/results/{name}.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
