"""Online query encoding: the per-expert threads, the cost-based core split and the measured thread choice.

The encoders here are real ``Encoder`` subclasses (as a plugin backend would be) that record which thread ran each
call and how many CPU threads it was given; the packaged experts are covered through the Scorer tests.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from hetmoe.experts.base import Encoder
from hetmoe.experts.card import ExpertCard
from hetmoe.experts.openmp import SPINCOUNT, short_spin
from hetmoe.online.encoding import EXPLORE_EVERY, MIN_SAMPLES, QueryEncoders, ThreadChooser, plan_threads


class RecordingEncoder(Encoder):
    """A 2-d vector per text; remembers (calling thread, threads for the call) and can be held at a gate."""

    def __init__(self, name: str, gate: threading.Event | None = None) -> None:
        super().__init__(ExpertCard(name=name, backend="recording", model="none", threads=1), 2)
        self.seen: list[tuple[int, int]] = []
        self.gate = gate
        self.entered = threading.Event()

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        self.seen.append((threading.get_ident(), self.call_threads()))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        return np.ones((len(texts), 2), dtype=np.float32)


def encoders_of(*names: str, cores: int, gates: dict[str, threading.Event] | None = None) -> tuple[QueryEncoders, dict[str, RecordingEncoder]]:
    made = {n: RecordingEncoder(n) for n in names}
    pool = QueryEncoders(made.__getitem__, list(names), cores=cores)
    for name, encoder in made.items():
        pool.add(name, encoder)
        encoder.gate = (gates or {}).get(name)
        encoder.seen.clear()
        encoder.entered.clear()  # set by the cost probe in add()
    return pool, made


def test_plan_gives_every_core_to_an_expensive_expert_with_cheap_company() -> None:
    assert plan_threads([13.0, 0.2], cores=2) == [2, 1]
    assert plan_threads([0.2, 13.0, 1.7], cores=8) == [1, 8, 1]
    assert plan_threads([12.0, 13.0], cores=2) == [1, 1]  # close costs: an even share
    assert plan_threads([12.0, 13.0], cores=8) == [4, 4]
    assert plan_threads([5.0], cores=4) == [4]
    assert plan_threads([3.0, 0.1], cores=4) == [1, 1]  # too cheap for a thread team
    assert plan_threads([], cores=4) == []


def test_threads_override_applies_to_that_call_only() -> None:
    encoder = RecordingEncoder("x")
    encoder.encode(["a"], "query", threads=4)
    encoder.encode(["a"], "query")
    assert [threads for _, threads in encoder.seen] == [4, 1]


def test_each_expert_runs_on_one_thread_whoever_calls() -> None:
    pool, made = encoders_of("heavy", "cheap", cores=2)
    with ThreadPoolExecutor(4) as callers:
        list(callers.map(lambda i: pool.encode([("heavy", [f"q{i}"]), ("cheap", [f"q{i}"])]), range(20)))
    for encoder in made.values():
        assert len(encoder.seen) == 20
        assert len({ident for ident, _ in encoder.seen}) == 1
    assert {ident for ident, _ in made["heavy"].seen} != {ident for ident, _ in made["cheap"].seen}
    assert pool.calls == {"heavy": 20, "cheap": 20}
    pool.close()


def test_cost_probe_runs_on_the_experts_thread_after_starting_its_thread_team() -> None:
    """Probing from the caller's thread would give a second thread a team in the same OpenMP runtime."""
    encoder = RecordingEncoder("heavy")
    pool = QueryEncoders(lambda name: encoder, ["heavy"], cores=4)
    pool.get("heavy")
    pool.encode([("heavy", ["q"])])
    assert [threads for _, threads in encoder.seen] == [4, 1, 1, 1]  # team start, two timed one-core calls, the query
    assert len({ident for ident, _ in encoder.seen}) == 1
    assert encoder.seen[0][0] != threading.get_ident()
    pool.close()


def test_expensive_expert_gets_the_cores_and_concurrent_queries_share_them() -> None:
    gate = threading.Event()
    pool, made = encoders_of("heavy", "cheap", cores=4, gates={"heavy": gate})
    pool.cost_ms.update(heavy=10.0, cheap=0.1)
    first = threading.Thread(target=pool.encode, args=([("heavy", ["a"]), ("cheap", ["a"])],))
    first.start()
    assert made["heavy"].entered.wait(10)  # the first query is encoding: a second one now gets half the cores
    second = threading.Thread(target=pool.encode, args=([("heavy", ["b"])],))
    second.start()
    while pool._inflight < 2:  # wait until the second query has planned its threads
        threading.Event().wait(0.001)
    gate.set()
    first.join(10)
    second.join(10)
    assert [threads for _, threads in made["heavy"].seen] == [4, 2]
    assert [threads for _, threads in made["cheap"].seen] == [1]
    pool.close()


@pytest.mark.parametrize("many_ms, one_ms, preferred", [(6.0, 13.0, 2), (40.0, 13.0, 1)])
def test_chooser_keeps_the_arm_with_the_lower_tail_and_still_explores(many_ms: float, one_ms: float, preferred: int) -> None:
    chooser = ThreadChooser()
    assert chooser.choose("e5", 1) == 1  # nothing to choose
    for _ in range(MIN_SAMPLES):
        threads = chooser.choose("e5", 2)
        assert threads == 2  # the many-thread arm is tried first
        chooser.record("e5", threads, many_ms)
    for _ in range(MIN_SAMPLES):
        threads = chooser.choose("e5", 2)
        assert threads == 1  # then the one-thread arm
        chooser.record("e5", threads, one_ms)
    picks = [chooser.choose("e5", 2) for _ in range(2 * EXPLORE_EVERY)]
    assert picks.count(preferred) == 2 * EXPLORE_EVERY - 2
    assert picks.count(3 - preferred) == 2  # one exploring call in EXPLORE_EVERY
    summary = chooser.summary()["e5"]
    assert summary["many_ms"] == pytest.approx(many_ms) and summary["one_ms"] == pytest.approx(one_ms)


def test_chooser_switches_when_the_preferred_arm_slows_down() -> None:
    chooser = ThreadChooser()
    for threads, ms in [(2, 6.0)] * MIN_SAMPLES + [(1, 13.0)] * MIN_SAMPLES:
        chooser.record("e5", threads, ms)
    assert chooser.choose("e5", 2) == 2
    for _ in range(40):  # the host gets busy: barriers stall, the many-thread arm's latency jumps and scatters
        chooser.record("e5", 2, 60.0)
        chooser.record("e5", 2, 20.0)
    assert chooser.choose("e5", 2) == 1


def test_a_job_on_every_core_waits_for_its_cheap_company() -> None:
    gate = threading.Event()
    pool, made = encoders_of("heavy", "cheap", cores=2, gates={"cheap": gate})
    pool.cost_ms.update(heavy=10.0, cheap=0.1)
    query = threading.Thread(target=pool.encode, args=([("heavy", ["q"]), ("cheap", ["q"])],))
    query.start()
    assert made["cheap"].entered.wait(10)
    assert not made["heavy"].entered.wait(0.2)  # its thread team would share a core with the cheap job
    gate.set()
    query.join(10)
    assert made["heavy"].seen[0][1] == 2 and made["cheap"].seen[0][1] == 1
    pool.close()


def test_a_one_thread_choice_runs_beside_its_company() -> None:
    gate = threading.Event()
    pool, made = encoders_of("heavy", "cheap", cores=2, gates={"cheap": gate})
    pool.cost_ms.update(heavy=10.0, cheap=0.1)
    for threads, ms in [(2, 40.0)] * MIN_SAMPLES + [(1, 13.0)] * MIN_SAMPLES:  # one thread has the lower tail
        pool.chooser.record("heavy", threads, ms)
    query = threading.Thread(target=pool.encode, args=([("heavy", ["q"]), ("cheap", ["q"])],))
    query.start()
    assert made["cheap"].entered.wait(10) and made["heavy"].entered.wait(10)  # heavy started while cheap is held
    gate.set()
    query.join(10)
    assert made["heavy"].seen[0][1] == 1
    pool.close()


def test_jobs_that_fit_the_cores_start_together() -> None:
    gate = threading.Event()
    pool, made = encoders_of("a", "b", cores=8, gates={"a": gate})
    pool.cost_ms.update(a=10.0, b=9.0)  # close costs: 4 threads each, 8 in all
    query = threading.Thread(target=pool.encode, args=([("a", ["q"]), ("b", ["q"])],))
    query.start()
    assert made["a"].entered.wait(10) and made["b"].entered.wait(10)  # b started while a is still held
    gate.set()
    query.join(10)
    assert made["a"].seen[0][1] == 4 and made["b"].seen[0][1] == 4
    pool.close()


def test_short_spin_applies_only_inside_the_block_and_yields_to_the_users_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with short_spin():
        assert os.environ["GOMP_SPINCOUNT"] == SPINCOUNT
    assert "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    with short_spin():
        assert "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    with short_spin():
        assert os.environ["GOMP_SPINCOUNT"] == "5"
    assert os.environ["GOMP_SPINCOUNT"] == "5"
