"""The metrics.json report shared by both evaluation modes: the metric keys, packing results into the report,
and writing it with its per-structure table."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from genlowdim.metrics.cell_size import CELL_SIZE_NAMES
from genlowdim.metrics.composition import compositional_validity
from genlowdim.metrics.result import MetricResult, versions
from genlowdim.metrics.structure import structural_validity
from genlowdim.metrics.summary import describe

__all__ = ["METRIC_NAMES", "RECONSTRUCTION_NAMES", "validity", "pack", "write_outputs"]

METRIC_NAMES = ("struct_valid", "comp_valid", "valid", "cov_recall", "cov_precision", "amsd_recall",
                "amsd_precision", "amcd_recall", "amcd_precision", "wdist_density", "wdist_num_elems",
                "wdist_prop", "match_rate", "rms_dist", "unique", "novel", "comp_div", "struct_div")
RECONSTRUCTION_NAMES = METRIC_NAMES + CELL_SIZE_NAMES   # reconstruction also reports the cell-size errors


def validity(structures: Sequence) -> tuple[MetricResult, MetricResult]:
    return structural_validity(structures), compositional_validity(structures)


def pack(mode: str, results: dict[str, MetricResult], extra_params: dict) -> dict:
    """``{"mode", "metrics", "params", "summary"}``: every key of the mode (null when not computed)."""
    names = RECONSTRUCTION_NAMES if mode == "reconstruction" else METRIC_NAMES
    metrics = {name: (results[name].value if name in results else None) for name in names}
    # versions are recorded once, at the top level
    params = {name: {k: v for k, v in results[name].params.items() if k != "versions"}
              for name in names if name in results}
    params.update(extra_params, versions=versions())
    report = {"mode": mode, "metrics": metrics, "params": params}
    return {**report, "summary": describe(report)}


def write_outputs(out_dir: Path, report: dict, rows: list[dict]) -> None:
    """``metrics.json`` and ``structures.csv`` (one row per structure) in ``out_dir``."""
    from genlowdim.runtime import atomic_write_text, write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", report)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(out_dir / "structures.csv", buf.getvalue())
