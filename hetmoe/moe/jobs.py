"""Independent training jobs of one ``fit`` spread over the machine's cores, with the same results as in sequence.

Why processes: each net trains on one thread (its matrices are small, see ``TrainConfig.threads``), so a fit of a
dozen variants used one core of many. Why fork: the children inherit the parent's pair arrays copy-on-write instead
of receiving pickled copies, and only the small results (weights, metrics) travel back. Every job seeds itself
(``train_net`` calls ``torch.manual_seed``), so a job gives the same weights in a child as in the parent. Why only
for one-thread jobs: a forked child inherits the parent's OpenMP state (torch and LightGBM use libgomp, which is not
fork-safe), so a child that starts a thread team after the parent ran one can hang; one thread never starts a team.
"""
from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

from hetmoe.vectors import available_cores

log = logging.getLogger(__name__)
Job = tuple[Callable[..., Any], tuple[Any, ...]]
_PENDING: list[Job] = []  # read by the forked children; set only while a pool runs
WORKERS_HELP = "Processes that train the variants side by side (0: one per core); the results do not depend on it."


def resolve_workers(workers: int) -> int:
    """``workers`` processes, 0 meaning one per available core."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: one per core), not {workers}")
    return workers or available_cores()


def _run_pending(i: int) -> Any:
    fn, args = _PENDING[i]
    return fn(*args)


def run_jobs(jobs: Sequence[Job], workers: int, threads: int = 1) -> list[Any]:
    """Each ``fn(*args)`` of ``jobs``, results in order; in ``workers`` forked processes when more than one helps
    and each job runs on ``threads`` = 1 (else in this process, one after the other: see the module docstring)."""
    n = min(resolve_workers(workers), len(jobs))
    if n > 1 and threads != 1:
        log.warning("training %d jobs one after the other: each uses %s threads (threads=1 lets them run in %d "
                    "processes side by side)", len(jobs), threads or "all", n)
        n = 1
    if n <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(*args) for fn, args in jobs]
    if _PENDING:
        raise RuntimeError("run_jobs is not re-entrant: a job may not start jobs of its own")
    _PENDING.extend(jobs)
    log.info("running %d training jobs in %d processes", len(jobs), n)
    try:
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_run_pending, range(len(jobs))))
    finally:
        _PENDING.clear()
