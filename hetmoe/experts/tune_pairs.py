"""What ``hetmoe tune`` learns from and is judged on: train judgments as (query, document, score) pairs, and held-out
train queries scored by macro AUC.

Texts are exactly what ``embed`` encodes (``Dataset.query_texts`` / ``item_texts``; the card's prompts are added by the
trainer and the evaluator the way the backend adds them). The score is the graded label min-max rescaled over the
dataset's label levels, so 0 is the worst grade and 1 the best whatever scale a source uses. The held-out queries
are a seeded share of each market's train queries, so early stopping never looks at the valid split that
``fit-head`` and ``eval`` report on.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from sentence_transformers.base.evaluation import BaseEvaluator

from hetmoe.data.dataset import Dataset
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard
from hetmoe.metrics import auc, macro

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TunePairs:
    """Training pairs (query, document, score) and held-out pairs (+ relevant, market), with a content fingerprint."""

    train: pl.DataFrame
    held_out: pl.DataFrame
    held_out_queries: int
    fingerprint: str


def held_out_ids(train: pl.DataFrame, share: float, seed: int) -> set[str]:
    """A seeded ``share`` of each market's train queries (at least one where a market has two or more)."""
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    per_market = train.select("query_id", "market").unique().sort("market", "query_id")
    for (market,), group in per_market.group_by("market", maintain_order=True):
        ids = group["query_id"].to_list()
        if len(ids) < 2:
            continue
        n = min(len(ids) - 1, max(1, math.ceil(share * len(ids))))
        chosen.update(ids[i] for i in rng.permutation(len(ids))[:n])
    return chosen


def frames_fingerprint(*frames: pl.DataFrame) -> str:
    """sha256 over every cell of the frames in row order (the rows are few enough to join in Python)."""
    digest = hashlib.sha256()
    for frame in frames:
        rows = frame.select(pl.concat_str([pl.col(c).cast(pl.String) for c in frame.columns], separator="\x1f"))
        digest.update("\x1e".join(rows.to_series().to_list()).encode("utf-8"))
        digest.update(b"\x1d")
    return digest.hexdigest()


def judged_pairs(dataset: Dataset) -> pl.DataFrame:
    """The 'train' judgments with their market, texts (``query``, ``document``) and ``score`` (the grade in [0, 1])."""
    judged = dataset.judgments.filter(pl.col("split") == "train")  # never empty: check_dataset demands a train split
    low, high = dataset.judgments["label"].min(), dataset.judgments["label"].max()
    if high <= low:
        raise HetmoeError(f"{dataset.root}: every label is {low}; training needs at least two grades")
    return (judged.join(dataset.queries.select("query_id", "market"), on="query_id")
            .join(dataset.query_texts().rename({"text": "query"}), on="query_id")
            .join(dataset.item_texts().rename({"text": "document"}), on="item_id")
            .with_columns(((pl.col("label") - low) / (high - low)).alias("score"))
            .sort("query_id", "item_id"))


def build_pairs(dataset: Dataset, held_out_share: float, seed: int, max_pairs: int | None = None) -> TunePairs:
    """Pairs from the dataset's 'train' judgments; ``max_pairs`` caps the training pairs (a seeded sample)."""
    if not 0 < held_out_share < 1:
        raise HetmoeError(f"--held-out {held_out_share} is out of range; use a share in (0, 1), e.g. 0.12")
    pairs = judged_pairs(dataset)
    held = held_out_ids(pairs, held_out_share, seed)
    is_held = pl.col("query_id").is_in(sorted(held))
    train = pairs.filter(~is_held).select("query", "document", "score")
    held_out = pairs.filter(is_held).select("query_id", "market", "query", "document", "relevant")
    if train.height == 0 or held_out.height == 0:
        raise HetmoeError(f"{dataset.root}: too few train queries to hold some out (need two or more in a market); "
                          "add train judgments")
    if max_pairs is not None and train.height > max_pairs:
        if max_pairs < 2:
            raise HetmoeError(f"--max-pairs {max_pairs} is too small; use at least 2")
        log.info("tune: sampling %d of %d training pairs (--max-pairs)", max_pairs, train.height)
        train = train.sample(max_pairs, seed=seed)
    train = train.sample(fraction=1.0, shuffle=True, seed=seed)
    return TunePairs(train, held_out, len(held), frames_fingerprint(train, held_out))


def _unique(texts: pl.Series) -> tuple[list[str], np.ndarray]:
    """Distinct texts (each encoded once) and, per row, the index of its text among them."""
    distinct = texts.unique(maintain_order=True).to_list()
    index = {text: i for i, text in enumerate(distinct)}
    return distinct, np.fromiter((index[t] for t in texts.to_list()), dtype=np.int64, count=len(texts))


@dataclass(eq=False)
class HeldOutAUC(BaseEvaluator):
    """Macro over markets of the AUC of query-document cosine on held-out pairs (relevant as the class); every call
    is also kept in ``history`` so the tuner can pick the best step and report the curve."""

    card: ExpertCard
    pairs: pl.DataFrame
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self.primary_metric = "macro_auc"
        self._queries, self._q = _unique(self.pairs["query"])
        self._documents, self._d = _unique(self.pairs["document"])
        self._labels = self.pairs["relevant"].to_numpy()
        self._markets = self.pairs["market"].to_numpy()
        if not np.isfinite(self._score(np.zeros(len(self.pairs)))["macro_auc"]):
            raise HetmoeError("no market's held-out queries have both relevant and irrelevant pairs; raise --held-out "
                              "or add judgments")

    def _embed(self, model: Any, texts: list[str], kind: str) -> np.ndarray:
        prompt, prompt_name = self.card.prompt(kind)  # type: ignore[arg-type]
        return model.encode(texts, prompt=prompt, prompt_name=prompt_name, batch_size=self.card.batch_size,
                            normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)

    def _score(self, cosine: np.ndarray) -> dict[str, Any]:
        by_market = {str(m): auc(cosine[self._markets == m], self._labels[self._markets == m])
                     for m in np.unique(self._markets)}
        return {"macro_auc": macro(by_market), "by_market": by_market}

    def __call__(self, model: Any, output_path: str | None = None, epoch: float = -1,
                 steps: int = -1) -> dict[str, float]:
        began = time.perf_counter()
        q = self._embed(model, self._queries, "query")[self._q]
        d = self._embed(model, self._documents, "document")[self._d]
        result = self._score(np.einsum("ij,ij->i", q, d))
        self.history.append({"step": max(steps, 0), "epoch": round(max(float(epoch), 0.0), 4), **result,
                             "seconds": round(time.perf_counter() - began, 2)})
        log.info("step %d: held-out macro AUC %.4f", max(steps, 0), result["macro_auc"])
        return {"macro_auc": result["macro_auc"]}
