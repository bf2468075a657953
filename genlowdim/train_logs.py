"""The training engine's files beside the checkpoints: append-only CSV logs that a resumed run cuts back to
its checkpoint's step, and the loss plot drawn from them."""
from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["CsvLog", "plot_losses"]


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
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("symlog")
    ax.legend()
    fig.tight_layout()
    path = out_dir / "loss.png"
    fig.savefig(path, dpi=120)
    return path


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as fh:
        return [r for r in csv.DictReader(fh) if r.get("loss", "0") not in ("", "nan")]
