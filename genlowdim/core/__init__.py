"""Diffusion/score core: schedules, kernels, DSM loss, samplers and PF-ODE likelihood (tensors only).

Imports nothing from the model families (``genlowdim.crystal``, ``lowrank``, ``likelihood``) or
``genlowdim.metrics``; see docs/core.md.
"""
from .batch import append_dims, expand_sigma, num_graphs, per_graph_to_nodes, per_sample_mean
from .samplers import (
    SAMPLERS,
    CountingDenoiser,
    denoiser_from_score,
    get_sampler,
    sample_ald,
    sample_ddim,
    sample_euler_maruyama,
    sample_ode_euler,
    sample_ode_heun,
    sample_pc,
    score_from_denoiser,
)
from .schedules import append_zero, sigmas_geometric, sigmas_karras, vp_cosine, vp_linear, vp_to_ve_sigmas
from .kernels import (
    gaussian_score,
    lowrank_gaussian_logpdf,
    lowrank_gaussian_score,
    molrg_denoise,
    molrg_logpdf,
    molrg_posterior_weights,
    molrg_score,
    wrapped_normal_images,
    wrapped_normal_logpdf,
    wrapped_normal_score,
)
from .likelihood import divergence_exact, divergence_hutchinson, pf_ode_log_likelihood
from .losses import dsm_loss, dsm_reduce, dsm_weight, sample_sigmas
from .precondition import EDMScalings, MLPDenoiser, edm_scalings
