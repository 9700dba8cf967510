"""The training options ``hetmoe tune`` and ``hetmoe distil`` share: one definition, each command's own defaults."""
from __future__ import annotations

import inspect
from typing import Any

import typer

from hetmoe.commands.options import SEED
from hetmoe.experts.train_options import TuneOptions


def _param(name: str, annotation: Any, option: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def train_params(defaults: TuneOptions) -> list[inspect.Parameter]:
    """Every field of :class:`TuneOptions` but the name, as command options defaulting to ``defaults``."""
    d = defaults
    return [
        _param("epochs", float, typer.Option(d.epochs, "--epochs", help="Passes over the training pairs.")),
        _param("max_steps", int, typer.Option(d.max_steps, "--max-steps", help="Stop after this many steps "
                                              "(overrides --epochs).")),
        _param("lr", float, typer.Option(d.lr, "--lr", help="Learning rate of the trained weights.")),
        _param("lora_r", int, typer.Option(d.lora_r, "--lora-r", help="LoRA rank (alpha = 2 x rank) on every linear "
                                           "layer; 0 trains every weight instead.")),
        _param("batch_size", int, typer.Option(d.batch_size, "--batch-size", help="Pairs per step (CoSENT ranks all "
                                               "pairs of a batch).")),
        _param("max_pairs", int, typer.Option(d.max_pairs, "--max-pairs", help="Train on a seeded sample of at most "
                                              "this many pairs.")),
        _param("held_out", float, typer.Option(d.held_out, "--held-out", help="Share of each market's train queries "
                                               "held out for early stopping.")),
        _param("eval_steps", int, typer.Option(d.eval_steps, "--eval-steps", help="Evaluate every N steps (0: four "
                                               "times per epoch).")),
        _param("patience", int, typer.Option(d.patience, "--patience", help="Stop after this many evaluations "
                                             "without a gain.")),
        _param("seed", int, SEED),
    ]


def train_options(values: dict[str, Any], name: str | None) -> TuneOptions:
    """The TuneOptions record from a command's parsed training options."""
    fields = {p.name for p in train_params(TuneOptions())}
    return TuneOptions(name=name, **{k: v for k, v in values.items() if k in fields})
