"""Metrics shared by every model family.

Crystal metrics follow CDVAE (Xie et al., ICLR 2022) exactly, with every parameter recorded:

- ``structure``: structural validity (minimum-image distances, cell volume), density, element counts
- ``composition``: charge-neutrality + Pauling test over SMACT 2.2.1's pinned oxidation-state table
- ``fingerprints``: CrystalNN "ops" structure fingerprints and normalised Magpie composition fingerprints
- ``coverage``: COV-R / COV-P / AMSD / AMCD on any feature arrays
- ``properties``: Wasserstein-1 of density, number of elements and a predicted property
- ``matcher``: ``MatchTolerances``, the StructureMatcher settings every matching metric takes (CDVAE's by default)
- ``matching``: reconstruction match rate / RMS distance, uniqueness and novelty (StructureMatcher)
- ``cell_size``: what the volume-scaling matcher hides: volume-per-atom and lattice-length errors, the match
  rate with scaling off
- ``evaluate``: ``evaluate_generation`` / ``evaluate_reconstruction`` (what ``genlowdim evaluate`` runs; the
  reconstruction mode lives in ``reconstruction_report``)

Plain-vector metrics live in ``vectors`` and ``subspace``. Nothing heavy is imported here: import the
submodule you need (``from genlowdim.metrics.evaluate import evaluate_generation``).
"""
from __future__ import annotations

import importlib

__all__ = ["MetricResult"]


def __getattr__(name: str):
    # lazy, so that importing genlowdim.metrics.cli to build the command line does not load numpy
    if name == "MetricResult":
        return importlib.import_module(".result", __name__).MetricResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
