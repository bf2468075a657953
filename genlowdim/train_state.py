"""What one run of the training engine carries from step to step and into its checkpoints: the context
handed to the loss, the run's counters, the moving average of the weights, the result; and the rules that
order each epoch's data and seed a run from a caller's generator (both depend only on their arguments, so a
resumed run draws what an uninterrupted one would)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["TrainingDiverged", "StepContext", "FitResult", "LossFn", "RunState", "Ema", "epoch_order",
           "seed_from_generator", "split_batches"]


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


@dataclass
class StepContext:
    """Handed to ``loss_fn`` each step."""

    epoch: int
    step: int
    generator: torch.Generator
    device: torch.device
    rank: int = 0
    world_size: int = 1


@dataclass
class FitResult:
    out_dir: Path | None                 # None for an in-memory run (then no checkpoints either)
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    steps: int
    epochs_completed: int
    best_val: float | None
    skipped_steps: int
    stopped_because: str
    history: list[dict] = field(default_factory=list)


LossFn = Callable[[nn.Module, Any, StepContext], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class RunState:
    """The counters a checkpoint keeps (``train_state``) and a resumed run continues from."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0   # global batches of the current epoch already consumed
    best_val: float | None = None
    skipped: int = 0
    bad_in_row: int = 0
    elapsed_s: float = 0.0


def epoch_order(num_items: int, seed: int, epoch: int, batch_size: int | None = None,
                draw: str = "permutation") -> torch.Tensor:
    """Item indices used in ``epoch`` (depend only on seed and epoch): a permutation, or for
    ``draw="replacement"`` ``ceil(num_items / batch_size)`` batches of ``batch_size`` uniform draws."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if draw == "permutation":
        return torch.randperm(num_items, generator=gen)
    num = math.ceil(num_items / batch_size) * batch_size
    return torch.randint(num_items, (num,), generator=gen)


def seed_from_generator(generator: torch.Generator | None) -> int:
    """A ``TrainSettings.seed`` drawn from a caller's generator (torch's global one when None), so that
    functions taking ``generator=`` stay seeded by it when they hand their loop to the engine."""
    device = generator.device if generator is not None else None
    return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator, device=device))


def split_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class Ema:
    """Exponential moving average of floating-point parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.detach(), 1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)
