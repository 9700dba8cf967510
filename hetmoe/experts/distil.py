"""``hetmoe distil``: teach one sentence-transformers student what the mixture knows, and freeze it as a new card.

The production path of a mixture: the ensemble labels many (query, item) pairs offline (bulk ``score``), and a single
fast student serves online. The student is trained with the loss ``tune`` uses, CoSENT, on a target that blends the
teacher's score with the judged grade where there is one: ``(1 - w) teacher + w grade``, the teacher alone on drawn
candidates. Why CoSENT and not a per-query loss (MarginMSE, listwise KL): the metric is each market's AUC over every
pair of every query, so the order of cosines *across* queries matters, and CoSENT asks the student for the
teacher's order over every pair of pairs in a batch; and it asks only for order, so the teacher's probabilities and
the student's cosines need no common scale.

Early stopping watches the student's raw-cosine macro AUC on held-out train queries (their judged pairs are never
drawn or labelled), so the valid split that ``eval`` reports on stays unseen. The output is a plain
sentence-transformers folder with a card whose ``revision`` is the run's fingerprint (base card, labelled pairs,
options): ``embed`` treats it as a new expert, served alone or in a new mixture.

Costs: labelling is the teacher's bulk cost per pair (see :mod:`hetmoe.experts.distil_pairs`); training is one
forward and backward pass of the student per pair and epoch, plus the held-out evaluations.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from hetmoe.data.dataset import Dataset
from hetmoe.data.validate import check_dataset
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard
from hetmoe.experts.distil_pairs import label_pairs, labels_folder, labels_identity
from hetmoe.experts.train_options import DISTIL_TRAINING, TuneOptions
from hetmoe.experts.trainer import train_card
from hetmoe.experts.tune import check_trainable, fingerprint
from hetmoe.experts.tune_pairs import TunePairs, frames_fingerprint, held_out_ids, judged_pairs
from hetmoe.scale.session import PoolSpec

log = logging.getLogger(__name__)
DEFAULT_ROOT = Path("stores") / "distil"
REPORT = "distil.json"


@dataclass(frozen=True)
class DistilOptions:
    """How pairs are drawn and labelled, how the target blends teacher and grade, and the training settings."""

    pairs_per_query: int = 8
    label_weight: float = 0.5
    engine: str = "local"
    train: TuneOptions = field(default_factory=lambda: DISTIL_TRAINING)


def _check(options: DistilOptions) -> None:
    if options.pairs_per_query < 0:
        raise HetmoeError(f"--pairs-per-query {options.pairs_per_query}: use 0 (judged pairs only) or more")
    if not 0.0 <= options.label_weight <= 1.0:
        raise HetmoeError(f"--label-weight {options.label_weight}: use a weight in [0, 1] (0: the teacher alone)")
    if options.engine not in ("local", "ray"):
        raise HetmoeError(f"--engine {options.engine!r}: choose local or ray")
    if not 0 < options.train.held_out < 1:
        raise HetmoeError(f"--held-out {options.train.held_out} is out of range; use a share in (0, 1), e.g. 0.12")


def distil(model_dir: str | Path, data: str | Path, student: ExpertCard, out: str | Path | None = None,
           cards_out: str | Path | None = None, labels: str | Path | None = None,
           options: DistilOptions = DistilOptions(), pool: PoolSpec | None = None, overwrite: bool = False,
           progress: bool = True) -> dict[str, Any]:
    """Label ``data``'s train queries with the mixture at ``model_dir`` and train ``student`` on the labels; writes the
    student's folder (model, ``card.toml``, ``distil.json``) to ``out`` and returns the report."""
    _check(options)
    name = check_trainable(student, options.train, suffix="distil")
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise HetmoeError(f"--model {model_dir}: no such folder; pass the folder 'hetmoe fit-head' wrote")
    dataset = check_dataset(data)
    train = judged_pairs(dataset)
    held = held_out_ids(train, options.train.held_out, options.train.seed)
    identity = labels_identity(model_dir, dataset, options.pairs_per_query, options.train.held_out, options.train.seed)
    folder = Path(labels) if labels is not None else labels_folder(identity)
    labelled, summary = label_pairs(model_dir, dataset, train.filter(~pl.col("query_id").is_in(sorted(held))),
                                    options.pairs_per_query, folder, identity, options.engine, pool, progress)
    pairs = student_pairs(dataset, train, labelled, held, options)
    run_id = fingerprint(student, pairs, dataclasses.replace(options.train, name=None))
    out = Path(out) if out is not None else DEFAULT_ROOT / f"{name}-{run_id[:12]}"
    extra = {"teacher": {"model": str(model_dir), "fingerprint": identity["teacher"]},
             "labels": {"folder": str(folder), **summary}, "label_weight": options.label_weight,
             "pairs_per_query": options.pairs_per_query}
    return train_card(student, name, run_id, data, pairs, options.train, out, cards_out, overwrite, REPORT, extra)


def student_pairs(dataset: Dataset, train: pl.DataFrame, labelled: pl.DataFrame, held: set[str],
                  options: DistilOptions) -> TunePairs:
    """Training pairs (query, document, score = the blended target) from the labelled pairs, and the held-out
    queries' judged pairs for early stopping."""
    w, grade = options.label_weight, pl.col("grade")  # the judged grade in [0, 1], as judged_pairs rescales it
    target = pl.when(grade.is_null()).then(pl.col("teacher")).otherwise((1 - w) * pl.col("teacher") + w * grade)
    grades = train.select("query_id", "item_id", pl.col("score").alias("grade"))
    frame = (labelled.join(grades, on=["query_id", "item_id"], how="left")
             .join(dataset.query_texts().rename({"text": "query"}), on="query_id")
             .join(dataset.item_texts().rename({"text": "document"}), on="item_id")
             .sort("query_id", "item_id")
             .select("query", "document", target.alias("score")))
    if options.train.max_pairs is not None and frame.height > options.train.max_pairs:
        log.info("sampling %d of %d labelled pairs (--max-pairs)", options.train.max_pairs, frame.height)
        frame = frame.sample(options.train.max_pairs, seed=options.train.seed)
    frame = frame.sample(fraction=1.0, shuffle=True, seed=options.train.seed)
    held_out = train.filter(pl.col("query_id").is_in(sorted(held))).select("query_id", "market", "query", "document",
                                                                           "relevant")
    if frame.height == 0 or held_out.height == 0:
        raise HetmoeError(f"{dataset.root}: too few train queries to hold some out (need two or more in a market)")
    return TunePairs(frame, held_out, len(held), frames_fingerprint(frame, held_out))
