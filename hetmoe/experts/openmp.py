"""Short spin-waits for the OpenMP runtimes that experts load, so one expert's idle workers do not hold a core that
the next expert's threads need.

After each parallel region libgomp's workers spin before they sleep: 300k iterations by default, about 3 ms. Online,
queries follow each other within microseconds and e5 (its own libgomp) and minilm (torch's) take turns: measured on a
2-core machine at 2 threads, e5 right after minilm took p50 14.8 ms against 8.2 ms right after itself, and minilm right
after e5 17.8 against 11.3. With ``GOMP_SPINCOUNT=30000`` (about 0.3 ms) both orders cost what a call after itself
costs (e5 8.4 vs 8.2 ms, minilm 11.3 vs 10.0), and a call after itself is no slower: a team's parallel regions follow
each other far more closely than 0.3 ms.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

SPINCOUNT = "30000"
USER_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


@contextmanager
def short_spin() -> Iterator[None]:
    """Ask for short spin-waits from any libgomp that loads inside this block (libgomp reads its environment once, when
    it loads); the environment is restored afterwards. A user's own GOMP_SPINCOUNT or OMP_WAIT_POLICY wins."""
    if any(name in os.environ for name in USER_SETTINGS):
        yield
        return
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        yield
    finally:
        os.environ.pop("GOMP_SPINCOUNT", None)
