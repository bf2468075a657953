"""The K-subspace solver behind MoLRG training, re-exported from :mod:`genlowdim.core.subspaces` (where the
crystal family's latent analysis calls it too)."""
from genlowdim.core.subspaces import (  # noqa: F401
    SubspaceFit,
    assign_to_subspaces,
    fit_bases,
    k_subspaces,
    pca_basis,
    spectral_init,
    spectral_labels,
    subspace_objective,
)
