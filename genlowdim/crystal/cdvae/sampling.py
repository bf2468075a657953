"""Decoding latents into crystals through the core samplers (CDVAE §3.3 generation and reconstruction).

From z the heads give the number of atoms (argmax), the lattice (fixed during sampling) and a composition,
from which the initial atom types are drawn (:func:`sample_composition`). Fractional coordinates start
uniform on the torus; the decoder is wrapped as a core denoiser ``D(x, σ) = x + σ·decoder(x, σ)`` on
Cartesian positions (N, 3), the core sampler moves x, ``wrap`` maps x back into the cell after every update.
The denoiser only reads the atom types: they live in a :class:`TypeState` owned by the sampling loop, whose
step callback updates them after each accepted step from the type logits of the evaluation that step used
(the one the sampler reports as ``denoised``), as ``type_update`` says. Trial evaluations (Heun's second
evaluation, PC's corrector steps) therefore never change the types the next evaluation sees:

  ``argmax``       each atom takes the argmax of its logits (CDVAE). The composition may drift.
  ``composition``  the multiset of types drawn from the composition head is kept, and the decoder's
                   log-probabilities decide which atom gets which type (an assignment problem per crystal,
                   solved exactly for the whole batch at once, any cell sizes: see
                   :mod:`~genlowdim.crystal.cdvae.assignment`). The decoder can still swap
                   two elements between sites, but it cannot change the composition.
  ``fixed``        the initial types are kept (the atoms move to the sites that suit their types).

Samplers (``sampler`` argument) are named specs of the config (:class:`~genlowdim.crystal.cdvae.config.SamplerSpec`):
  ``ald``       CDVAE's annealed Langevin, model's 50 σ levels x ``steps_each`` (default 100) steps.
  ``ald_fast``  the same levels with fewer steps each and a larger step_lr.
  ``pc``/``em``/``heun``/``euler``/``ddim``  core samplers on a Karras grid of ``steps`` levels
                between the model's σ_max and σ_min (then 0).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import torch
import torch.nn.functional as F

from genlowdim.core.samplers import CountingDenoiser, get_sampler, sample_ald
from genlowdim.core.schedules import sigmas_karras
from genlowdim.crystal.cdvae.assignment import BRUTE_FORCE_MAX_ATOMS, assign_types  # noqa: F401 (re-exported)
from genlowdim.crystal.decoded import DecodedCrystals
from genlowdim.crystal.geometry.encoder import MAX_ATOMIC_NUM
from genlowdim.crystal.geometry.lattice import cart_to_frac, frac_to_cart, lattice_from_params
from genlowdim.runtime import progress


def sample_composition(composition_probs, num_atoms, generator=None):
    """Initial types of each crystal from its composition distribution (CDVAE's rounding scheme).

    ``composition_probs``: (B, 100) probabilities over atomic numbers 1..100; ``num_atoms``: (B,).
    Counts are round(p·n); missing atoms are drawn from the leftover probability, surplus ones dropped at
    random. Returns (N,) atomic numbers, N = num_atoms.sum(), grouped by crystal."""
    out = []
    for p, n in zip(composition_probs, num_atoms.tolist()):
        counts = torch.round(p * n).long()
        types = torch.repeat_interleave(torch.arange(1, MAX_ATOMIC_NUM + 1, device=p.device), counts)
        if types.numel() < n:
            left = (p - counts.to(p.dtype) / n).clamp_min(0) + 1e-12
            extra = torch.multinomial(left, n - types.numel(), replacement=True, generator=generator) + 1
            types = torch.cat([types, extra])
        perm = torch.randperm(types.numel(), generator=generator, device=p.device)
        out.append(types[perm][:n])
    return torch.cat(out)


TYPE_UPDATES = ("argmax", "composition", "fixed")


class TypeState:
    """The atom types of one decode, owned by the sampling loop. ``types``: (N,) atomic numbers.

    The denoiser reads ``types`` and reports each evaluation's type logits (``record``); called as the
    core sampler's ``callback`` after each accepted step, it updates ``types`` from the logits of the
    evaluation the step used (``info["denoised"]``; the first evaluation since the last step otherwise):
    ``argmax``, ``composition`` or ``fixed`` (see the module docstring)."""

    def __init__(self, types, batch, type_update: str = "argmax"):
        if type_update not in TYPE_UPDATES:
            raise ValueError(f"type_update must be one of {TYPE_UPDATES}, got {type_update!r}")
        self.types, self.batch, self.type_update = types, batch, type_update
        self._evaluations = []          # (denoised, logits) of the evaluations since the last step

    def record(self, denoised, logits) -> None:
        self._evaluations.append((denoised, logits))

    def __call__(self, info: dict) -> None:
        evaluations, self._evaluations = self._evaluations, []
        if not evaluations or self.type_update == "fixed":
            return
        logits = next((lg for d, lg in evaluations if d is info.get("denoised")), evaluations[0][1])
        if self.type_update == "argmax":
            self.types = logits.argmax(-1) + 1
        else:
            self.types = assign_types(torch.log_softmax(logits, -1), self.types, self.batch)


class DecoderDenoiser:
    """Core-denoiser view of the CDVAE decoder for fixed z, lattice and the types of ``state``.

    ``__call__(x: (N,3) Å, sigma: 0-dim or (B,)) -> x̂₀ = x + σ·decoder_out``. It never changes the types;
    it hands its type logits to ``state`` (:class:`TypeState`), which the sampling loop updates per step."""

    def __init__(self, decoder, z, lattice, batch, state: TypeState):
        self.decoder, self.z, self.lattice, self.batch, self.state = decoder, z, lattice, batch, state

    def __call__(self, x, sigma):
        sigma_graph = sigma.expand(self.z.shape[0]) if sigma.dim() == 0 else sigma
        out, logits = self.decoder(x, self.state.types, self.z, sigma_graph, self.lattice, self.batch)
        denoised = x + sigma_graph[self.batch][:, None] * out
        self.state.record(denoised, logits)
        return denoised

    def wrap(self, x):
        frac = torch.remainder(cart_to_frac(x, self.lattice, self.batch), 1.0)
        return frac_to_cart(frac, self.lattice, self.batch)


def run_sampler(denoiser, x, model_sigmas, spec, *, steps: int | None = None, generator=None, wrap=None,
                callback=None):
    """Run the core sampler of ``spec`` (:class:`~genlowdim.crystal.cdvae.config.SamplerSpec`) from x.

    ALD runs on the model's σ levels (``model_sigmas``, descending), ``steps`` (or ``spec.steps_each``)
    steps each; the others on a Karras grid of ``steps`` (or ``spec.steps``) levels between the model's σ_max
    and σ_min, then 0. Returns the final x."""
    kw = dict(generator=generator, wrap=wrap, callback=callback)
    if spec.method == "ald":
        return sample_ald(denoiser, x, model_sigmas, n_steps_each=steps or spec.steps_each,
                          step_lr=spec.step_lr, **kw)
    sigmas = sigmas_karras(steps or spec.steps, float(model_sigmas[-1]), float(model_sigmas[0]),
                           device=model_sigmas.device).to(x.dtype)
    return get_sampler(spec.method)(denoiser, x, sigmas, **kw)


@torch.no_grad()
def decode_latents(model, z, sampling_cfg, *, sampler: str | None = None, steps: int | None = None,
                   generator=None, num_atoms=None, atom_types=None,
                   type_update: str | None = None) -> DecodedCrystals:
    """Decode z (B, latent) into crystals. ``num_atoms``/``atom_types`` force the ground truth when given
    (given types are kept fixed, or follow ``type_update``: ``composition`` keeps their multiset and lets
    the decoder place them); otherwise types follow ``sampling_cfg.type_update``. ``sampler``: a name
    of ``sampling_cfg.samplers`` (default: ``sampling_cfg.sampler``); ``steps`` overrides its step count."""
    natom_logits, lengths, angles, comp_logits = model.decode_stats(z)
    clamped = model.lattice_clamped(model.fc_lattice(z)).cpu()
    if num_atoms is None:
        num_atoms = natom_logits.argmax(-1).clamp_min(1)
    else:
        lengths, angles = model.unscale_lattice(model.fc_lattice(z), num_atoms)
    batch = torch.repeat_interleave(torch.arange(z.shape[0], device=z.device), num_atoms)
    types = atom_types if atom_types is not None else sample_composition(
        F.softmax(comp_logits, -1), num_atoms, generator)
    lattice = lattice_from_params(lengths, angles)
    frac = torch.rand((batch.numel(), 3), generator=generator, device=z.device, dtype=z.dtype)
    given = type_update or "fixed"
    state = TypeState(types, batch, given if atom_types is not None else sampling_cfg.type_update)
    den = CountingDenoiser(DecoderDenoiser(model.decoder, z, lattice, batch, state))
    spec = sampling_cfg.spec(sampler)
    with _calls_bar(spec, len(model.sigmas), steps, z.shape[0]) as ticking:
        x = run_sampler(ticking(den), frac_to_cart(frac, lattice, batch), model.sigmas.to(z.dtype), spec,
                        steps=steps, generator=generator, wrap=den.denoiser.wrap, callback=state)
    frac = torch.remainder(cart_to_frac(x, lattice, batch), 1.0)
    return DecodedCrystals(frac, state.types, lengths, angles, num_atoms, den.calls, clamped)


@contextmanager
def _calls_bar(spec, num_levels: int, steps: int | None, num_crystals: int):
    """A progress bar of one batch's decoder calls, shown once a decode has run 5 s (their number is known
    for ALD, so it has an ETA); yields
    ``ticking(denoiser)``, the denoiser that advances it. It only counts: the sampling is unchanged."""
    total = num_levels * (steps or spec.steps_each) if spec.method == "ald" else None
    bar = progress(total=total, desc=f"decoding {num_crystals} crystals", unit="decoder call", leave=False,
                   delay=5.0)   # short decodes (tests, optimisation snapshots) stay silent

    def ticking(denoiser):
        def call(x, sigma, **extra):
            bar.update(1)
            return denoiser(x, sigma, **extra)
        return call
    try:
        yield ticking
    finally:
        bar.close()


def generate(model, num: int, sampling_cfg, *, sampler=None, steps=None, generator=None) -> DecodedCrystals:
    """Sample z ~ N(0, I) (num, latent) from ``generator`` and decode it (CDVAE generation)."""
    p = next(model.parameters())
    z = torch.randn((num, model.cfg.latent_dim), generator=generator, device=p.device, dtype=p.dtype)
    return decode_latents(model, z, sampling_cfg, sampler=sampler, steps=steps, generator=generator)


@torch.no_grad()
def reconstruct_batch(model, batch, sampling_cfg, *, sampler=None, steps=None, generator=None,
                      sample_latent: bool = False):
    """Reconstruction: z = μ(crystal), or z = μ + σ·ε from ``generator`` when ``sample_latent`` (CDVAE's
    evaluate.py), then decode with the types following ``sampling_cfg.recon_type_update``.
    -> DecodedCrystals."""
    _, _, z = model.encode(batch, generator=generator, sample=sample_latent)
    cfg = replace(sampling_cfg, type_update=sampling_cfg.recon_type_update)
    return decode_latents(model, z, cfg, sampler=sampler, steps=steps, generator=generator)
