"""The training options ``hetmoe tune`` and ``hetmoe distil`` share: one definition, each command's own defaults."""
from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any

import typer

from hetmoe.commands.options import SEED, keyword_param
from hetmoe.experts.train_options import TuneOptions


def train_params(defaults: TuneOptions) -> list[inspect.Parameter]:
    """Every field of :class:`TuneOptions` but the name, as command options defaulting to ``defaults``."""
    d = defaults
    return [
        keyword_param("epochs", float, typer.Option(d.epochs, "--epochs", help="Passes over the training pairs.")),
        keyword_param("max_steps", int, typer.Option(d.max_steps, "--max-steps", help="Stop after this many steps "
                                              "(overrides --epochs).")),
        keyword_param("lr", float, typer.Option(d.lr, "--lr", help="Learning rate of the trained weights.")),
        keyword_param("lora_r", int, typer.Option(d.lora_r, "--lora-r", help="LoRA rank (alpha = 2 x rank) on every linear "
                                           "layer; 0 trains every weight instead.")),
        keyword_param("batch_size", int, typer.Option(d.batch_size, "--batch-size", help="Pairs per step (CoSENT ranks all "
                                               "pairs of a batch).")),
        keyword_param("max_pairs", int, typer.Option(d.max_pairs, "--max-pairs", help="Train on a seeded sample of at most "
                                              "this many pairs.")),
        keyword_param("held_out", float, typer.Option(d.held_out, "--held-out", help="Share of each market's train queries "
                                               "held out for early stopping.")),
        keyword_param("eval_steps", int, typer.Option(d.eval_steps, "--eval-steps", help="Evaluate every N steps (0: four "
                                               "times per epoch).")),
        keyword_param("patience", int, typer.Option(d.patience, "--patience", help="Stop after this many evaluations "
                                             "without a gain.")),
        keyword_param("seed", int, SEED),
    ]


def train_options(values: dict[str, Any], name: str | None) -> TuneOptions:
    """The TuneOptions record from a command's parsed training options."""
    names = {f.name for f in fields(TuneOptions)} - {"name"}
    return TuneOptions(name=name, **{k: v for k, v in values.items() if k in names})
