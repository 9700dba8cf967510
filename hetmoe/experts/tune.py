"""``hetmoe tune``: LoRA-tune a sentence-transformers expert on a dataset's train judgments; freeze it as a new card.

The paper's step before the experts are frozen. LoRA (peft, rank ``lora_r`` on every linear layer of the transformer)
keeps the tuned expert close to its base and cheap to train on CPU; everything outside the adapters stays frozen.
``lora_r`` = 0 trains every weight instead (what ``hetmoe distil`` does by default: a student has more to learn).
The loss is CoSENT: a ranking loss over every pair of pairs in a batch whose graded scores differ, so grades 3 > 2 > 1
> 0 are all used as an order, and only the order of cosines is asked for, which is what AUC and nDCG measure (a
regression loss such as CosineSimilarityLoss would also ask for arbitrary absolute cosine values). AnglELoss is the
same ranking loss on angle differences; it helps when cosines saturate near 1, which short product titles do not.

Training, early stopping, resuming and freezing the result as a new card are :mod:`hetmoe.experts.trainer`'s, shared
with ``hetmoe distil``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hetmoe.data.validate import check_dataset
from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard
from hetmoe.experts.cardfile import BARE_NAME
from hetmoe.experts.train_options import TuneOptions
from hetmoe.experts.trainer import train_card
from hetmoe.experts.tune_pairs import TunePairs, build_pairs

TUNABLE = ("sentence-transformers",)
DEFAULT_ROOT = Path("stores") / "tuned"
REPORT = "tune.json"


def check_trainable(card: ExpertCard, options: TuneOptions, suffix: str = "tuned") -> str:
    """Refuse what cannot be trained, before any data or model is loaded; returns the new card's name (default
    ``<card>-<suffix>``)."""
    if card.backend not in TUNABLE:
        raise HetmoeError(f"expert {card.name!r} has backend {card.backend!r}; only cards with backend "
                          f"{', '.join(repr(b) for b in TUNABLE)} can be tuned")
    name = options.name or f"{card.name}-{suffix}"
    if name == card.name or not BARE_NAME.match(name):
        raise HetmoeError(f"--name {name!r} must differ from the base card and use only letters, digits, '_' and '-'")
    if options.epochs <= 0 or options.lr <= 0 or options.lora_r < 0 or options.batch_size < 2 or options.patience < 1:
        raise HetmoeError("--epochs and --lr must be > 0, --lora-r >= 0 (0: every weight), --patience >= 1, "
                          "--batch-size >= 2")
    return name


def fingerprint(card: ExpertCard, pairs: TunePairs, options: TuneOptions) -> str:
    """16 hex digits naming one training run: the base card, the exact pairs and every option but the name."""
    settings = {k: v for k, v in asdict(options).items() if k != "name"}
    blob = json.dumps({"base": card.hash, "data": pairs.fingerprint, "options": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]



def tune_expert(card: ExpertCard, data: str | Path, out: str | Path | None = None, cards_out: str | Path | None = None,
                options: TuneOptions = TuneOptions(), overwrite: bool = False) -> dict[str, Any]:
    """Tune ``card`` on ``data``; writes the merged model, ``card.toml`` and ``tune.json`` to ``out`` and returns the
    report. ``cards_out`` also receives the new card (appended, or replaced with ``overwrite``)."""
    name = check_trainable(card, options)
    dataset = check_dataset(data)
    pairs = build_pairs(dataset, options.held_out, options.seed, options.max_pairs)
    run_id = fingerprint(card, pairs, options)
    out = Path(out) if out is not None else DEFAULT_ROOT / f"{name}-{run_id[:12]}"
    return train_card(card, name, run_id, data, pairs, options, out, cards_out, overwrite, REPORT)


