"""Mixture of low-rank Gaussians (Wang et al. 2024): data model, exact and learned denoisers, the K-subspace
solver, phase-transition / memorisation / digits analyses. See docs/lowrank.md.

Main entry points: :class:`LowRankMixture`, :func:`random_bases`, :class:`LowRankDenoiser`,
:class:`MLPDenoiser`, :class:`EmpiricalDenoiser`, :func:`spectral_init`, :func:`make_synthetic`.
"""
from .clustering import k_subspaces, pca_basis, spectral_init
from .mixture import LowRankMixture, random_bases
from .model import EmpiricalDenoiser, LowRankDenoiser, MLPDenoiser
from .synthetic import make_synthetic

__all__ = ["EmpiricalDenoiser", "LowRankDenoiser", "LowRankMixture", "MLPDenoiser", "k_subspaces",
           "make_synthetic", "pca_basis", "random_bases", "spectral_init"]
