"""The closing words of ``genlowdim demo``: what ran, how long it took, and what its numbers mean."""
from __future__ import annotations

__all__ = ["SMOKE_LABEL", "format_summary"]

SMOKE_LABEL = "smoke run: shows that training works on this machine; not a model to judge"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _figures(part: dict, num_reference: int) -> list[str]:
    m = part["metrics"]
    cov_r, cov_p = m.get("cov_recall"), m.get("cov_precision")
    return [
        f"   valid structures {_pct(m.get('struct_valid'))}, valid compositions {_pct(m.get('comp_valid'))}",
        f"   COV-R {_pct(cov_r)}: share of the {num_reference:,} reference crystals with one of the "
        f"{part['num_generated']:,} generated nearby (grows with the number generated)",
        f"   COV-P {_pct(cov_p)}: share of the generated crystals near a reference",
        f"   pictures: {part['files']['cells']};  all metrics: {part['files']['evaluation']}/metrics.json",
    ]


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
    lines = [f"\ngenlowdim demo finished in {seconds / 60:.1f} min; everything is in {out} "
             f"(numbers in {out}/demo.json). Reference: {n_ref:,} perov_5 test crystals.", ""]
    shipped = summary.get("shipped")
    if shipped:
        lines.append(f"1. The shipped perov_5 model: {shipped['num_generated']:,} crystals in "
                     f"{shipped['sample_seconds']:.0f} s ({shipped['decoder_calls']:,} decoder calls)")
        lines += _figures(shipped, n_ref) + [""]
    trained = summary["trained"]
    lines.append(_training_line(trained))
    lines += _figures(trained, n_ref)
    lines.append(f"   loss curve: {trained['loss_curve']}")
    return "\n".join(lines)
