"""The training engine's files beside the checkpoints: append-only CSV logs that a resumed run cuts back to
its checkpoint's step, and the loss plot drawn from them."""
from __future__ import annotations

import csv
import math
from pathlib import Path

__all__ = ["CsvLog", "plot_losses", "loss_axis"]


class CsvLog:
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
