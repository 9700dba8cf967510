"""The trainer ``hetmoe tune`` and ``hetmoe distil`` share: CoSENT on (query, document, score) pairs, early stopping on
held-out queries' raw-cosine macro AUC, the best state kept, and the result frozen as a new card.

The held-out metric is computed before training and every ``eval_steps``; the best state (the untouched base
included) is restored at the end, and training stops after ``patience`` evaluations without a gain. Adapters, when
LoRA is used, are merged into the weights and the model is saved as a plain sentence-transformers folder, so
``embed`` needs nothing new: the new card points at that folder and its ``revision`` is the run's fingerprint.

A killed run resumes: the work happens in ``.<out>.partial/`` next to ``out``, which holds the trainer's checkpoint at
every evaluation (weights, optimiser, scheduler, data order) and the best state so far with the held-out history.
Run the same command again and training goes on from the last evaluation; a run with another fingerprint starts over.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
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

from hetmoe.errors import HetmoeError
from hetmoe.experts.backends.st import load_model, resolve_dtype
from hetmoe.experts.card import ExpertCard
from hetmoe.experts.cardfile import add_card, card_table, check_can_add
from hetmoe.experts.train_options import TuneOptions
from hetmoe.experts.tune_pairs import HeldOutAUC, TunePairs
from hetmoe.files import dir_mode

log = logging.getLogger(__name__)
EVALS_PER_EPOCH = 4
CARD_FILE, STATE_FILE, RUN_FILE = "card.toml", "best.pt", "run.json"


class KeepBest(TrainerCallback):
    """Snapshot the trained weights (the adapters, or every weight without LoRA) whenever the held-out metric
    improves, stop after ``patience`` evaluations without a gain, and evaluate the last step too, so the tail of
    training is never left unjudged."""

    def __init__(self, trained: Any, evaluator: HeldOutAUC, patience: int) -> None:
        self.trained, self.evaluator, self.patience = trained, evaluator, patience
        self.lora = hasattr(trained, "peft_config")
        self.best: dict[str, Any] = {}
        self.best_state: dict[str, Any] = {}
        self.current: dict[str, Any] = {}  # the weights at the checkpoint a resumed run starts from
        self.stale = 0
        self.stopped_early = False

    def start(self, model: Any) -> None:
        """Evaluate the untouched ``model`` (the sentence-transformers model around the trained weights): the first
        best state (training never returns anything worse)."""
        self.evaluator(model, steps=0)
        self.best, self.best_state = self.evaluator.history[-1], self._weights()

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

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Next to each checkpoint, the best state and the held-out history up to it (what a resumed run needs)."""
        import torch

        path = Path(args.output_dir) / STATE_FILE
        torch.save({"step": state.global_step, "best": self.best, "stale": self.stale, "state": self.best_state,
                    "current": self._weights(), "history": self.evaluator.history}, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    def resume(self, folder: Path) -> str | None:
        """The checkpoint to resume from, with the best state and history saved beside it; None: start over."""
        import torch

        path = folder / STATE_FILE
        if not path.is_file():
            return None
        saved = torch.load(path, weights_only=True)  # tensors, numbers and strings: nothing else is unpickled
        checkpoint = folder / f"checkpoint-{saved['step']}"
        if not checkpoint.is_dir():
            log.warning("%s: the checkpoint of step %d is missing; training starts over", folder, saved["step"])
            return None
        self.best, self.stale = saved["best"], saved["stale"]
        self.best_state, self.current = saved["state"], saved["current"]
        self.evaluator.history[:] = saved["history"]
        log.info("resuming from step %d (held-out macro AUC so far: best %.4f at step %d)", saved["step"],
                 self.best["macro_auc"], self.best["step"])
        return str(checkpoint)

    def restore(self, state: dict[str, Any] | None = None) -> None:
        """Load the best state (or ``state``) into the trained weights."""
        state = self.best_state if state is None else state
        if self.lora:
            set_peft_model_state_dict(self.trained, state)
        else:
            self.trained.load_state_dict(state)


class _Trainer(SentenceTransformerTrainer):  # type: ignore[misc]
    """Resumes the trained weights from the state :class:`KeepBest` saved beside the checkpoint (optimiser,
    scheduler and data order still come from the checkpoint): the model's own checkpoint cannot be read back into a
    model whose transformer is wrapped in LoRA adapters."""

    def __init__(self, keep: KeepBest, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keep = keep

    def _load_from_checkpoint(self, checkpoint_path: str, model: Any = None) -> None:
        self.keep.restore(self.keep.current)


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
    """Trainer settings: evaluation and a checkpoint every ``eval_steps`` (the last two kept, so the one the best
    state was saved beside is always there)."""
    steps_per_epoch = math.ceil(pairs.train.height / options.batch_size)
    total = options.max_steps if options.max_steps > 0 else math.ceil(options.epochs * steps_per_epoch)
    eval_steps = options.eval_steps or max(1, min(steps_per_epoch // EVALS_PER_EPOCH, total // EVALS_PER_EPOCH))
    prompts = {kind: prompt for kind in ("query", "document")  # the pair columns are named after their kind
               if (prompt := _literal_prompt(card, kind, model)) is not None}
    dtype = resolve_dtype(card, device)
    return SentenceTransformerTrainingArguments(
        output_dir=str(out), num_train_epochs=options.epochs, max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size, learning_rate=options.lr, warmup_steps=0.1,
        eval_strategy="steps", eval_steps=eval_steps, logging_steps=eval_steps, save_strategy="steps",
        save_steps=eval_steps, save_total_limit=2, report_to="none",
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



def train_card(card: ExpertCard, name: str, run_id: str, data: str | Path, pairs: TunePairs, options: TuneOptions,
               out: Path, cards_out: str | Path | None, overwrite: bool, report_file: str,
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


def _partial(out: Path, run_id: str) -> Path:
    """The run's work folder next to ``out``: kept from a killed run of the same fingerprint, else made afresh."""
    partial = out.parent / f".{out.name}.partial"
    run = partial / RUN_FILE
    if partial.exists() and not (run.is_file() and json.loads(run.read_text(encoding="utf-8")) == {"run": run_id}):
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    os.chmod(partial, dir_mode())  # the trained expert is an artifact others load
    run.write_text(json.dumps({"run": run_id}), encoding="utf-8")
    return partial


def _train(card: ExpertCard, name: str, run_id: str, data: str | Path, model: Any, device: str, pairs: TunePairs,
           options: TuneOptions, out: Path, report_file: str, extra: dict[str, Any]) -> tuple[ExpertCard, dict[str, Any]]:
    """Evaluate the base, train (from the last checkpoint of a killed run of the same fingerprint), keep the best
    state, merge any adapters, and move the finished folder to ``out``."""
    partial = _partial(out, run_id)
    checkpoints = partial / "trainer"
    evaluator = HeldOutAUC(card, pairs.held_out)
    trained = _trainable(model, options)
    keep = KeepBest(trained, evaluator, options.patience)
    resume = keep.resume(checkpoints)
    if resume is None:
        shutil.rmtree(checkpoints, ignore_errors=True)
        keep.start(model)
    args = _arguments(card, device, options, pairs, model, checkpoints)
    trainer = _Trainer(keep, model=model, args=args, train_dataset=HFDataset.from_polars(pairs.train),
                       loss=CoSENTLoss(model), evaluator=evaluator, callbacks=[keep])
    log.info("training %s on %d pairs (%s; %d held-out queries, %d pairs), %s", card.name, pairs.train.height,
             f"LoRA r={options.lora_r}" if keep.lora else "every weight", pairs.held_out_queries,
             pairs.held_out.height, device)
    began = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's loss lines; stdout stays for the JSON report
        trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - began
    keep.restore()
    if keep.lora:
        model[0].model = trained.merge_and_unload()
    shutil.rmtree(checkpoints)
    model.save(str(partial))
    tuned = dataclasses.replace(card, name=name, model=str(out.resolve()), revision=run_id)
    (partial / CARD_FILE).write_text(f"[defaults]\nexperts = [\"{name}\"]\n\n" + card_table(tuned, model="./"),
                                     encoding="utf-8")
    resumed_from = int(resume.rsplit("-", 1)[1]) if resume is not None else None
    report = {**_report(card, tuned, data, pairs, options, trainer, evaluator, keep, seconds),
              "resumed_from_step": resumed_from, **extra}
    (partial / report_file).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (partial / RUN_FILE).unlink()
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
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

