"""``hetmoe experts export``: a sentence-transformers expert's transformer as an ONNX graph and its int8 copy, and the
cards that run them (``runtime = "onnx"`` / ``"onnx-int8"``).

How: torch's own ONNX exporter traces the loaded model (eager attention, dynamic batch and sequence axes), and ONNX
Runtime's dynamic quantizer writes the int8 copy (int8 weights, activations quantized per call: no calibration data).
That is what sentence-transformers' ``export_dynamic_quantized_onnx_model`` does through Optimum, whose ONNX package
does not install beside transformers 5; the files follow its layout (``onnx/model.onnx``, ``onnx/model_qint8.onnx``).

Where: next to the weights (``<model>/onnx/``) for a local model folder we may write to; a packaged model (its folder
belongs to the installed package) or a Hugging Face cache snapshot goes to ``$HETMOE_CACHE/onnx/<name>-<hash>/``
(default ``~/.cache/hetmoe``); ``out`` overrides both. Files already there are reused unless ``overwrite`` (a float32
graph shipped in a model's ``onnx/`` folder too: only the missing int8 copy is made), and their digests go into the
cards, so a card always names the bytes it was checked with. Every export is checked: the float32 graph must give the
torch vectors (min cosine >= 0.9999 on a few texts) or no card is made.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard
from hetmoe.experts.runtime import DATA_SUFFIX, file_sha256
from hetmoe.files import file_mode, publish

log = logging.getLogger(__name__)

CACHE_ENV = "HETMOE_CACHE"
FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}
SUFFIX = {"onnx": "onnx", "onnx-int8": "int8"}  # card name suffixes
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
EXTERNAL_ABOVE = 1536 << 20  # float32 weights above this go into <graph>.data (protobuf files stop at 2 GB)
MIN_FLOAT_COSINE = 0.9999
VERIFY = ["cordless drill 18v", "lámpara de techo LED con control remoto",
          "kemeja batik pria lengan panjang", "sink", "stainless steel kitchen faucet with pull down sprayer"]


def cache_root() -> Path:
    """``$HETMOE_CACHE``, else ``$XDG_CACHE_HOME/hetmoe``, else ``~/.cache/hetmoe``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hetmoe"


def export_dir(card: ExpertCard, model_path: Path, out: Path | None) -> Path:
    """Where the card's graphs go (see the module docstring)."""
    if out is not None:
        return Path(out).expanduser().resolve()
    local = Path(card.model).expanduser()
    if local.is_dir() and os.access(local, os.W_OK) and "site-packages" not in local.resolve().parts:
        return model_path.resolve() / "onnx"
    return cache_root() / "onnx" / f"{card.name}-{card.hash}"


def _graph(card: ExpertCard, model: Any, path: Path) -> None:
    """Trace the SentenceTransformer's transformer into ``path`` (written under a temporary name, then renamed)."""
    import torch

    transformer = model[0]
    hf = getattr(transformer, "model", None)
    if hf is None or not isinstance(hf, torch.nn.Module):
        raise HetmoeError(f"expert {card.name!r}: ONNX export needs a transformer as the model's first module, found "
                          f"{type(transformer).__name__}; keep runtime = \"torch\" for it")
    batch = transformer.tokenizer(VERIFY[:3], padding=True, truncation=True, return_tensors="pt")
    accepted = inspect.signature(hf.forward).parameters
    names = [n for n in INPUTS if n in batch and n in accepted]
    extra = {"use_cache": False} if "use_cache" in accepted else {}

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.hf(**dict(zip(names, tensors)), **extra).last_hidden_state

    if hasattr(hf, "set_attn_implementation"):
        hf.set_attn_implementation("eager")  # sdpa's fast paths branch on the inputs and would be traced as constants
    axes = {n: {0: "batch", 1: "sequence"} for n in (*names, "last_hidden_state")}
    weights = sum(p.numel() * p.element_size() for p in hf.parameters())
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as work:
        traced = Path(work) / path.name  # over 2 GB the exporter writes the weights as files beside it
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer and deprecation warnings: the export is checked instead
                torch.onnx.export(Graph().eval(), tuple(batch[n] for n in names), str(traced), input_names=names,
                                  output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                                  dynamo=False)
        except Exception as err:  # the exporter raises many types for unsupported operators
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise HetmoeError(f"expert {card.name!r}: ONNX export does not support this model ({type(err).__name__}: "
                              f"{first}); keep runtime = \"torch\" for it") from err
        _place(traced, path, external=weights > EXTERNAL_ABOVE)


def _place(traced: Path, path: Path, external: bool) -> None:
    """Move the traced graph to ``path``; a large one keeps its weights in one file beside it, ``<path>.data``."""
    sidecar = path.with_name(path.name + DATA_SUFFIX)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if external:
        import onnx

        onnx.save_model(onnx.load(str(traced)), str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=sidecar.name, size_threshold=1024)
        os.chmod(sidecar, file_mode())
    else:
        sidecar.unlink(missing_ok=True)  # from an earlier, larger export of another model into this folder
        shutil.move(str(traced), str(tmp))
    publish(tmp, path)


def _quantize(source: Path, path: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization of ``source`` into ``path``: int8 weights with a scale per output
    channel, as sentence-transformers' avx512_vnni configuration asks (one scale per tensor: MiniLM's vectors kept a
    mean cosine of 0.956 to float32 on product texts, against 0.992 per channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises pre-processing through the root logger on every call
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    publish(tmp, path)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def export_expert(card: ExpertCard, out: Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Export the torch card's model (or reuse earlier files), check both graphs against torch, and return the report
    with the two new cards (``report["cards"]``, ExpertCards named ``<name>-onnx`` and ``<name>-int8``)."""
    if card.backend != "sentence-transformers":
        raise HetmoeError(f"expert {card.name!r}: export works for backend \"sentence-transformers\", not "
                          f"{card.backend!r}")
    if card.runtime != "torch":
        raise HetmoeError(f"expert {card.name!r} already runs {card.runtime!r}; export its torch card")
    from hetmoe.experts.backends.st import load_model
    from hetmoe.experts.locate import resolve_model
    from hetmoe.experts.registry import build_encoder
    from hetmoe.experts.runtime import INSTALL

    try:
        import onnx  # noqa: F401 - the quantizer and exporter need it
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise HetmoeError(f"expert {card.name!r}: ONNX export needs onnx and onnxruntime; {INSTALL}") from err
    began = time.perf_counter()
    cpu_card = dataclasses.replace(card, device="cpu", threads=1)
    dest = export_dir(card, resolve_model(card), out)
    dest.mkdir(parents=True, exist_ok=True)
    paths = {runtime: dest / name for runtime, name in FILES.items()}
    traced = overwrite or not paths["onnx"].is_file()  # a graph already there (ours, or shipped) is checked below
    if traced:
        model, _ = load_model(cpu_card)
        _graph(card, model.eval(), paths["onnx"])
    if traced or not paths["onnx-int8"].is_file():
        _quantize(paths["onnx"], paths["onnx-int8"])
    reused = not traced
    reference = build_encoder(cpu_card).encode(VERIFY, "query")
    report: dict[str, Any] = {"expert": card.name, "hash": card.hash, "dir": str(dest), "reused": reused,
                              "runtimes": {}, "cards": {}}
    for runtime, path in paths.items():
        new = dataclasses.replace(card, name=f"{card.name}-{SUFFIX[runtime]}", runtime=runtime,
                                  runtime_file=str(path), runtime_sha256=file_sha256(path))
        cosine = float(_cosines(build_encoder(dataclasses.replace(new, device="cpu", threads=1))
                                .encode(VERIFY, "query"), reference).min())
        if runtime == "onnx" and cosine < MIN_FLOAT_COSINE:
            raise HetmoeError(f"expert {card.name!r}: the exported float32 graph {path} disagrees with torch (min "
                              f"cosine {cosine:.6f} < {MIN_FLOAT_COSINE}); export again with --overwrite")
        report["runtimes"][runtime] = {"card": new.name, "hash": new.hash, "file": str(path),
                                       "bytes": path.stat().st_size, "min_cosine_to_torch": round(cosine, 6)}
        report["cards"][new.name] = new
    report["seconds"] = round(time.perf_counter() - began, 2)
    return report
