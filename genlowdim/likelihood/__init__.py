"""Noise-perturbed maximum likelihood for singular distributions (Chae, Kim, Kim & Lin, JMLR 2023).

Toys in ``manifolds``, the model X = g(Z) + σε in ``model``, likelihood estimators and the fit in
``estimators``, the diffusion baseline in ``diffusion``, experiments and sweeps in ``sweeps``.
See docs/likelihood.md. Names are imported lazily so that ``genlowdim --help`` does not load torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "MANIFOLDS": "manifolds", "make_manifold": "manifolds",
    "LatentGenerator": "model", "GaussianEncoder": "model",
    "log_likelihood": "estimators", "perturb": "estimators", "fit_perturbed_mle": "estimators",
    "FitSettings": "estimators",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'genlowdim.likelihood' has no attribute {name!r}")
    return getattr(importlib.import_module(f"genlowdim.likelihood.{_EXPORTS[name]}"), name)
