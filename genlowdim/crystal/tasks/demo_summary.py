"""The closing words of ``genlowdim demo``: what ran, how long it took, and what its numbers mean at the size
they were measured at."""
from __future__ import annotations

import math

__all__ = ["SMOKE_LABEL", "format_summary", "interval"]

SMOKE_LABEL = "smoke run: shows that training works on this machine; not a model to judge"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def interval(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95% with z = 1.96) of a share measured on ``n`` crystals."""
    if n <= 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _share(value, n: int) -> str:
    """``97.0% (95% interval 94.1-98.5%)`` for a share of ``n`` crystals."""
    if value is None:
        return "n/a"
    low, high = interval(value, n)
    return f"{100 * value:.1f}% (95% interval {100 * low:.1f}-{100 * high:.1f}%)"


def _figures(part: dict, num_reference: int, known: dict | None) -> list[str]:
    m, n = part["metrics"], part["num_generated"]
    lines = [
        f"   valid structures {_share(m.get('struct_valid'), n)}, valid compositions {_pct(m.get('comp_valid'))}",
        f"   COV-P {_share(m.get('cov_precision'), n)}: share of the {n:,} generated crystals that lie within "
        f"the coverage thresholds of some test crystal (they look like real perovskites)",
        f"   COV-R {_pct(m.get('cov_recall'))}: share of the {num_reference:,} test crystals with a generated one "
        f"within the thresholds; it grows with the number generated ({n:,} cannot cover {num_reference:,})",
    ]
    if known:
        lines.append(f"   for scale: the shipped model's {known['num_generated']:,} crystals reach COV-R "
                     f"{_pct(known.get('cov_recall'))} and COV-P {_pct(known.get('cov_precision'))} on the same "
                     f"split; CDVAE's paper reports 99.45% / 98.46% with 10,000")
    lines.append(f"   pictures: {part['files']['cells']};  all metrics: {part['files']['evaluation']}/metrics.json")
    return lines


def _training_line(trained: dict) -> str:
    done, budget = trained["train_steps"], trained.get("budget_steps")
    line = (f"2. A {SMOKE_LABEL}.\n   Trained {done:,} of {budget:,} optimiser steps in "
            f"{trained['train_seconds'] / 60:.1f} min")
    if budget is not None and done < budget:
        line += f" (stopped early by its wall-clock cap, {trained.get('cap_minutes')} min: the model is less trained)"
    return line + f"; {trained['num_generated']:,} crystals sampled in {trained['sample_seconds']:.0f} s"


def format_summary(summary: dict, out: str, seconds: float) -> str:
    """Plain-language summary of the demo's ``summary`` (demo.json) that took ``seconds`` in all."""
    n_ref = summary["num_reference"]
    cut = summary.get("cov_thresholds", (0.2, 4.0))
    whole = "all" if summary.get("reference", "perov_5:test") == "perov_5:test" else "the first"
    lines = [f"\ngenlowdim demo finished in {seconds / 60:.1f} min; everything is in {out} "
             f"(numbers in {out}/demo.json).",
             f"Generated crystals are compared with {whole} {n_ref:,} crystals of perov_5's test split "
             f"(coverage thresholds: structure fingerprint distance {cut[0]:g}, composition {cut[1]:g}).", ""]
    shipped = summary.get("shipped")
    if shipped:
        lines.append(f"1. The shipped perov_5 model: {shipped['num_generated']:,} crystals in "
                     f"{shipped['sample_seconds']:.0f} s ({shipped['decoder_calls']:,} decoder calls)")
        lines += _figures(shipped, n_ref, shipped.get("known")) + [""]
    trained = summary["trained"]
    lines.append(_training_line(trained))
    lines += _figures(trained, n_ref, None)
    lines.append(f"   loss curve: {trained['loss_curve']}")
    return "\n".join(lines)
