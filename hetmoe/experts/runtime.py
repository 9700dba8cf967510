"""ONNX Runtime in place of torch inside a sentence-transformers expert (card ``runtime = "onnx" | "onnx-int8"``).

Why only the transformer is swapped: sentence-transformers keeps doing everything around it (prompts, tokenization,
truncation, left padding for last-token pooling, pooling, normalisation), so an exported expert encodes exactly the
inputs its torch card does and the only difference left is the arithmetic of the graph, which ``hetmoe experts
check`` measures. The graph file is checked against the card's digest before it is run: the digest is what the card's
hash, and so every store's identity, records.

Threads: an ONNX Runtime session fixes its thread count when it is created, while an encoder call may name its own
(the online Scorer shares the cores between experts per call), so there is one session per thread count used.
Their workers do not spin between calls (``allow_spinning = 0``): other experts' threads need the cores then.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard

log = logging.getLogger(__name__)

INSTALL = "install the onnx extra (pip install -e '.[onnx]')"
DATA_SUFFIX = ".data"  # a graph over 2 GB keeps its weights in <graph>.data


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a graph file, then of its weights file ``<graph>.data`` when it has one; 1 MiB blocks."""
    digest = hashlib.sha256()
    path = Path(path)
    for part in (path, path.with_name(path.name + DATA_SUFFIX)):
        if part == path or part.is_file():
            with part.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def checked_graph(card: ExpertCard) -> Path:
    """The card's exported graph, refused unless it exists and its bytes are the ones the card's hash covers."""
    path = Path(str(card.runtime_file)).expanduser()
    if not path.is_file():
        raise HetmoeError(f"expert {card.name!r}: runtime file {path} does not exist; export it with "
                          f"'hetmoe experts export <the torch card of {card.name}>' and use the card it writes")
    found = file_sha256(path)
    if found != card.runtime_sha256:
        raise HetmoeError(f"expert {card.name!r}: {path} has sha256 {found[:12]}, the card says "
                          f"{str(card.runtime_sha256)[:12]}; the file changed since export: export again and use the new card")
    return path


def ort_session(path: Path, threads: int) -> Any:
    """A CPU session of the graph on ``threads`` intra-op threads (1 runs on the calling thread)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise HetmoeError(f"ONNX Runtime is not installed; {INSTALL}") from err
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initializers etc. are not the user's business
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _torch_module_class() -> type:
    """Defined on first use, so importing this module does not import torch."""
    import torch

    class OrtTransformer(torch.nn.Module):
        """Stands where sentence-transformers expects the Hugging Face model: same inputs, ``last_hidden_state`` out."""

        def __init__(self, path: Path, config: Any, threads: Callable[[], int]) -> None:
            super().__init__()
            self.path, self.config, self.threads = path, config, threads
            self._sessions: dict[int, Any] = {}
            self._lock = threading.Lock()
            session = self._session(threads())
            if "last_hidden_state" not in [o.name for o in session.get_outputs()]:
                raise HetmoeError(f"{path}: the graph has no output 'last_hidden_state' (not exported by hetmoe); "
                                  "export it again with 'hetmoe experts export --overwrite'")
            self.input_names = [i.name for i in session.get_inputs()]

        def _session(self, threads: int) -> Any:
            with self._lock:
                if threads not in self._sessions:
                    self._sessions[threads] = ort_session(self.path, threads)
                return self._sessions[threads]

        def forward(self, **inputs: Any) -> dict[str, Any]:
            missing = [n for n in self.input_names if n not in inputs]
            if missing:
                raise HetmoeError(f"{self.path}: the graph needs inputs {missing} the tokenizer did not give; "
                                  "export it again from this model")
            feed = {n: np.ascontiguousarray(inputs[n].cpu().numpy(), dtype=np.int64) for n in self.input_names}
            hidden = self._session(self.threads()).run(["last_hidden_state"], feed)[0]
            return {"last_hidden_state": torch.from_numpy(hidden)}

    return OrtTransformer


def attach(card: ExpertCard, model: Any, threads: Callable[[], int]) -> Any:
    """Swap the torch transformer of a loaded SentenceTransformer for the card's checked graph, run on ``threads()``
    threads (asked on the calling thread at each call); returns the ONNX Runtime module."""
    first = model[0]
    if not hasattr(first, "model") or not hasattr(first.model, "config"):
        raise HetmoeError(f"expert {card.name!r}: its first module is {type(first).__name__}, not a transformer; "
                          "runtime \"onnx\" needs one: keep runtime = \"torch\"")
    module = _torch_module_class()(checked_graph(card), first.model.config, threads)
    first.model = module  # the torch weights are released here
    log.info("expert %s: %s runs %s in ONNX Runtime", card.name, card.runtime, module.path.name)
    return module


def interchangeable(a: ExpertCard | Mapping[str, Any] | None, b: ExpertCard | Mapping[str, Any] | None) -> bool:
    """True when vectors of card ``a`` may be compared with, or stand in for, those of card ``b`` (card objects or
    their dicts, as stores and models record them): the same hash, or one card states ``interchangeable_with`` the
    other's hash. The statement is a person's, made after ``hetmoe experts check`` measured the pair."""
    if not a or not b:
        return False
    x, y = (c if isinstance(c, ExpertCard) else ExpertCard.from_dict(dict(c)) for c in (a, b))
    return x.hash == y.hash or x.interchangeable_with == y.hash or y.interchangeable_with == x.hash
