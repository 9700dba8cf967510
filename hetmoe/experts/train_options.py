"""The training settings ``hetmoe tune`` and ``hetmoe distil`` share, in a module light enough for the command line."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TuneOptions:
    """Training settings; all but ``name`` enter the fingerprint (``eval_steps`` = 0: four evaluations per epoch;
    ``lora_r`` = 0: every weight is trained, no adapters)."""

    name: str | None = None
    epochs: float = 1.0
    max_steps: int = -1
    lr: float = 2e-4
    lora_r: int = 8
    batch_size: int = 32
    max_pairs: int | None = None
    held_out: float = 0.12
    eval_steps: int = 0
    patience: int = 2
    seed: int = 0


# What a distilled student starts from: every weight trained (a student has more to learn than a LoRA tune), at a
# learning rate for full fine-tuning.
DISTIL_TRAINING = TuneOptions(lr=3e-5, lora_r=0)
