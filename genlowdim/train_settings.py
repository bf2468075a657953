"""The training engine's settings (the ``train:`` section of a config), kept free of torch so that reading
and checking a config, and building the command line, stay fast. The engine itself is :mod:`genlowdim.train`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from genlowdim.config import check_fields

__all__ = ["TrainSettings"]


@dataclass(frozen=True)
class TrainSettings:
    """Checked on construction: a value out of range raises :class:`genlowdim.config.FieldError` naming it."""
    epochs: int = 100
    max_steps: int | None = None          # stop after this many optimiser steps (all epochs together)
    max_minutes: float | None = None      # wall-clock budget, summed over resumed sessions
    batch_size: int = 256                 # global batch (split across ranks under DDP)
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip_value: float | None = 0.5   # CDVAE clips gradients by value
    grad_clip_norm: float | None = None
    ema_decay: float | None = None        # e.g. 0.999; validation and best.pt then use the EMA weights
    lr_schedule: Literal["plateau", "cosine"] = "plateau"
    plateau_factor: float = 0.6
    plateau_patience: int = 30            # in validations
    min_lr: float = 1e-4
    checkpoint_every: int = 200           # steps
    keep_every: int | None = None         # steps; also keep step_<N>.pt (full checkpoints, for learning curves)
    compile_kernels: bool = False         # torch.compile the model's hot kernels (models with compile_kernels())
    val_every: int = 1                    # epochs
    log_every: int = 10                   # steps; the logged loss is the mean over the window
    seed: int = 0
    max_bad_steps: int = 50
    batch_draw: Literal["permutation", "replacement"] = "permutation"   # see genlowdim.train's docstring
    init_from: str | None = None          # a checkpoint whose weights (and EMA) a new run starts from: a warm
                                          # restart with a fresh optimiser, schedule and step count

    def __post_init__(self) -> None:
        check_fields(self, epochs="positive", batch_size="positive", lr="positive", max_minutes="positive",
                     checkpoint_every="positive", keep_every="positive", val_every="positive", log_every="positive",
                     grad_clip_value="positive", grad_clip_norm="positive", ema_decay="fraction",
                     plateau_factor="fraction", max_steps="non_negative", weight_decay="non_negative",
                     plateau_patience="non_negative", min_lr="non_negative", max_bad_steps="non_negative")
