"""Where a result was made: the machine record fits and reports carry, and the lines a report prints from it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from hetmoe.provenance import RESULTS_DOC, cpu_model, describe, machine, made_markdown, results_link, synthetic_note


def test_machine_names_cpu_libraries_and_live_thread_counts() -> None:
    np.ones((64, 64)) @ np.ones((64, 64))  # numpy's BLAS is loaded
    record = machine()
    assert record["cpu"] == cpu_model() and record["cpu"] and record["cores"] >= 1
    assert {"numpy", "torch", "lightgbm", "faiss-cpu", "hetmoe"} <= set(record["libraries"])
    blas = [p for p in record["thread_pools"] if p.get("architecture")]
    assert blas and all(p["threads"] >= 1 for p in blas)
    with threadpool_limits(limits=1, user_api="blas"):  # the record reads the pools' sizes now, not at import
        assert all(p["threads"] == 1 for p in machine()["thread_pools"] if p.get("architecture"))
    line = describe(record)
    assert record["cpu"] in line and f"numpy {record['libraries']['numpy']}" in line and "BLAS: " in line


def test_report_lines_name_machines_seeds_and_the_real_results(tmp_path: Path) -> None:
    here = machine()
    made = {"fit": {**here, "training_threads": 1, "workers": 2}, "eval": here,
            "seeds": {"training": 3, "data": 7}, "data_origin": {"generator": "hetmoe data demo", "seed": 7},
            "results_link": results_link(tmp_path)}
    text = "\n".join(made_markdown(made))
    assert "## Where it was made" in text and here["cpu"] in text
    assert "eval: the same machine" in text and "seeds: training 3, data 7" in text
    assert "1 thread(s), 2 training process(es)" in text and "bit for bit" in text
    other = {**here, "cpu": "Another CPU", "libraries": {**here["libraries"], "numpy": "0.0"}}
    assert "eval: Another CPU" in "\n".join(made_markdown({**made, "eval": other}))
    note = synthetic_note(made)[0]
    assert note.startswith("**Synthetic data**") and "seed 7" in note and f"[{RESULTS_DOC}](" in note
    link = made["results_link"]
    assert (tmp_path / link).resolve() == (Path(__file__).resolve().parents[1] / RESULTS_DOC) or link == RESULTS_DOC
    assert synthetic_note({**made, "data_origin": None}) == []  # real data: no such line
    assert "data: not a generated dataset" in "\n".join(made_markdown({**made, "seeds": {"training": 0, "data": None}}))
