"""``evaluate_generation`` / ``evaluate_reconstruction``: CDVAE's evaluation on structure lists.

Both return (and, with ``out_dir``, write as ``metrics.json``) one dict::

    {"mode": "generation" | "reconstruction",
     "metrics": {struct_valid, comp_valid, valid, cov_recall, cov_precision, amsd_recall, amsd_precision,
                 amcd_recall, amcd_precision, wdist_density, wdist_num_elems, wdist_prop, match_rate,
                 rms_dist, unique, novel, comp_div, struct_div  # fractions in [0, 1]; null when not computed
                 [reconstruction also: match_rate_unscaled, vpa_error_mean, vpa_error_median,
                  length_error_mean, length_error_median]},
     "params": {metric name: its parameters, ..., "seed", "versions"},
     "summary": {"counts", "protocol", "units"}}  # what the numbers mean (genlowdim.metrics.summary)

Generation computes everything except match_rate/rms_dist (wdist_prop needs a property predictor,
novel needs training structures). comp_div / struct_div are CDVAE's diversities: the mean pairwise
Euclidean distance of the (normalised) composition / structure fingerprints over the same seeded
subsample of valid crystals as the property statistics. The params of each Wasserstein distance also hold
its value on all valid crystals and its spread over ``num_wdist_seeds`` other subsample seeds.
Reconstruction computes struct_valid, comp_valid, valid, match_rate, rms_dist and the cell-size errors
beside them (:mod:`genlowdim.metrics.reconstruction_report`, :mod:`genlowdim.metrics.cell_size`).
``out_dir`` also gets ``structures.csv`` (per-structure flags, reasons and distances) and, in generation
mode, PNG histograms of density / number of elements / property against the reference and
``timings.json`` (wall seconds of each stage).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from genlowdim.metrics.coverage import coverage
from genlowdim.metrics.fingerprints import cached_fingerprints
from genlowdim.runtime import usable_cpus
from genlowdim.metrics.matching import matching_candidates, novelty, reduce_for_matching, uniqueness
from genlowdim.metrics.properties import crystal_quantities, property_statistics, seeded_subsample
from genlowdim.metrics.reference_data import reference_data
from genlowdim.metrics.reconstruction_report import (  # noqa: F401 - the reconstruction mode, here for callers
    evaluate_reconstruction, evaluate_reconstruction_best_of)
from genlowdim.metrics.report import METRIC_NAMES, pack, validity, write_outputs  # noqa: F401
from genlowdim.metrics.result import MetricResult
from genlowdim.metrics.summary import format_table  # noqa: F401 - format_table: the CLI's table
from genlowdim.structures.registry import get_spec



def resolve_cutoffs(dataset: str | None, struct_cutoff: float | None, comp_cutoff: float | None
                    ) -> tuple[float, float, str]:
    """(delta_s, delta_c, source): explicit values win, then the dataset's registered thresholds."""
    if struct_cutoff is not None and comp_cutoff is not None:
        return float(struct_cutoff), float(comp_cutoff), "given"
    if dataset is None:
        raise ValueError("coverage thresholds unknown: pass dataset= (e.g. 'perov_5') or both "
                         "struct_cutoff and comp_cutoff (--dataset, or --cutoffs S C)")
    try:
        s, c = get_spec(dataset).cov_thresholds
    except KeyError as err:  # unknown dataset: the registry's message lists the known ones
        raise ValueError(str(err.args[0] if err.args else err)) from err
    source = f"genlowdim.structures.registry:{dataset} (CDVAE COV_Cutoffs)"
    s = float(s) if struct_cutoff is None else float(struct_cutoff)
    c = float(c) if comp_cutoff is None else float(comp_cutoff)
    return s, c, source


def evaluate_generation(structures: Sequence, reference_structures: Sequence, *, dataset: str | None = None,
                        struct_cutoff: float | None = None, comp_cutoff: float | None = None,
                        train_structures: Sequence | None = None,
                        property_fn: Callable[[list], Sequence[float]] | None = None,
                        reference_properties: Sequence[float] | None = None,
                        num_property_samples: int = 1000, seed: int = 0, workers: int | None = None,
                        out_dir: str | Path | None = None, reference_cache_key: str | None = None,
                        ids: Sequence[str] | None = None, show_progress: bool = True,
                        cache_dir: str | Path | None = None, compute_unique: bool = True,
                        fingerprints: str = "fast", num_wdist_seeds: int = 5,
                        stability: dict | None = None) -> dict:
    """CDVAE generation metrics of ``structures`` (N pymatgen Structures, ``None`` = unbuildable)
    against ``reference_structures`` (e.g. the test split); see the module docstring for the output.

    valid = struct_valid and comp_valid and fingerprints computed (CDVAE marks a crystal whose
    fingerprint fails invalid). Fingerprints of both sets are cached on disk (``cache_dir``, default
    ``$GENLOWDIM_CACHE_DIR`` or ``~/.cache/genlowdim``) keyed on content (+ ``reference_cache_key``), so
    a re-run after a crash or with other thresholds does not recompute them; shipped reference sets
    (``"perov_5:test"``) use their shipped values (:mod:`genlowdim.metrics.reference_data`).
    compute_unique: ``False`` skips uniqueness (``unique`` is then null). Uniqueness and novelty reduce each
    crystal once and match only pairs that can match, on ``workers`` processes (docs/metrics.md).
    fingerprints: ``"fast"`` (vectorised CrystalNN, equal to matminer within 1e-6) or ``"reference"``
    (matminer on every site, CDVAE's code path).
    num_wdist_seeds: extra subsample seeds (seed+1 ...) whose Wasserstein distances are reported as a
    spread next to CDVAE's single-subsample value (0 = none).
    stability: keywords of :func:`genlowdim.physics.stability.stability_of_generated` (``{}`` relaxes here;
    ``results`` reuses a relax folder's); the block lands in ``report["stability"]`` (None = skipped).
    """
    s_cut, c_cut, cut_source = resolve_cutoffs(dataset, struct_cutoff, comp_cutoff)
    workers = usable_cpus() if workers is None else workers
    clock = StageClock()
    sv, cv = validity(structures)
    clock.mark("validity")
    fps, gen_cache = cached_fingerprints(structures, "generated", cache_dir, workers=workers,
                                         show_progress=show_progress, desc="generated fingerprints",
                                         method=fingerprints)
    clock.mark("generated fingerprints")
    ref_fps, cache_info, ref_q = reference_data(reference_structures, reference_cache_key, cache_dir,
                                                workers=workers, show_progress=show_progress, method=fingerprints)
    clock.mark("reference fingerprints")
    ok, ref_ok = fps.ok, ref_fps.ok
    if not ref_ok.any():
        raise ValueError(f"none of the {len(reference_structures)} reference crystals has fingerprints")
    valid = sv.per_item["valid"] & cv.per_item["valid"] & ok
    results: dict[str, MetricResult] = {"struct_valid": sv, "comp_valid": cv}
    results["valid"] = MetricResult("valid", float(valid.mean()), {
        "definition": "struct_valid and comp_valid and fingerprint computed (CDVAE)",
        "num_valid": int(valid.sum()), "num_fingerprint_failures": int((~ok).sum()),
        "fingerprints": fps.info, "reference_fingerprints": ref_fps.info}, {"valid": valid})
    cov = _coverage_or_empty(fps, ref_fps, s_cut, c_cut, len(structures))
    for res in cov.values():
        res.params.update(cutoff_source=cut_source, reference_fingerprint_failures=int((~ref_ok).sum()),
                          reference_cache=cache_info, generated_cache=gen_cache)
    results.update(cov)
    clock.mark("coverage")
    # per-crystal quantities, once for the property statistics, their extra subsamples and the plots
    q = crystal_quantities(structures, np.flatnonzero(valid))
    results.update(property_statistics(structures, valid, reference_structures, property_fn,
                                       reference_properties, num_property_samples, seed, q, ref_q))
    _wdist_spread(results, structures, valid, reference_structures, num_property_samples, seed,
                  num_wdist_seeds, q, ref_q)
    results.update(diversity(fps, valid, num_property_samples, seed))
    clock.mark("property statistics and diversity")
    results.update(_matching(structures, valid, train_structures, compute_unique, workers))
    clock.mark("uniqueness and novelty")
    block = None if stability is None else _stability(structures, valid, results, stability)
    clock.mark("stability")
    report = pack("generation", results, {"seed": seed, "workers": workers, "fingerprints": fingerprints,
                                           "num_generated": len(structures),
                                           "num_reference": len(reference_structures)})
    if block is not None:
        report["stability"] = block
    if out_dir is not None:
        rows = _generation_rows(structures, ids, results, ok, fps.errors, valid, num_property_samples, seed)
        write_outputs(Path(out_dir), report, rows)
        clock.mark("metrics.json and structures.csv")
        from genlowdim.metrics.plots import write_histograms

        write_histograms(Path(out_dir), valid, num_property_samples, seed, results["wdist_prop"].per_item,
                         q, ref_q, dataset)
        clock.mark("plots")
        clock.write(Path(out_dir) / "timings.json")
    return report


def _stability(structures, valid, results: dict, options: dict) -> dict:
    from genlowdim.physics.stability import stability_of_generated

    flags = [results[k].per_item[f] if k in results else None for k, f in (("unique", "duplicate_of"),
                                                                            ("novel", "novel"))]
    return stability_of_generated(structures, valid, *flags, **options)


class StageClock:
    """Wall seconds per stage of one evaluation (``timings.json`` next to metrics.json, which stays free of
    run-to-run noise)."""

    def __init__(self) -> None:
        import time

        self._now, self._last, self.seconds = time.perf_counter, time.perf_counter(), {}

    def mark(self, stage: str) -> None:
        now = self._now()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now

    def write(self, path: Path) -> None:
        from genlowdim.runtime import write_json

        write_json(path, {"stage_seconds": self.seconds})


def _matching(structures, valid, train_structures, compute_unique: bool, workers: int) -> dict:
    """``unique`` and ``novel`` (when asked / when training crystals are given), sharing one reduction of
    the valid crystals."""
    out: dict[str, MetricResult] = {}
    if not compute_unique and train_structures is None:
        return out
    paired, in_train, _ = matching_candidates(structures, valid, train_structures)
    needed = np.union1d(paired if compute_unique else [], in_train).astype(int)
    reduced = reduce_for_matching(structures, needed, workers=workers)
    if compute_unique:
        out["unique"] = uniqueness(structures, valid, workers=workers, reduced=reduced)
    if train_structures is not None:
        out["novel"] = novelty(structures, train_structures, valid, workers=workers, reduced=reduced)
    return out


def diversity(fps, valid: np.ndarray, num_samples: int, seed: int) -> dict[str, MetricResult]:
    """CDVAE's ``comp_div`` / ``struct_div``: mean pairwise Euclidean distance (``scipy.spatial.distance.
    pdist``) of the normalised Magpie / the CrystalNN fingerprints of the seeded subsample of valid
    crystals (CDVAE's ``valid_samples``, the set its property statistics use)."""
    from scipy.spatial.distance import pdist

    idx = seeded_subsample(valid, num_samples, seed)
    params = {"num_samples_used": len(idx), "seed": seed,
              "definition": "mean pdist (Euclidean) over the seeded subsample of valid crystals (CDVAE "
                            "compute_metrics: get_comp_diversity / get_struct_diversity)"}
    out = {}
    for name, x in (("comp_div", fps.comp), ("struct_div", fps.struct)):
        value = float(pdist(x[idx]).mean()) if len(idx) > 1 else None
        out[name] = MetricResult(name, value, params)
    return out


def _wdist_spread(results, structures, valid, reference, num_samples, seed, num_seeds, quantities,
                  reference_quantities) -> None:
    """Adds to the density and element-count Wasserstein distances' params their value on all valid
    crystals and their values, mean and standard deviation over ``num_seeds`` further subsample seeds
    (the 1,000-crystal draw is noisy)."""
    # the property distance is left out: it would call the predictor on every extra subsample
    names = [n for n in ("wdist_density", "wdist_num_elems") if results[n].value is not None]
    if not names or int(np.sum(valid)) <= num_samples:
        for n in names:
            results[n].params["all_valid"] = results[n].value
        return
    q = (quantities, reference_quantities)
    everything = property_statistics(structures, valid, reference, None, None, int(np.sum(valid)), seed, *q)
    others = [property_statistics(structures, valid, reference, None, None, num_samples, seed + 1 + k, *q)
              for k in range(num_seeds)]
    for n in names:
        vals = [o[n].value for o in others]
        results[n].params["all_valid"] = everything[n].value
        if vals:
            results[n].params["other_seeds"] = {"seeds": [seed + 1 + k for k in range(num_seeds)],
                                                "values": vals, "mean": float(np.mean(vals)),
                                                "std": float(np.std(vals))}


def _coverage_or_empty(fps, ref_fps, s_cut: float, c_cut: float, n_all: int) -> dict[str, MetricResult]:
    """``coverage`` on the rows with fingerprints; when no generated crystal has one, nothing is covered
    (COV-R = COV-P = 0) and the mean distances are undefined (null)."""
    ok, ref_ok = fps.ok, ref_fps.ok
    if ok.any():
        return coverage(fps.struct[ok], fps.comp[ok], ref_fps.struct[ref_ok], ref_fps.comp[ref_ok],
                        s_cut, c_cut, num_generated=n_all)
    params = {"struct_cutoff": s_cut, "comp_cutoff": c_cut, "num_generated": n_all,
              "num_generated_with_fingerprints": 0, "num_reference": int(ref_ok.sum()),
              "note": "no generated crystal has fingerprints"}
    nan = np.full(0, np.nan)
    out = {name: MetricResult(name, 0.0, params, {"struct_dist": nan, "comp_dist": nan, "covered": nan})
           for name in ("cov_recall", "cov_precision")}
    out.update({name: MetricResult(name, None, params) for name in
                ("amsd_recall", "amsd_precision", "amcd_recall", "amcd_precision")})
    return out


def _generation_rows(structures, ids, results, ok, errors, valid, num_samples, seed) -> list[dict]:
    ids = list(ids) if ids is not None else [str(i) for i in range(len(structures))]
    sv, cv = results["struct_valid"].per_item, results["comp_valid"].per_item
    prec = results["cov_precision"].per_item
    near_s, near_c, covered = (np.full(len(structures), np.nan) for _ in range(3))
    near_s[ok], near_c[ok], covered[ok] = prec["struct_dist"], prec["comp_dist"], prec["covered"]
    in_sample = np.zeros(len(structures), bool)
    in_sample[seeded_subsample(valid, num_samples, seed)] = True
    dup = results["unique"].per_item["duplicate_of"] if "unique" in results else np.full(len(structures), -1)
    novel = results["novel"].per_item["novel"] if "novel" in results else None
    rows = []
    for i in range(len(structures)):
        rows.append({"id": ids[i], "formula": cv["formula"][i], "struct_valid": bool(sv["valid"][i]),
                     "invalid_reason": sv["reason"][i], "min_distance": sv["min_distance"][i],
                     "comp_valid": bool(cv["valid"][i]), "fingerprint_ok": bool(ok[i]),
                     "fingerprint_error": errors[i], "valid": bool(valid[i]),
                     "nearest_ref_struct_dist": near_s[i], "nearest_ref_comp_dist": near_c[i],
                     "covered": "" if np.isnan(covered[i]) else bool(covered[i]),
                     "in_property_sample": bool(in_sample[i]),
                     "duplicate_of": ids[dup[i]] if dup[i] >= 0 else "",
                     "novel": "" if novel is None or not valid[i] else bool(novel[i])})
    return rows


