"""What half precision does to an expert's vectors, measured against float32 on CPU.

Usage: ``python bench/dtype.py [--data DIR] [--experts minilm] [--items 600] [--queries 200] [--tiny]``.

A card's ``dtype`` is the precision on CUDA (CPU always runs float32); this machine has no GPU, so the model is cast
to each precision on CPU and encodes the same texts there: ``min_cos`` / ``mean_cos`` compare each text's vector with
its float32 one, ``top10`` is the share of each query's 10 nearest items (by cosine, among ``--items``) that float32
finds too, ``auc`` the raw-cosine AUC of the judged pairs among those texts (float32 in the first row). ``--tiny``
adds tiny random Qwen3 and Gemma3 models (the decoder architectures of the qwen and gemma cards; their overflow in
float16 comes from trained weights, which a random model lacks). Texts come from ``--data`` (default: the demo
dataset). Prints one JSON object (also bench/results/dtype.json) and a short table.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import print_table, publish  # noqa: E402

DTYPES = ("float32", "bfloat16", "float16")


def _texts(data: Path, n_items: int, n_queries: int) -> tuple[list[str], list[str], Any]:
    """Item and query texts of the dataset, and their judged pairs as (query row, item row, relevant)."""
    import polars as pl

    from hetmoe.data.validate import check_dataset

    dataset = check_dataset(data)
    items = dataset.item_texts().head(n_items)
    queries = dataset.query_texts().head(n_queries)
    pairs = dataset.judgments.join(items.with_row_index("d").select("item_id", "d"), on="item_id").join(
        queries.with_row_index("q").select("query_id", "q"), on="query_id")
    return items["text"].to_list(), queries["text"].to_list(), pairs.select("q", "d", pl.col("relevant"))


def _encode(model: Any, card: Any, texts: list[str], kind: str) -> np.ndarray:
    """The texts through the model as the backend encodes them (the card's prompt, batch size), as float32."""
    prompt, prompt_name = card.prompt(kind)
    vectors = model.encode(texts, prompt=prompt, prompt_name=prompt_name, batch_size=card.batch_size,
                           convert_to_tensor=True, show_progress_bar=False)
    return vectors.float().cpu().numpy()


def _measure(card: Any, items: list[str], queries: list[str], pairs: Any) -> list[dict[str, Any]]:
    """Each precision's vectors against float32's. The model is the backend's own (max length, padding, prompts),
    loaded unpacked: the CPU backend's oneDNN-packed layers are float32 only."""
    import torch

    from hetmoe.experts.backends.st import load_model
    from hetmoe.metrics import auc

    model, _ = load_model(card)
    name, rows, base = card.name, [], None
    for dtype in DTYPES:
        model.to(getattr(torch, dtype))
        began = time.perf_counter()
        with torch.no_grad():
            d, q = _encode(model, card, items, "document"), _encode(model, card, queries, "query")
        seconds = time.perf_counter() - began
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        top = np.argsort(-(q @ d.T), axis=1)[:, :10]
        base = base or (d, q, top)
        cos = np.concatenate([(d * base[0]).sum(1), (q * base[1]).sum(1)])
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, base[2])])
        scores = (q[pairs["q"].to_numpy()] * d[pairs["d"].to_numpy()]).sum(1)
        rows.append({"expert": name, "dtype": dtype, "finite": bool(np.isfinite(cos).all()),
                     "min_cos": round(float(np.nanmin(cos)), 6), "mean_cos": round(float(np.nanmean(cos)), 6),
                     "top10": round(float(overlap), 4), "auc": round(auc(scores, pairs["relevant"].to_numpy()), 4),
                     "seconds": round(seconds, 2)})
    return rows


def _tiny_cards(folder: Path) -> list[Any]:
    """Tiny random Qwen3 and Gemma3 models saved with a small BPE tokenizer, as ST cards with last-token pooling."""
    tests = Path(__file__).resolve().parents[1] / "tests"
    sys.path.insert(0, str(tests))
    from test_experts_llm import _save

    from hetmoe.experts.card import ExpertCard

    return [ExpertCard(name=f"tiny-{arch}", backend="sentence-transformers", model=str(_save(folder, arch, "left")),
                       pooling="lasttoken", device="cpu", batch_size=32) for arch in ("qwen3", "gemma3")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="Dataset folder (default: the demo, generated).")
    parser.add_argument("--experts", default="minilm", help="sentence-transformers cards, comma-separated.")
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--tiny", action="store_true", help="Also tiny random Qwen3 / Gemma3 models.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from hetmoe.experts.card import get_card

    work = Path(tempfile.mkdtemp(prefix="hetmoe-dtype-"))
    data = args.data
    if data is None:
        from hetmoe.data.demo import generate_demo

        data = generate_demo(work / "demo")
    items, queries, pairs = _texts(data, args.items, args.queries)
    cards = [get_card(name) for name in args.experts.split(",") if name]
    cards += _tiny_cards(work) if args.tiny else []
    rows = [row for card in cards for row in _measure(card, items, queries, pairs)]
    out = {"name": "dtype", "data": "demo" if args.data is None else Path(args.data).name, "items": len(items),
           "queries": len(queries), "pairs": pairs.height, "device": "cpu", "rows": rows}
    publish("dtype", out)
    print_table(rows, [("expert", "expert", 14), ("dtype", "dtype", 10), ("min_cos", "min cos", 10),
                       ("mean_cos", "mean cos", 10), ("top10", "top-10 kept", 12), ("auc", "AUC", 8)])
    return out


if __name__ == "__main__":
    main()
