"""What an evaluation's numbers mean: the counts and protocol behind them and each metric's unit and reading.

:func:`describe` is stored as ``summary`` in ``metrics.json``; :func:`format_table` is what ``genlowdim
evaluate`` prints.
"""
from __future__ import annotations

__all__ = ["UNITS", "describe", "format_table"]

FRACTION_UP = "fraction, higher is better"
UNITS = {
    "struct_valid": FRACTION_UP, "comp_valid": FRACTION_UP, "valid": FRACTION_UP,
    "cov_recall": "fraction of reference crystals covered, higher is better",
    "cov_precision": "fraction of generated crystals near a reference, higher is better",
    "amsd_recall": "structure fingerprint distance, lower is better",
    "amsd_precision": "structure fingerprint distance, lower is better",
    "amcd_recall": "composition fingerprint distance, lower is better",
    "amcd_precision": "composition fingerprint distance, lower is better",
    "wdist_density": "g/cm^3 (Wasserstein-1 of densities), lower is better",
    "wdist_num_elems": "elements per crystal (Wasserstein-1), lower is better",
    "wdist_prop": "the property's unit (heat_ref: eV/atom; Wasserstein-1), lower is better",
    "match_rate": "fraction of truths matched, higher is better",
    "rms_dist": "RMS displacement / (volume per atom)^(1/3) of matches, lower is better",
    "match_rate_unscaled": "fraction of truths matched with volume scaling off, higher is better",
    "vpa_error_mean": "mean |relative error of volume per atom| over valid predictions, lower is better",
    "vpa_error_median": "median |relative error of volume per atom| over valid predictions, lower is better",
    "length_error_mean": "mean |relative error of a, b, c| after the matcher's mapping, over matches, lower is better",
    "length_error_median": "median of the same, lower is better",
    "unique": FRACTION_UP, "novel": FRACTION_UP,
    "comp_div": "mean pairwise composition fingerprint distance, higher is more diverse",
    "struct_div": "mean pairwise structure fingerprint distance, higher is more diverse",
}


def _protocol(report: dict) -> str:
    params = report.get("params", {})
    if report.get("mode") == "reconstruction":
        m = params.get("match_rate", {})
        best = " best of k candidates per truth;" if params.get("samples") == "best of k" else ""
        cells = ""
        if "vpa_error_mean" in params:
            which = f" ({params['cell_size']})" if "cell_size" in params else ""
            cells = f"; beside it, the match rate with scale=False and the cell-size errors{which}"
        return (f"CDVAE reconstruction:{best} pymatgen StructureMatcher(stol {m.get('stol')}, ltol {m.get('ltol')}, "
                f"angle_tol {m.get('angle_tol_degrees')} deg), which scales volumes before matching; invalid "
                f"predictions count as misses{cells}")
    cov = params.get("cov_recall", {})
    used = params.get("wdist_density", {}).get("num_samples_used")
    return (f"CDVAE generation: validity over all generated crystals; COV within CrystalNN structure / "
            f"composition fingerprint distances {cov.get('struct_cutoff')} / {cov.get('comp_cutoff')}; "
            f"Wasserstein distances over {used} valid crystals (seeded subsample)")


def describe(report: dict) -> dict:
    """``{"counts", "protocol", "units"}`` of a metrics report (``metrics.json``'s ``summary``)."""
    params = report.get("params", {})
    if report.get("mode") == "reconstruction":
        counts = {"predictions": params.get("num_predictions"), "truths": params.get("num_truths")}
    else:
        counts = {"generated": params.get("num_generated"), "reference": params.get("num_reference")}
    units = {k: UNITS[k] for k, v in report.get("metrics", {}).items() if v is not None and k in UNITS}
    return {"counts": counts, "protocol": _protocol(report), "units": units}


def _count(n) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"


def format_table(report: dict) -> str:
    """The counts, the protocol, then one row per computed metric: value and its unit and reading."""
    info = report.get("summary") or describe(report)
    counts = info["counts"]
    if report.get("mode") == "reconstruction":
        head = f"{_count(counts['predictions'])} predictions for {_count(counts['truths'])} truth crystals"
    else:
        head = (f"{_count(counts['generated'])} generated crystals against {_count(counts['reference'])} "
                f"reference crystals")
    width = max([16] + [len(k) for k, v in report["metrics"].items() if v is not None])
    lines = [head, f"protocol: {info['protocol']}", "", f"{'metric':<{width}} {'value':>8}  unit, reading",
             "-" * 72]
    for name, value in report["metrics"].items():
        if value is not None:
            lines.append(f"{name:<{width}} {value:>8.4f}  {UNITS.get(name, '')}")
    lines += _cell_size_note(report)
    if report["metrics"].get("cov_recall") is not None:
        few = (counts["generated"] or 0) < (counts["reference"] or 0)
        lines.append("\nCOV-R grows with the number generated" + (
            f": {_count(counts['generated'])} crystals against {_count(counts['reference'])} references keep it "
            f"low by construction" if few else "") + "; compare runs of equal size")
    return "\n".join(lines)


def _cell_size_note(report: dict) -> list[str]:
    """What the scaled matcher hides, in one line: how many matches also have the right volume."""
    vpa = report.get("params", {}).get("vpa_error_mean")
    if not vpa or report["metrics"].get("match_rate") is None:
        return []
    within = vpa.get("scaled_match_rate_with_vpa_error_within", {})
    on = vpa.get("over_scaled_matches", {})
    mean = on.get("mean")
    shown = ", ".join(f"{float(k):.0%}: {v:.4f}" for k, v in within.items() if v is not None)
    return [f"\nthe match rate scales volumes: over its {on.get('num')} matches the mean |volume-per-atom error| "
            f"is {'n/a' if mean is None else f'{mean:.4f}'}; matched with the volume per atom within {shown}"]
