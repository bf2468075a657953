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
- **Distributed.** Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
  ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA); every global batch is split across ranks
  (rank ``r`` takes items ``r::world_size``), so the effective batch is ``batch_size`` whatever the number
  of processes. ``loss_fn`` must compute the loss through ``model(...)`` (the forward) so DDP can
  synchronise gradients.

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
import csv
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from genlowdim.config import dump_yaml
from genlowdim.resume import check_same_run, load_for_resume
from genlowdim.runtime import progress, save_checkpoint
from genlowdim.train_settings import TrainSettings


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
class _State:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0   # global batches of the current epoch already consumed
    best_val: float | None = None
    skipped: int = 0
    bad_in_row: int = 0
    elapsed_s: float = 0.0


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size) of this process; joins the process group when ``torchrun`` started several."""
    rank, world = _dist_info()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return rank, world


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


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class _Ema:
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


def _grads_finite(model: nn.Module) -> bool:
    return all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


class _CsvLog:
    """Append-only CSV with a header fixed by the first row; on resume, rows past ``step`` are dropped."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.exists():
            with open(path) as fh:
                rows = list(csv.DictReader(fh))
            self.fields = list(rows[0].keys()) if rows else None
            keep = [r for r in rows if int(r["step"]) <= resume_step]
            self._rewrite(keep)
        elif path.exists():
            path.unlink()

    def _rewrite(self, rows: list[dict]) -> None:
        with open(self.path, "w", newline="") as fh:
            if self.fields:
                writer = csv.DictWriter(fh, fieldnames=self.fields)
                writer.writeheader()
                writer.writerows(rows)

    def append(self, row: dict) -> None:
        new_file = self.fields is None
        if new_file:
            self.fields = list(row.keys())
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in self.fields})


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
        self.optimizer = torch.optim.Adam(groups, lr=settings.lr, weight_decay=settings.weight_decay)
        for group in self.optimizer.param_groups:   # the cosine schedule anneals each group from here
            group.setdefault("initial_lr", group["lr"])
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=settings.plateau_factor, patience=settings.plateau_patience,
            min_lr=settings.min_lr)
        self.generator = torch.Generator(self.device).manual_seed(settings.seed + 7919 * self.rank)
        self.ema = _Ema(model, settings.ema_decay) if settings.ema_decay else None
        self.state = _State()
        self._run_bar = None                 # the single bar of an in-memory run
        self._started = time.monotonic()   # this session's start, reset by run()
        self.history: list[dict] = []
        self.ddp_model = self._wrap_ddp()

    def _wrap_ddp(self) -> nn.Module:
        if self.world == 1:
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(self.model, device_ids=ids,
                                                   find_unused_parameters=True)

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
        self._barrier()
        return path

    def _barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

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
        self.state = _State(**payload["train_state"])
        self.extra_state = payload.get("extra_state") or self.extra_state

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
        ok = self._all_ranks_agree(ok)
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
        return self._mean_over_ranks(loss.detach()), logs

    def budget_fraction(self) -> float:
        """Fraction of the training budget spent, in [0, 1] (the largest over the budgets that are set)."""
        s, fractions = self.s, []
        if s.max_steps is not None:
            fractions.append(self.state.step / max(s.max_steps, 1))
        if s.max_minutes is not None:
            fractions.append(self._spent_seconds() / (60.0 * s.max_minutes))
        per_epoch = math.ceil(len(self.train_set) / s.batch_size)
        fractions.append(self.state.step / max(s.epochs * per_epoch, 1))
        frac = min(max(fractions), 1.0)
        if self.world > 1:  # time differs across ranks: all take rank 0's view so weights stay identical
            value = torch.tensor([frac], device=self.device, dtype=torch.float64)
            torch.distributed.broadcast(value, src=0)
            frac = float(value)
        return frac

    def _set_cosine_lr(self) -> None:
        s = self.s
        anneal = 0.5 * (1.0 + math.cos(math.pi * self.budget_fraction()))
        for group in self.optimizer.param_groups:
            group["lr"] = s.min_lr + (group.get("initial_lr", s.lr) - s.min_lr) * anneal

    def _all_ranks_agree(self, ok: bool) -> bool:
        if self.world == 1:
            return ok
        flag = torch.tensor([1.0 if ok else 0.0], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item() > 0)

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        if self.world > 1:
            value = value.clone()
            torch.distributed.all_reduce(value)
            value /= self.world
        return float(value)

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
            val = torch.tensor([float(result["val_loss"])], device=self.device)
            torch.distributed.broadcast(val, src=0)
            result["val_loss"] = float(val)
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
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:  # the resolved config, readable beside the checkpoints
            dump_yaml(self.config, self.out / "config.yaml")
        resume_step = self.state.step if resume else None
        train_log = _CsvLog(self.out / "log.csv", resume_step) if self.rank == 0 else None
        val_log = _CsvLog(self.out / "val.csv", resume_step) if self.rank == 0 else None
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
            if not self._run_epoch(_batches(order, s.batch_size), train_log):
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
            self.save("best.pt")


def _default_collate(items: list) -> Any:
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(items)
    from torch_geometric.data import Batch, Data

    if isinstance(first, Data):
        return Batch.from_data_list(items)
    raise TypeError(f"no default collate for {type(first).__name__}; pass collate=")


def _to_device(batch: Any, device: torch.device) -> Any:
    if hasattr(batch, "to"):
        return batch.to(device)
    return batch


# ----- resuming finished results -------------------------------------------------------------------


def settings_record(settings: dict) -> dict:
    """``{"settings": ..., "settings_hash": ...}`` to store beside a finished result (JSON-normalised)."""
    normal = json.loads(json.dumps(settings, sort_keys=True))
    digest = hashlib.sha256(json.dumps(normal, sort_keys=True).encode()).hexdigest()[:16]
    return {"settings": normal, "settings_hash": digest}


def check_resumable(where: str | Path, name: str, stored: dict, settings: dict) -> None:
    """Raise ``ConfigError`` unless the finished result ``stored`` (holding :func:`settings_record`'s keys)
    was computed with ``settings``; the one-line message names ``where``, ``name`` and what differs."""
    from genlowdim.config import ConfigError

    current = settings_record(settings)
    if stored.get("settings_hash") == current["settings_hash"]:
        return
    from genlowdim.resume import flatten

    old, new = flatten(stored.get("settings") or {}), flatten(current["settings"])
    diff = [f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in sorted(set(old) | set(new))
            if old.get(k, "(unset)") != new.get(k, "(unset)")]
    what = "; ".join(diff[:4]) + ("; ..." if len(diff) > 4 else "") if old else "no settings recorded"
    raise ConfigError(f"{where}: finished {name} was computed with other settings ({what}); pass "
                      f"--overwrite to clear the old results, or choose another output directory")


def plot_losses(out_dir: str | Path) -> Path | None:
    """Write ``out_dir/loss.png`` from ``log.csv`` (and ``val.csv`` when present)."""
    out_dir = Path(out_dir)
    rows = _read_csv(out_dir / "log.csv")
    if not rows:
        return None
    from matplotlib.figure import Figure   # no pyplot: no global backend, works headless

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], label="train")
    val = _read_csv(out_dir / "val.csv")
    if val:
        ax.plot([int(r["step"]) for r in val], [float(r["val_loss"]) for r in val], "o-", label="val")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    loss_axis(ax.yaxis, [float(r["loss"]) for r in rows] + [float(r["val_loss"]) for r in val])
    ax.legend()
    fig.tight_layout()
    path = out_dir / "loss.png"
    fig.savefig(path, dpi=120)
    return path


def loss_axis(axis, values: list[float]) -> None:
    """A log scale for positive losses, labelled at every 1-9, 1-2-5 or 1 × 10^k by the decades shown (at
    least two labels even when the curve stays within one decade); a symlog scale, linear within ±1, when a
    loss is zero or negative."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    finite = [v for v in values if math.isfinite(v)]
    if not finite or min(finite) <= 0:
        axis.axes.set_yscale("symlog", linthresh=1.0)
        return
    decades = math.log10(max(finite) / min(finite))
    subs = tuple(range(1, 10)) if decades < 1.2 else (1.0, 2.0, 5.0) if decades < 4 else (1.0,)
    axis.axes.set_yscale("log")
    axis.set_major_locator(LogLocator(subs=subs, numticks=30))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as fh:
        return [r for r in csv.DictReader(fh) if r.get("loss", "0") not in ("", "nan")]


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
