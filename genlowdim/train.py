"""The training engine: a plain PyTorch loop shared by the model families.

What it guarantees:

- **Seeded and resumable.** The order of the data in epoch ``e`` is a permutation drawn from a generator
  seeded with ``(seed, e)``; all training noise comes from ``ctx.generator``, whose state is checkpointed.
  A run killed at any point (``kill -9``) and continued with ``resume=True`` replays the same loss
  trajectory as an uninterrupted run from its last checkpoint on.
- **Nothing finished is lost.** ``out/last.pt`` is rewritten atomically every ``checkpoint_every`` steps, at
  each epoch end and at the end; ``out/best.pt`` whenever the validation loss improves. Both hold model,
  optimiser, scheduler, generator, EMA, the caller's ``extra_state`` (scalers), the config and library
  versions. The CSV logs are appended as training goes.
- **Guarded.** A step whose loss or gradients are NaN/Inf is skipped and counted (and logged); more than
  ``max_bad_steps`` in a row stops the run with :class:`TrainingDiverged`.
- **Distributed.** Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in ``DistributedDataParallel``
  (:mod:`genlowdim.distributed`); every global batch is split across ranks (rank ``r`` takes items
  ``r::world_size``), so the effective batch is ``batch_size`` whatever the number of processes. ``loss_fn``
  must compute the loss through ``model(...)`` (the forward) so DDP can synchronise gradients.

In-memory runs (``out_dir=None``) write nothing and cannot resume: they serve the thousands of small fits
of a sweep, where a checkpoint per fit would cost more than the fit. They run in one process. The same
loop drives every family: a tensor ``train_set`` is indexed as a whole (no per-item collate),
``batch_draw="replacement"`` draws each batch of ``batch_size`` indices with replacement (so a batch may be
larger than a small training set, as in denoising score matching on a few points), ``post_step(model)``
runs after every optimiser step (e.g. a retraction onto a manifold) and ``param_groups(model)`` gives
Adam parameter groups with their own learning rates.

Optimiser: Adam; learning rate schedule ``lr_schedule``: ``plateau`` is ``ReduceLROnPlateau`` on
``val_loss`` (CDVAE's 0.6 / 30 / 1e-4); ``cosine`` anneals from ``lr`` to ``min_lr`` over the budget, the
fraction spent being the largest of step/max_steps, minutes/max_minutes and step/(epochs·batches per epoch);
each parameter group anneals from its own initial learning rate.
A short budgeted run ends at a low learning rate instead of wherever the plateau rule happens to be.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from genlowdim.config import dump_yaml
from genlowdim.distributed import (all_agree, barrier, broadcast_float, init_distributed, mean_over_ranks,
                                   wrap_ddp)
from genlowdim.resume import check_resumable, check_same_run, load_for_resume, settings_record
from genlowdim.runtime import CheckpointError, load_checkpoint, progress, save_checkpoint
from genlowdim.train_logs import CsvLog, plot_losses
from genlowdim.train_settings import TrainSettings
from genlowdim.train_state import (Ema, FitResult, LossFn, RunState, StepContext, TrainingDiverged, epoch_order,
                                   seed_from_generator, split_batches)

# the run's types live in train_state, its logs in train_logs, DDP in distributed; importable from here
__all__ = ["TrainSettings", "TrainingDiverged", "StepContext", "FitResult", "LossFn", "Trainer", "fit",
           "epoch_order", "seed_from_generator", "init_distributed", "plot_losses", "settings_record",
           "check_resumable"]


def _grads_finite(model: nn.Module) -> bool:
    return all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


class Trainer:
    """One training run; use :func:`fit` unless you need to step it by hand."""

    def __init__(self, model: nn.Module, train_set: Sequence, *, loss_fn: LossFn,
                 val_fn: Callable[[nn.Module], dict] | None, settings: TrainSettings,
                 out_dir: str | Path | None, family: str, config: dict, extra_state: dict | None,
                 device: torch.device | str, collate: Callable[[list], Any] | None,
                 post_step: Callable[[nn.Module], None] | None = None,
                 param_groups: Callable[[nn.Module], list[dict]] | None = None, quiet: bool = False):
        if len(train_set) == 0:
            raise ValueError("training set is empty: nothing to train on")
        if settings.batch_draw not in ("permutation", "replacement"):
            raise ValueError(f"batch_draw must be 'permutation' or 'replacement', got {settings.batch_draw!r}")
        self.device = torch.device(device)
        self.out = None if out_dir is None else Path(out_dir)
        self.rank, self.world = (0, 1) if self.out is None else init_distributed(self.device)
        self.model = model.to(self.device)
        self.train_set, self.loss_fn, self.val_fn = train_set, loss_fn, val_fn
        self.s, self.family, self.config = settings, family, config
        self.extra_state = extra_state or {}
        self.collate = collate or _default_collate
        self.post_step, self.quiet = post_step, quiet
        groups = param_groups(model) if param_groups else [{"params": list(model.parameters())}]
        # fused: one kernel for every parameter's update (the same arithmetic; 0.9 ms against 2.8 ms per step
        # for the 288k parameters of the shipped perov_5 model on a CPU core)
        self.optimizer = torch.optim.Adam(groups, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
        for group in self.optimizer.param_groups:   # the cosine schedule anneals each group from here
            group.setdefault("initial_lr", group["lr"])
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=settings.plateau_factor, patience=settings.plateau_patience,
            min_lr=settings.min_lr)
        self.generator = torch.Generator(self.device).manual_seed(settings.seed + 7919 * self.rank)
        self.ema = Ema(model, settings.ema_decay) if settings.ema_decay else None
        self.state = RunState()
        self._run_bar = None                 # the single bar of an in-memory run
        self._started = time.monotonic()   # this session's start, reset by run()
        self.history: list[dict] = []
        self.ddp_model = wrap_ddp(self.model, self.device, self.world)

    # ----- checkpoints -------------------------------------------------------------------------
    def _payload(self) -> dict:
        return {
            "family": self.family, "config": self.config, "state_dict": self.model.state_dict(),
            "ema_state_dict": self.ema.shadow if self.ema else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "train_state": asdict(self.state), "settings": asdict(self.s),
            "extra_state": self.extra_state,
        }

    def save(self, name: str) -> Path | None:
        if self.out is None:   # in-memory run
            return None
        path = self.out / name
        if self.rank == 0:
            save_checkpoint(path, self._payload())
        barrier(self.world)
        return path

    def restore(self, path: Path) -> None:
        payload = load_for_resume(path, self.family, map_location=self.device)
        check_same_run(path, payload.get("config") or {}, self.config)
        self.model.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.generator.set_state(payload["generator"].cpu())
        torch.set_rng_state(payload["torch_rng"].cpu())
        if self.ema and payload.get("ema_state_dict"):
            self.ema.shadow = {k: v.to(self.device) for k, v in payload["ema_state_dict"].items()}
        self.state = RunState(**payload["train_state"])
        self.extra_state = payload.get("extra_state") or self.extra_state

    def warm_start(self, path: Path) -> None:
        """Start from another run's weights and EMA (``train.init_from``); the optimiser, schedule, step
        count and random streams stay this run's own. The networks must be the same shape."""
        try:   # the engine's own loader: checksum, format and family checked, named errors
            payload = load_checkpoint(path, self.family, map_location=self.device)
        except CheckpointError as err:
            raise CheckpointError(f"train.init_from: {err}") from None
        if "state_dict" not in payload:
            raise ValueError(f"train.init_from: {path} holds no 'state_dict' (not a training checkpoint)")
        try:
            self.model.load_state_dict(payload["state_dict"])
        except RuntimeError as err:
            raise ValueError(f"train.init_from: {path}'s weights do not fit this model: {err}") from None
        if self.ema is not None:
            shadow = payload.get("ema_state_dict") or payload["state_dict"]
            self.ema.shadow = {k: v.detach().clone().to(self.device) for k, v in shadow.items()}

    # ----- steps -------------------------------------------------------------------------------
    def _step(self, batch: Any) -> tuple[float | None, dict]:
        ctx = StepContext(self.state.epoch, self.state.step, self.generator, self.device,
                          self.rank, self.world)
        self.optimizer.zero_grad(set_to_none=True)
        loss, logs = self.loss_fn(self.ddp_model, batch, ctx)
        ok = bool(torch.isfinite(loss))
        if ok:
            loss.backward()
            ok = _grads_finite(self.model)
        ok = all_agree(ok, self.device, self.world)
        if not ok:
            self.optimizer.zero_grad(set_to_none=True)
            self.state.skipped += 1
            self.state.bad_in_row += 1
            if self.state.bad_in_row > self.s.max_bad_steps:
                raise TrainingDiverged(f"{self.state.bad_in_row} consecutive steps had a non-finite "
                                       f"loss or gradient (step {self.state.step})")
            return None, logs
        self.state.bad_in_row = 0
        if self.s.lr_schedule == "cosine":
            self._set_cosine_lr()
        if self.s.grad_clip_value is not None:
            nn.utils.clip_grad_value_(self.model.parameters(), self.s.grad_clip_value)
        if self.s.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.s.grad_clip_norm)
        self.optimizer.step()
        if self.post_step is not None:
            self.post_step(self.model)
        if self.ema:
            self.ema.update(self.model)
        return mean_over_ranks(loss.detach(), self.world), logs

    def budget_fraction(self) -> float:
        """Fraction of the training budget spent, in [0, 1] (the largest over the budgets that are set)."""
        s, fractions = self.s, []
        if s.max_steps is not None:
            fractions.append(self.state.step / max(s.max_steps, 1))
        if s.max_minutes is not None:
            fractions.append(self._spent_seconds() / (60.0 * s.max_minutes))
        per_epoch = math.ceil(len(self.train_set) / s.batch_size)
        fractions.append(self.state.step / max(s.epochs * per_epoch, 1))
        # time differs across ranks: all take rank 0's view so weights stay identical
        return broadcast_float(min(max(fractions), 1.0), self.device, self.world, torch.float64)

    def _set_cosine_lr(self) -> None:
        s = self.s
        anneal = 0.5 * (1.0 + math.cos(math.pi * self.budget_fraction()))
        for group in self.optimizer.param_groups:
            group["lr"] = s.min_lr + (group.get("initial_lr", s.lr) - s.min_lr) * anneal

    # ----- validation --------------------------------------------------------------------------
    def validate(self) -> dict:
        if self.val_fn is None:
            return {}
        raw = None
        if self.ema:
            raw = copy.deepcopy(self.model.state_dict())
            self.model.load_state_dict(self.ema.shadow)
        self.model.eval()
        with torch.no_grad():
            result = dict(self.val_fn(self.model))
        self.model.train()
        if raw is not None:
            self.model.load_state_dict(raw)
        if "val_loss" not in result:
            raise KeyError("val_fn must return a dict with a 'val_loss' entry")
        if self.world > 1:  # every rank steps its scheduler with rank 0's value
            result["val_loss"] = broadcast_float(float(result["val_loss"]), self.device, self.world)
        return result

    # ----- the loop ----------------------------------------------------------------------------
    def _spent_seconds(self) -> float:
        """Training time over all sessions of this run, this one included."""
        return self.state.elapsed_s + time.monotonic() - self._started

    def _budget_left(self) -> bool:
        s = self.s
        if s.max_steps is not None and self.state.step >= s.max_steps:
            return False
        if s.max_minutes is not None:
            if self._spent_seconds() >= 60.0 * s.max_minutes:
                return False
        return True

    def run(self, resume: bool = False) -> FitResult:
        if self.out is None:
            return self._run_in_memory()
        last = self.out / "last.pt"
        if resume and last.exists():
            self.restore(last)
        elif last.exists() and not resume:
            raise FileExistsError(f"{self.out} already holds a run (last.pt); pass resume to continue "
                                  f"it or choose another output directory")
        elif self.s.init_from:
            self.warm_start(Path(self.s.init_from))
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:  # the resolved config, readable beside the checkpoints
            dump_yaml(self.config, self.out / "config.yaml")
        resume_step = self.state.step if resume else None
        train_log = CsvLog(self.out / "log.csv", resume_step) if self.rank == 0 else None
        val_log = CsvLog(self.out / "val.csv", resume_step) if self.rank == 0 else None
        self._started = time.monotonic()
        self._run_bar = self._steps_bar()
        try:
            stopped = self._loop(train_log, val_log)
        finally:
            self._run_bar.close()
        self.state.elapsed_s = self._spent_seconds()
        self.save("last.pt")
        if self.rank == 0:
            plot_losses(self.out)
        best = self.out / "best.pt"
        return FitResult(self.out, last, best if best.exists() else None, self.state.step,
                         self.state.epoch, self.state.best_val, self.state.skipped, stopped,
                         self.history)

    def _run_in_memory(self) -> FitResult:
        """The same loop with no files: no checkpoints, logs only in ``history``, one progress bar."""
        self._started = time.monotonic()
        self._run_bar = self._steps_bar(leave=False)
        stopped = self._loop(None, None)
        self._run_bar.close()
        self.state.elapsed_s = self._spent_seconds()
        return FitResult(None, None, None, self.state.step, self.state.epoch, self.state.best_val,
                         self.state.skipped, stopped, self.history)

    def _loop(self, train_log, val_log) -> str:
        s = self.s
        while self.state.epoch < s.epochs:
            order = epoch_order(len(self.train_set), s.seed, self.state.epoch, s.batch_size, s.batch_draw)
            if not self._run_epoch(split_batches(order, s.batch_size), train_log):
                return "budget"
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            if self.state.epoch % s.val_every == 0 or self.state.epoch == s.epochs:
                self._validate_and_log(val_log)
            self._checkpoint_elapsed("last.pt")
        return "epochs"

    def _steps_bar(self, leave: bool = True):
        """The run's one bar: global optimiser step of the step budget (max_steps, else epochs x batches per
        epoch), so its ETA is the whole run's; the epoch and loss ride along."""
        s = self.s
        total = s.max_steps if s.max_steps is not None else s.epochs * math.ceil(len(self.train_set) / s.batch_size)
        quiet = self.quiet or self.rank != 0 or os.environ.get("GENLOWDIM_QUIET") == "1"
        return progress(total=total, initial=self.state.step, leave=leave, desc=f"{self.family} training",
                        unit="step", disable=quiet)

    def _epoch_bar(self, num_batches: int):
        if self._run_bar is not None:
            return self._run_bar
        quiet = self.quiet or self.rank != 0 or os.environ.get("GENLOWDIM_QUIET") == "1"
        return progress(total=num_batches, initial=self.state.batch_in_epoch, leave=False,
                        desc=f"epoch {self.state.epoch}", disable=quiet)

    def _batch(self, index: torch.Tensor) -> Any:
        shard = index[self.rank::self.world]
        if isinstance(self.train_set, torch.Tensor):   # a tensor data set is indexed as a whole
            return self.train_set[shard.to(self.train_set.device)].to(self.device)
        return _to_device(self.collate([self.train_set[i] for i in shard.tolist()]), self.device)

    def _run_epoch(self, batches: list[torch.Tensor], train_log) -> bool:
        window: list[float] = []
        bar = self._epoch_bar(len(batches))
        self.model.train()
        for index in batches[self.state.batch_in_epoch:]:
            if not self._budget_left():
                self._close_epoch_bar(bar)
                return False
            loss, logs = self._step(self._batch(index))
            self.state.step += 1
            self.state.batch_in_epoch += 1
            bar.update(1)
            if loss is not None:
                window.append(loss)
                if not bar.disable:
                    bar.set_postfix(epoch=self.state.epoch, loss=f"{loss:.4g}", refresh=False)
            if self.state.step % self.s.log_every == 0:
                self._log_train(train_log, window, logs)
                window = []
            if self.state.step % self.s.checkpoint_every == 0:
                self._checkpoint_elapsed("last.pt")
            if self.s.keep_every and self.state.step % self.s.keep_every == 0:
                self._checkpoint_elapsed(f"step_{self.state.step:07d}.pt")
        self._close_epoch_bar(bar)
        return True

    def _close_epoch_bar(self, bar) -> None:
        if bar is not self._run_bar:
            bar.close()

    def _checkpoint_elapsed(self, name: str) -> None:
        # elapsed time is stored so max_minutes counts across resumed sessions
        saved = self.state.elapsed_s
        self.state.elapsed_s = self._spent_seconds()
        self.save(name)
        self.state.elapsed_s = saved

    def _log_train(self, train_log, window: list[float], logs: dict) -> None:
        row = {"step": self.state.step, "epoch": self.state.epoch,
               "lr": self.optimizer.param_groups[0]["lr"],
               "loss": sum(window) / len(window) if window else math.nan,
               "skipped": self.state.skipped}
        row.update({k: float(v) for k, v in logs.items()})
        self.history.append(row)
        if train_log is not None:
            train_log.append(row)

    def _validate_and_log(self, val_log) -> None:
        result = self.validate()
        if not result:
            return
        val = float(result["val_loss"])
        if self.s.lr_schedule == "plateau":
            self.scheduler.step(val)
        row = {"step": self.state.step, "epoch": self.state.epoch, **result}
        if val_log is not None:
            val_log.append(row)
        if math.isfinite(val) and (self.state.best_val is None or val < self.state.best_val):
            self.state.best_val = val
            self._checkpoint_elapsed("best.pt")   # with the wall time so far (a shipped model records it)


def _default_collate(items: list) -> Any:
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(items)
    from torch_geometric.data import Batch, Data

    if isinstance(first, Data):
        return Batch.from_data_list(items)
    raise TypeError(f"no default collate for {type(first).__name__}; pass collate=")


def _to_device(batch: Any, device: torch.device) -> Any:
    return batch.to(device) if hasattr(batch, "to") else batch


def fit(model: nn.Module, train_set: Sequence | torch.Tensor, *, loss_fn: LossFn,
        val_fn: Callable[[nn.Module], dict] | None = None, settings: TrainSettings,
        out_dir: str | Path | None = None, family: str = "model", config: dict | None = None,
        extra_state: dict | None = None, resume: bool = False, device: torch.device | str = "cpu",
        collate: Callable[[list], Any] | None = None, post_step: Callable[[nn.Module], None] | None = None,
        param_groups: Callable[[nn.Module], list[dict]] | None = None, quiet: bool = False) -> FitResult:
    """Train ``model`` on ``train_set`` (a sequence of items; ``collate`` turns a list into a batch; or a
    tensor ``(N, ...)`` whose rows are the items).

    ``loss_fn(model, batch, ctx) -> (loss, logs)`` computes a scalar loss through ``model(...)`` and a dict
    of floats to log; draw all noise from ``ctx.generator``. ``val_fn(model) -> {"val_loss": ..., ...}``
    must be deterministic (it runs under ``torch.no_grad`` with EMA weights when EMA is on).
    ``out_dir=None``: an in-memory run (no files, no resume; ``family`` labels its progress bar).
    ``post_step(model)`` runs after each optimiser step; ``param_groups(model)`` returns Adam's parameter
    groups (dicts with ``params`` and optionally ``lr``); ``quiet`` hides the progress bars.
    """
    if out_dir is None and resume:
        raise ValueError("resume needs an output directory (out_dir=None is an in-memory run)")
    if settings.compile_kernels and hasattr(model, "compile_kernels"):
        model.compile_kernels()
    trainer = Trainer(model, train_set, loss_fn=loss_fn, val_fn=val_fn, settings=settings,
                      out_dir=out_dir, family=family, config=config or {}, extra_state=extra_state,
                      device=device, collate=collate, post_step=post_step, param_groups=param_groups,
                      quiet=quiet)
    return trainer.run(resume=resume)
