"""Decoder-LLM embedders through the sentence-transformers backend, on tiny random Qwen3 / Gemma3 models built here.

The point is last-token pooling with padding done right: a text gives the same vector alone and inside a padded batch
of texts of other lengths, whatever padding side the saved tokenizer declares, and equal to the hidden state of the
text's own last token computed directly with transformers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import Gemma3TextConfig, Gemma3TextModel, PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard
from hetmoe.experts.registry import build_encoder

CORPUS = ["cordless drill 18v battery", "lámpara de techo moderna", "red cotton t-shirt for men", "sink faucet chrome"]
TEXTS = ["drill", "red cotton t-shirt for men with a much longer description than the others", "lámpara", "sink tap"]
PROMPT = "Query: "


def _tokenizer(padding_side: str, pad: bool) -> PreTrainedTokenizerFast:
    """A small byte-level BPE that appends <eos> like Qwen3-Embedding's tokenizer does."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 10, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<eos>", "<unk>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    ))
    tok.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", 1)])
    extra = {"pad_token": "<pad>"} if pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>",
                                   padding_side=padding_side, **extra)


def _save(root: Path, arch: str, padding_side: str, pad: bool = True) -> Path:
    tok = _tokenizer(padding_side, pad)
    torch.manual_seed(0)
    tiny = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, max_position_embeddings=128, eos_token_id=1, pad_token_id=0)
    if arch == "qwen3":
        model = Qwen3Model(Qwen3Config(**tiny))
    else:  # sliding window shorter than the long text, so the local layers really slide
        model = Gemma3TextModel(Gemma3TextConfig(**tiny, sliding_window=4))
    path = root / f"{arch}-{padding_side}-{'pad' if pad else 'nopad'}"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("tiny-llm")
    return {(arch, side): _save(root, arch, side) for arch in ("qwen3", "gemma3") for side in ("left", "right")}


def _card(path: Path, pooling: str = "lasttoken") -> ExpertCard:
    return ExpertCard(name="tiny", backend="sentence-transformers", model=str(path), pooling=pooling,
                      query_prompt=PROMPT, max_length=64, device="cpu", batch_size=4, threads=1)


def _direct_last_token(path: Path, text: str) -> np.ndarray:
    """Reference: run the saved model on the unpadded text and take its final hidden state, normalised."""
    tok = PreTrainedTokenizerFast.from_pretrained(path)
    model = (Qwen3Model if "qwen3" in path.name else Gemma3TextModel).from_pretrained(path).eval()
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add latency on a busy machine
    try:
        with torch.no_grad():
            hidden = model(**tok([PROMPT + text], return_tensors="pt")).last_hidden_state[0, -1].numpy()
    finally:
        torch.set_num_threads(before)
    return hidden / np.linalg.norm(hidden)


@pytest.mark.parametrize("arch", ["qwen3", "gemma3"])
@pytest.mark.parametrize("saved_side", ["left", "right"])
def test_lasttoken_alone_equals_in_padded_batch(tiny_models: dict, arch: str, saved_side: str) -> None:
    path = tiny_models[(arch, saved_side)]
    enc = build_encoder(_card(path))
    assert enc._model.tokenizer.padding_side == "left"  # forced even when the tokenizer was saved right-padded
    batch = enc.encode(TEXTS, "query")
    alone = np.concatenate([enc.encode([t], "query") for t in TEXTS])
    assert batch.shape == (4, 32) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, alone, atol=1e-4)
    np.testing.assert_allclose(batch[1], _direct_last_token(path, TEXTS[1]), atol=1e-4)
    assert np.abs(batch - enc.encode(TEXTS, "document")).max() > 1e-3  # the query prompt matters


def test_mean_pooling_is_padding_invariant_too(tiny_models: dict) -> None:
    enc = build_encoder(_card(tiny_models[("gemma3", "right")], pooling="mean"))
    batch = enc.encode(TEXTS, "document")
    np.testing.assert_allclose(batch, np.concatenate([enc.encode([t], "document") for t in TEXTS]), atol=1e-4)


def test_tokenizer_without_pad_token_pads_with_eos(tmp_path: Path) -> None:
    path = _save(tmp_path, "qwen3", "right", pad=False)
    enc = build_encoder(_card(path))
    assert enc._model.tokenizer.pad_token == "<eos>"
    np.testing.assert_allclose(enc.encode(TEXTS, "query"),
                               np.concatenate([enc.encode([t], "query") for t in TEXTS]), atol=1e-4)


def test_plain_model_needs_pooling_and_known_prompt_names(tiny_models: dict) -> None:
    path = tiny_models[("qwen3", "left")]
    with pytest.raises(HetmoeError, match="no modules.json.*set pooling"):
        build_encoder(ExpertCard(name="tiny", backend="sentence-transformers", model=str(path)))
    with pytest.raises(HetmoeError, match="query_prompt_name 'search' is not among the model's prompts"):
        build_encoder(ExpertCard(name="tiny", backend="sentence-transformers", model=str(path), pooling="lasttoken",
                                 query_prompt_name="search"))
    with pytest.raises(HetmoeError, match="declares dim = 1024 but the model produces 32-d"):
        build_encoder(ExpertCard(name="tiny", backend="sentence-transformers", model=str(path), pooling="lasttoken",
                                 dim=1024))
