"""Noise-perturbed maximum likelihood for singular distributions (Chae, Kim, Kim & Lin, JMLR 2023).

Toys in ``manifolds``, the model X = g(Z) + σε in ``model``, likelihood estimators and the fit in
``estimators``, the diffusion baseline in ``diffusion``, experiments and sweeps in ``sweeps``.
See docs/likelihood.md.
"""
from genlowdim.likelihood.estimators import FitSettings, fit_perturbed_mle, log_likelihood, perturb
from genlowdim.likelihood.manifolds import MANIFOLDS, make_manifold
from genlowdim.likelihood.model import GaussianEncoder, LatentGenerator

__all__ = ["MANIFOLDS", "make_manifold", "LatentGenerator", "GaussianEncoder", "log_likelihood",
           "perturb", "fit_perturbed_mle", "FitSettings"]
