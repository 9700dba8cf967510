"""``hetmoe tune``: LoRA-tune a sentence-transformers expert on a dataset's train judgments; freeze it as a new card.

The paper's step before the experts are frozen. LoRA (peft, rank ``lora_r`` on every linear layer of the transformer)
keeps the tuned expert close to its base and cheap to train on CPU; everything outside the adapters stays frozen.
``lora_r`` = 0 trains every weight instead (what ``hetmoe distil`` does by default: a student has more to learn).
The loss is CoSENT: a ranking loss over every pair of pairs in a batch whose graded scores differ, so grades 3 > 2 > 1
> 0 are all used as an order, and only the order of cosines is asked for, which is what AUC and nDCG measure (a
regression loss such as CosineSimilarityLoss would also ask for arbitrary absolute cosine values). AnglELoss is the
same ranking loss on angle differences; it helps when cosines saturate near 1, which short product titles do not.

The held-out metric is computed before training and after every ``eval_steps``; the best state (the untouched base
included) is kept in memory and restored at the end, and training stops after ``patience`` evaluations without a gain.
The adapters are merged into the weights and saved as a plain sentence-transformers folder, so ``embed`` needs
nothing new: the new card points at that folder and its ``revision`` is the training fingerprint (base card hash,
data, options), so its hash differs from the base card's and stores made with it are their own expert.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from datasets import Dataset as HFDataset
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import CoSENTLoss
from transformers import TrainerCallback, set_seed

from hetmoe.data.validate import check_dataset
from hetmoe.errors import HetmoeError
from hetmoe.files import dir_mode
from hetmoe.experts.backends.st import load_model, resolve_dtype
from hetmoe.experts.card import ExpertCard
from hetmoe.experts.cardfile import BARE_NAME, add_card, card_table, check_can_add
from hetmoe.experts.train_options import TuneOptions
from hetmoe.experts.tune_pairs import HeldOutAUC, TunePairs, build_pairs

log = logging.getLogger(__name__)
TUNABLE = ("sentence-transformers",)
DEFAULT_ROOT = Path("stores") / "tuned"
EVALS_PER_EPOCH = 4
REPORT, CARD_FILE = "tune.json", "card.toml"


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


class KeepBest(TrainerCallback):
    """Snapshot the trained weights (the adapters, or every weight without LoRA) whenever the held-out metric
    improves, stop after ``patience`` evaluations without a gain, and evaluate the last step too, so the tail of
    training is never left unjudged."""

    def __init__(self, trained: Any, evaluator: HeldOutAUC, patience: int) -> None:
        self.trained, self.evaluator, self.patience = trained, evaluator, patience
        self.lora = hasattr(trained, "peft_config")
        self.best = evaluator.history[-1]  # the base model's evaluation: training never returns anything worse
        self.best_state = self._weights()
        self.stale = 0
        self.stopped_early = False

    def _weights(self) -> dict[str, Any]:
        state = get_peft_model_state_dict(self.trained) if self.lora else self.trained.state_dict()
        return {k: v.detach().clone() for k, v in state.items()}

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= state.max_steps and state.global_step % args.eval_steps:
            control.should_evaluate = True

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        latest = self.evaluator.history[-1]
        if latest["macro_auc"] > self.best["macro_auc"]:
            self.best, self.best_state, self.stale = latest, self._weights(), 0
            return
        self.stale += 1
        if self.stale >= self.patience and state.global_step < state.max_steps:
            log.info("no gain in %d evaluations, stopping at step %d", self.stale, state.global_step)
            control.should_training_stop = self.stopped_early = True

    def restore(self) -> None:
        if self.lora:
            set_peft_model_state_dict(self.trained, self.best_state)
        else:
            self.trained.load_state_dict(self.best_state)


def _trainable(model: Any, options: TuneOptions) -> Any:
    """What training changes: with ``lora_r`` > 0 the transformer wrapped in peft LoRA on every linear layer (the
    rest frozen), returned as the peft model; with 0 the whole model, every weight trained."""
    if options.lora_r == 0:
        return model
    for param in model.parameters():
        param.requires_grad = False
    transformer = model[0]
    if not hasattr(transformer, "model"):
        raise HetmoeError(f"the model's first module is {type(transformer).__name__}, not a Transformer; only "
                          "transformer-based sentence-transformers models can be LoRA-tuned")
    config = LoraConfig(r=options.lora_r, lora_alpha=2 * options.lora_r, lora_dropout=0.05, target_modules="all-linear")
    transformer.model = get_peft_model(transformer.model, config)
    return transformer.model


def _arguments(card: ExpertCard, device: str, options: TuneOptions, pairs: TunePairs, model: Any, out: Path) -> Any:
    """Trainer settings: evaluation every ``eval_steps`` (no checkpoints: the best state is kept in memory)."""
    steps_per_epoch = math.ceil(pairs.train.height / options.batch_size)
    total = options.max_steps if options.max_steps > 0 else math.ceil(options.epochs * steps_per_epoch)
    eval_steps = options.eval_steps or max(1, min(steps_per_epoch // EVALS_PER_EPOCH, total // EVALS_PER_EPOCH))
    prompts = {kind: prompt for kind in ("query", "document")  # the pair columns are named after their kind
               if (prompt := _literal_prompt(card, kind, model)) is not None}
    dtype = resolve_dtype(card, device)
    return SentenceTransformerTrainingArguments(
        output_dir=str(out), num_train_epochs=options.epochs, max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size, learning_rate=options.lr, warmup_steps=0.1,
        eval_strategy="steps", eval_steps=eval_steps, logging_steps=eval_steps, save_strategy="no", report_to="none",
        seed=options.seed, data_seed=options.seed, use_cpu=device == "cpu", dataloader_pin_memory=device != "cpu",
        bf16=dtype == "bfloat16", fp16=dtype == "float16",
        prompts=prompts or None,
    )


def _literal_prompt(card: ExpertCard, kind: str, model: Any) -> str | None:
    """The text the backend puts before a ``kind`` input: the literal prompt, or the named one from the model."""
    prompt, name = card.prompt(kind)  # type: ignore[arg-type]
    return model.prompts[name] if name is not None else prompt


@contextlib.contextmanager
def _threads(card: ExpertCard, device: str) -> Iterator[None]:
    """The card's CPU thread count while training (torch's setting is process-wide, so it is restored after)."""
    import torch

    before = torch.get_num_threads()
    if device == "cpu" and card.threads:
        torch.set_num_threads(card.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tune_expert(card: ExpertCard, data: str | Path, out: str | Path | None = None, cards_out: str | Path | None = None,
                options: TuneOptions = TuneOptions(), overwrite: bool = False) -> dict[str, Any]:
    """Tune ``card`` on ``data``; writes the merged model, ``card.toml`` and ``tune.json`` to ``out`` and returns the
    report. ``cards_out`` also receives the new card (appended, or replaced with ``overwrite``)."""
    name = check_trainable(card, options)
    dataset = check_dataset(data)
    pairs = build_pairs(dataset, options.held_out, options.seed, options.max_pairs)
    run_id = fingerprint(card, pairs, options)
    out = Path(out) if out is not None else DEFAULT_ROOT / f"{name}-{run_id[:12]}"
    return train_card(card, name, run_id, data, pairs, options, out, cards_out, overwrite)


def train_card(card: ExpertCard, name: str, run_id: str, data: str | Path, pairs: TunePairs, options: TuneOptions,
               out: Path, cards_out: str | Path | None, overwrite: bool, report_file: str = REPORT,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``card`` on ``pairs`` (CoSENT on their ``score``, early stopping on the held-out pairs) into the new card
    ``name`` at ``out``, with ``report_file`` (the report, plus ``extra``); shared by ``tune`` and ``distil``."""
    if out.exists() and not overwrite:
        raise HetmoeError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    if cards_out is not None:
        check_can_add(cards_out, name, replace=overwrite)
    set_seed(options.seed)
    model, device = load_model(card)
    with _threads(card, device):
        tuned, report = _train(card, name, run_id, data, model, device, pairs, options, out, report_file, extra or {})
    if cards_out is not None:
        add_card(cards_out, tuned, replace=overwrite)
    log.info("held-out macro AUC %.4f -> %.4f (step %d); embed with: hetmoe embed --cards %s --expert %s --data %s",
             report["held_out"]["before"], report["held_out"]["best"], report["held_out"]["best_step"],
             cards_out or out / CARD_FILE, name, data)
    return report


def _train(card: ExpertCard, name: str, run_id: str, data: str | Path, model: Any, device: str, pairs: TunePairs,
           options: TuneOptions, out: Path, report_file: str, extra: dict[str, Any]) -> tuple[ExpertCard, dict[str, Any]]:
    """Evaluate the base, train, keep the best state, merge any adapters, and move the finished folder to ``out``."""
    evaluator = HeldOutAUC(card, pairs.held_out)
    evaluator(model, steps=0)
    trained = _trainable(model, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        args = _arguments(card, device, options, pairs, model, staging / "trainer")
        keep = KeepBest(trained, evaluator, options.patience)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=HFDataset.from_polars(pairs.train),
                                             loss=CoSENTLoss(model), evaluator=evaluator, callbacks=[keep])
        log.info("training %s on %d pairs (%s; %d held-out queries, %d pairs), %s", card.name, pairs.train.height,
                 f"LoRA r={options.lora_r}" if keep.lora else "every weight", pairs.held_out_queries,
                 pairs.held_out.height, device)
        began = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the trainer's loss lines; stdout stays for the JSON report
            trainer.train()
        seconds = time.perf_counter() - began
        keep.restore()
        if keep.lora:
            model[0].model = trained.merge_and_unload()
        shutil.rmtree(staging / "trainer", ignore_errors=True)
        model.save(str(staging))
        tuned = dataclasses.replace(card, name=name, model=str(out.resolve()), revision=run_id)
        (staging / CARD_FILE).write_text(f"[defaults]\nexperts = [\"{name}\"]\n\n" + card_table(tuned, model="./"),
                                         encoding="utf-8")
        report = {**_report(card, tuned, data, pairs, options, trainer, evaluator, keep, seconds), **extra}
        (staging / report_file).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.chmod(staging, dir_mode())  # mkdtemp made it private; the tuned expert is an artifact others load
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tuned, report


def _report(base: ExpertCard, tuned: ExpertCard, data: str | Path, pairs: TunePairs, options: TuneOptions,
            trainer: Any, evaluator: HeldOutAUC, keep: KeepBest, seconds: float) -> dict[str, Any]:
    epochs = float(trainer.state.epoch or 0.0)
    seen = round(epochs * pairs.train.height)
    evaluating = sum(h["seconds"] for h in evaluator.history[1:])
    if keep.best["step"] == 0:
        log.warning("no evaluation beat the base model's held-out AUC; the trained model equals the base")
    return {
        "base": {"name": base.name, "hash": base.hash},
        "card": {**tuned.to_dict(), "hash": tuned.hash},
        "fingerprint": tuned.revision, "data": str(data), "options": asdict(options),
        "pairs": {"train": pairs.train.height, "held_out": pairs.held_out.height,
                  "held_out_queries": pairs.held_out_queries},
        "steps": int(trainer.state.global_step), "epochs": round(epochs, 4), "pairs_seen": seen,
        "stopped_early": keep.stopped_early, "train_seconds": round(seconds, 1), "eval_seconds": round(evaluating, 1),
        "pairs_per_second": round(seen / max(seconds - evaluating, 1e-9), 1),
        "held_out": {"before": evaluator.history[0]["macro_auc"], "best": keep.best["macro_auc"],
                     "best_step": keep.best["step"], "history": evaluator.history},
    }
