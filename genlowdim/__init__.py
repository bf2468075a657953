"""genlowdim: generative models of crystals and of low-dimensional distributions.

Families (each plugs into :mod:`genlowdim.core`):

- :mod:`genlowdim.crystal`    CDVAE with an e3nn equivariant periodic encoder
- :mod:`genlowdim.lowrank`    diffusion on mixtures of low-rank Gaussians
- :mod:`genlowdim.likelihood` noise-perturbed maximum likelihood for singular distributions

and one metrics package, :mod:`genlowdim.metrics`.
"""

__version__ = "0.1.0"
