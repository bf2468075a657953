"""Mixture of low-rank Gaussians (Wang et al. 2024): data model, exact and learned denoisers, the K-subspace
solver, phase-transition / memorisation / digits analyses. See docs/lowrank.md.

Main entry points (imported lazily so that ``genlowdim --help`` does not load torch): :class:`LowRankMixture`,
:func:`random_bases`, :class:`LowRankDenoiser`, :class:`MLPDenoiser`, :class:`EmpiricalDenoiser`,
:func:`spectral_init`, :func:`k_subspaces`, :func:`pca_basis`, :func:`make_synthetic`.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "LowRankMixture": "mixture", "random_bases": "mixture",
    "LowRankDenoiser": "model", "MLPDenoiser": "model", "EmpiricalDenoiser": "model",
    "spectral_init": "clustering", "k_subspaces": "clustering", "pca_basis": "clustering",
    "make_synthetic": "synthetic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
