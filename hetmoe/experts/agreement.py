"""How close an exported runtime's vectors are to float32 torch's: what ``hetmoe experts check`` reports for a card
with ``runtime = "onnx" | "onnx-int8"``, and what a person reads before stating ``interchangeable_with``.

Two measures: the cosine between each text's runtime vector and its float32 vector (mean and minimum, as query and
as document), and, on a dataset, the change of the raw-cosine AUC (positives: ``relevant`` judgments, macro over
markets) of the split's pairs, both with runtime queries against float32 items (serving queries with int8 against
stored float32 item vectors) and with runtime vectors on both sides (a store embedded with the runtime). The runtime is
called safe to interchange when the mean cosine is at least 0.99 and both AUC changes are within 0.3 points.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hetmoe.experts.base import Encoder
from hetmoe.experts.card import ExpertCard
from hetmoe.metrics import auc_by_market, macro

MIN_MEAN_COSINE = 0.99
MAX_AUC_CHANGE_PP = 0.3
CHUNK = 256  # texts per encode call (a progress step)
TEXTS = ["cordless drill 18v", "lámpara de techo LED", "kemeja batik pria lengan panjang", "sink faucet chrome",
         "ชุดเครื่องนอน 6 ฟุต", "Akku-Bohrschrauber mit zwei Akkus", "vinyl plank flooring waterproof 12mm",
         "wireless earbuds noise cancelling", "tapis de bain antidérapant", "garden hose 50 ft expandable",
         "kids winter jacket waterproof size 8", "copper pipe fitting 3/4 inch elbow"]


def float32_twin(card: ExpertCard) -> ExpertCard:
    """The torch card a runtime card was exported from (same hash as that card: name is not part of it)."""
    return dataclasses.replace(card, name=f"{card.name}-torch", runtime="torch", runtime_file=None, runtime_sha256=None,
                               interchangeable_with=None)


def _unit(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def encode(encoder: Encoder, texts: list[str], kind: str, label: str) -> np.ndarray:
    """All texts in chunks, with a progress bar when there are many."""
    from tqdm.auto import tqdm

    chunks = [texts[i:i + CHUNK] for i in range(0, len(texts), CHUNK)]
    bar = tqdm(chunks, desc=f"{label} {kind}s", unit="chunk", disable=len(chunks) < 4, leave=False)
    return np.concatenate([encoder.encode(c, kind) for c in bar]) if chunks else np.zeros((0, encoder.dim))  # type: ignore[arg-type]


def cosine_agreement(runtime: Encoder, reference: Encoder, texts: list[str]) -> dict[str, Any]:
    """Per kind, the mean and minimum cosine between each text's runtime and reference vector."""
    out: dict[str, Any] = {"texts": len(texts)}
    for kind in ("query", "document"):
        cos = np.sum(_unit(encode(runtime, texts, kind, "runtime")) * _unit(encode(reference, texts, kind, "float32")), 1)
        out[kind] = {"mean_cosine": round(float(cos.mean()), 6), "min_cosine": round(float(cos.min()), 6)}
    return out


def sample_texts(dataset: Any, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` distinct texts of the dataset, half queries and half item texts, seeded."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    for frame in (dataset.query_texts(), dataset.item_texts()):
        pool = frame["text"].unique(maintain_order=True).to_list()
        take = min(len(pool), n // 2 if not texts else n - len(texts))
        texts += [pool[i] for i in sorted(rng.choice(len(pool), size=take, replace=False))]
    return texts


def auc_change(runtime: Encoder, reference: Encoder, dataset: Any, split: str) -> dict[str, Any]:
    """Raw-cosine AUC (macro over markets) of the split's judged pairs: float32 on both sides, runtime queries against
    float32 items, runtime on both sides; changes in percentage points."""
    from hetmoe.errors import HetmoeError

    judged = dataset.judgments.filter(pl.col("split") == split)
    if judged.height == 0:
        raise HetmoeError(f"{dataset.root}: no judgments in split {split!r}; pass --split with one it has")
    judged = judged.join(dataset.queries.select("query_id", "market"), on="query_id", how="left")
    queries = dataset.query_texts().join(judged.select("query_id").unique(), on="query_id", how="semi")
    items = dataset.item_texts().join(judged.select("item_id").unique(), on="item_id", how="semi")
    qrow = {q: i for i, q in enumerate(queries["query_id"].to_list())}
    irow = {d: i for i, d in enumerate(items["item_id"].to_list())}
    qi = np.fromiter((qrow[q] for q in judged["query_id"].to_list()), dtype=np.int64, count=judged.height)
    di = np.fromiter((irow[d] for d in judged["item_id"].to_list()), dtype=np.int64, count=judged.height)
    q_texts, d_texts = queries["text"].to_list(), items["text"].to_list()
    q = {"float32": _unit(encode(reference, q_texts, "query", "float32")),
         "runtime": _unit(encode(runtime, q_texts, "query", "runtime"))}
    d = {"float32": _unit(encode(reference, d_texts, "document", "float32")),
         "runtime": _unit(encode(runtime, d_texts, "document", "runtime"))}
    labels, markets = judged["relevant"].to_numpy(), judged["market"].to_numpy()

    def auc(qs: str, ds: str) -> float:
        return macro(auc_by_market(np.sum(q[qs][qi] * d[ds][di], 1), labels, markets))

    base, mixed, both = auc("float32", "float32"), auc("runtime", "float32"), auc("runtime", "runtime")
    return {"split": split, "pairs": judged.height, "queries": len(q_texts), "items": len(d_texts),
            "auc_float32": round(base, 5), "auc_runtime_queries": round(mixed, 5), "auc_runtime": round(both, 5),
            "change_pp_runtime_queries": round(100 * (mixed - base), 3), "change_pp_runtime": round(100 * (both - base), 3)}


def check_runtime(card: ExpertCard, runtime: Encoder, texts: list[str], dataset: Any = None,
                  split: str = "valid") -> dict[str, Any]:
    """The agreement report of one runtime card against its float32 twin, with the verdict and, when safe, the card
    line that states it."""
    from hetmoe.experts.registry import build_encoder

    twin = float32_twin(card)
    reference = build_encoder(twin)
    report: dict[str, Any] = {"float32_hash": twin.hash, **cosine_agreement(runtime, reference, texts)}
    safe = min(report["query"]["mean_cosine"], report["document"]["mean_cosine"]) >= MIN_MEAN_COSINE
    if dataset is not None:
        report["auc"] = auc_change(runtime, reference, dataset, split)
        changes = (report["auc"]["change_pp_runtime_queries"], report["auc"]["change_pp_runtime"])
        safe = safe and all(abs(c) <= MAX_AUC_CHANGE_PP for c in changes)
    report["safe"] = safe
    report["bars"] = {"min_mean_cosine": MIN_MEAN_COSINE,
                      "max_auc_change_pp": MAX_AUC_CHANGE_PP if dataset is not None else "not measured (no --data)"}
    if safe and dataset is not None:
        report["statement"] = f'interchangeable_with = "{twin.hash}"'
    report["states"] = card.interchangeable_with
    return report


def data_and_texts(data: Path | None, sample: int) -> tuple[Any, list[str]]:
    """The dataset (or None) and the texts the cosine check encodes: a sample of it, else the built-in texts."""
    if data is None:
        return None, list(TEXTS)
    from hetmoe.data.dataset import load_dataset

    dataset = load_dataset(data)
    return dataset, sample_texts(dataset, sample)
