"""``sentence-transformers``: any ST model, including decoder-LLM embedders (Qwen3-Embedding, EmbeddingGemma).

The card is the truth about prompts and pooling: the model's own default prompt is switched off, a Pooling module
that disagrees with the card is an error, and a plain Hugging Face model directory (no ``modules.json``) gets a
Transformer + Pooling pipeline built from the card. Last-token pooling always runs with left padding and a pad token,
so a text gives the same vector alone and inside a padded batch whatever the saved tokenizer says.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.experts.base import Encoder, cpu_threads
from hetmoe.experts.onednn import pack_linears
from hetmoe.experts.card import ExpertCard, Kind
from hetmoe.experts.locate import resolve_model
from hetmoe.experts.openmp import short_spin
from hetmoe.experts.registry import register_backend

log = logging.getLogger(__name__)


def resolve_device(card: ExpertCard) -> str:
    """``auto`` -> cuda when available else cpu; ``cuda`` / ``cuda:N`` without that GPU is a user error."""
    import torch

    if card.runtime != "torch":
        return "cpu"  # ONNX Runtime runs here on the CPU (the card refuses a cuda device with it)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if card.device == "auto":
        return "cuda" if gpus else "cpu"
    index = int(card.device.partition(":")[2] or 0) if card.device.startswith("cuda") else None
    if index is not None and index >= gpus:
        raise HetmoeError(f"expert {card.name!r}: device = \"{card.device}\" but {gpus} CUDA GPU(s) are visible; "
                          "set device = \"auto\" or a visible cuda:N")
    return card.device


def resolve_dtype(card: ExpertCard, device: str) -> str:
    """The precision the model runs in: float32 on CPU; the card's dtype on CUDA, ``auto`` being bfloat16 where the
    GPU supports it (float16's range overflows in some models, EmbeddingGemma's activations among them), else float32."""
    if not device.startswith("cuda"):
        return "float32"
    if card.dtype != "auto":
        return card.dtype
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"


def _load(card: ExpertCard, path: Path, device: str) -> Any:
    """A SentenceTransformer from an ST directory, or Transformer + Pooling(card.pooling) from a plain HF one."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    if (path / "modules.json").is_file():
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    elif path.is_dir() and not (path / "config.json").is_file():
        raise HetmoeError(f"expert {card.name!r}: {path} holds no model (neither a sentence-transformers "
                          "modules.json nor a transformers config.json); point model at the model's folder")
    else:
        if card.pooling is None:
            raise HetmoeError(
                f"expert {card.name!r}: {path} is a plain transformers model (no modules.json); "
                "set pooling (e.g. \"lasttoken\" for decoder LLMs, \"mean\" for encoders) in the card"
            )
        from sentence_transformers.base.modules import Transformer

        transformer = Transformer(str(path), model_kwargs={"local_files_only": True},
                                  processor_kwargs={"local_files_only": True},
                                  config_kwargs={"local_files_only": True})
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=card.pooling)
        model = SentenceTransformer(modules=[transformer, pooling], device=device)
    poolings = [m for m in model if isinstance(m, Pooling)]
    modes = {m.pooling_mode if isinstance(m.pooling_mode, str) else "+".join(m.pooling_mode) for m in poolings}
    if card.pooling is not None and modes and modes != {card.pooling}:
        raise HetmoeError(
            f"expert {card.name!r}: card says pooling = {card.pooling!r} but the model pools with {sorted(modes)}; "
            "set pooling to the model's mode (or remove it from the card)"
        )
    return model


def _left_pad(card: ExpertCard, model: Any) -> None:
    """Last-token pooling reads the final real token: pad on the left and make sure a pad token exists."""
    tok = model.tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise HetmoeError(
                f"expert {card.name!r}: the tokenizer has neither a pad nor an eos token; add a pad token to it"
            )
        tok.pad_token = tok.eos_token


def load_model(card: ExpertCard) -> tuple[Any, str]:
    """The card's SentenceTransformer exactly as the backend encodes with it (max_length, left padding for last-token
    pooling, prompt names checked, the model's default prompt off), float32 and unpacked: shared by the encoder and by
    ``hetmoe tune``, so a tuned expert is trained on the same inputs it later embeds. Returns (model, device)."""
    path = resolve_model(card)  # fails fast, before torch is even imported
    with short_spin():  # effective when this is torch's first import: its libgomp loads now
        import torch  # noqa: F401

    device = resolve_device(card)
    model = _load(card, path, device)
    if card.max_length is not None:
        model.max_seq_length = card.max_length
    if card.pooling == "lasttoken" or any(getattr(m, "pooling_mode", None) == "lasttoken" for m in model):
        _left_pad(card, model)
    for kind in ("query", "document"):
        name = card.prompt(kind)[1]  # type: ignore[arg-type]
        if name is not None and name not in model.prompts:
            raise HetmoeError(
                f"expert {card.name!r}: {kind}_prompt_name {name!r} is not among the model's prompts "
                f"{sorted(model.prompts)}; use one of them or set {kind}_prompt to the literal text"
            )
    model.default_prompt_name = None
    log.debug("expert %s: loaded %s on %s", card.name, path, device)
    return model, device


@register_backend("sentence-transformers")
class SentenceTransformerEncoder(Encoder):
    """``model`` is an ST/HF model directory, ``pkg:<module>/<dir>``, or a hub id found in the local cache."""

    returns_normalized = True

    def __init__(self, card: ExpertCard) -> None:
        self.check_card(card)
        model, device = load_model(card)
        dtype = resolve_dtype(card, device)
        if dtype != "float32":
            import torch

            model.to(getattr(torch, dtype))
        model.eval()
        self._model = model
        self.device = device
        super().__init__(card, int(model.get_embedding_dimension()))
        if card.runtime != "torch":
            from hetmoe.experts.runtime import attach

            attach(card, model, lambda: self.call_threads() or cpu_threads(card))
        packed = pack_linears(model) if device == "cpu" and card.runtime == "torch" else 0
        log.info("expert %s: %s on %s (%s, %s, %d linear layers on oneDNN)", card.name, card.model, device, dtype,
                 card.runtime, packed)

    def _encode(self, texts: list[str], kind: Kind) -> np.ndarray:
        prompt, prompt_name = self.card.prompt(kind)
        with self._threads():
            return self._model.encode(
                texts,
                prompt=prompt,
                prompt_name=prompt_name,
                batch_size=self.card.batch_size,
                normalize_embeddings=self.card.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

    @contextmanager
    def _threads(self) -> Iterator[None]:
        """Apply the call's CPU thread count for this call only: torch's setting is process-wide."""
        threads = self.call_threads()
        if self.device != "cpu" or not threads or self.card.runtime != "torch":  # ONNX Runtime: one session per count
            yield
            return
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
