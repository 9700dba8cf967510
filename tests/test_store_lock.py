"""Two ``embed`` processes on one store: the second waits for the first (naming its pid) or, with --no-wait, fails
naming it; either way the work is done once. Real processes, real flocks, the real ``static`` expert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from store_data import make_catalog

from hetmoe.store.lock import clear_folder, embed_lock, lock_path

CLI = [sys.executable, "-c", "from hetmoe.cli import main; main()"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "400"}
N_ITEMS, N_QUERIES, CHUNK = 400, 40, 16
HOLD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from hetmoe.store.lock import embed_lock
    with embed_lock(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.read()
""")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("lockdata"), N_ITEMS, N_QUERIES)


def _embed(data: Path, store: Path, *extra: str, chunk: int = CHUNK) -> list[str]:
    return [
        *CLI,
        "embed",
        "-e",
        "static",
        "--data",
        str(data),
        "--store",
        str(store),
        "--chunk-size",
        str(chunk),
        *extra,
    ]


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = " ".join(path.read_text().split()) if path.exists() else ""
        if text in seen:
            return seen
        assert proc.poll() is None, seen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_second_embed_waits_for_the_holder_or_fails_naming_it(data: Path, tmp_path: Path) -> None:
    store = tmp_path / "stores"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(store / "static")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = subprocess.run(_embed(data, store, "--no-wait"), capture_output=True, text=True, env=ENV, timeout=120)
        assert refused.returncode == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and f"pid {holder.pid} on " in lines[0], (
            refused.stderr
        )
        assert "--no-wait" in lines[0] and not (store / "static" / "manifest.json").exists()

        log = tmp_path / "waiter.log"
        with log.open("w") as err:
            waiter = subprocess.Popen(_embed(data, store), stdout=subprocess.PIPE, stderr=err, text=True, env=ENV)
        _wait_for(log, f"waiting for pid {holder.pid} on ", waiter)
        time.sleep(1.0)
        assert waiter.poll() is None and not (store / "static" / "manifest.json").exists()
        holder.send_signal(signal.SIGKILL)  # the kernel drops the flock of a killed process: no stale lock
        out, _ = waiter.communicate(timeout=180)
    finally:
        holder.kill()
        holder.wait()
    assert waiter.returncode == 0, log.read_text()
    summary = json.loads(out)
    assert summary["complete"] and summary["parts"]["items"]["rows_encoded"] == N_ITEMS
    assert not lock_path(store / "static", (0, 1)).exists()


def test_two_embeds_started_together_do_the_work_once(tmp_path: Path) -> None:
    """Enough chunks that, without the lock, both processes encode most of them (measured: 5,616 + 6,000 rows)."""
    data, store, n_items = make_catalog(tmp_path / "data", 6000, N_QUERIES), tmp_path / "stores", 6000
    procs = [
        subprocess.Popen(
            _embed(data, store, chunk=64), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    summaries = [json.loads(out) for out, _ in results]
    assert all(s["complete"] for s in summaries)
    for part, total in (("items", n_items), ("queries", N_QUERIES)):
        assert sum(s["parts"][part]["rows_encoded"] for s in summaries) == total


def test_lock_file_and_created_folders_go_away_and_overwrite_spares_the_lock(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "static"
    with embed_lock(folder, (1, 4)) as path:
        assert path == folder / ".embed-1-of-4.lock" and json.loads(path.read_text())["pid"] == os.getpid()
        (folder / "items.zarr").mkdir()
        (folder / "manifest.json").write_text("{}")
        clear_folder(folder)
        assert [p.name for p in folder.iterdir()] == [path.name]
    assert not (tmp_path / "new").exists()  # nothing was written, so nothing is left
