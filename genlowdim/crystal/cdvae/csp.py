"""Crystal structure prediction (CSP) from a formula with a trained CDVAE: the latent sources and their ranking
(the runs written to disk are :mod:`genlowdim.crystal.tasks.csp`).

CSP gives the model the composition of a cell (its multiset of atom types) and asks for the structure. The
CDVAE decodes any latent z; the composition and number-of-atoms heads say how well z agrees with the formula.
A *latent source* proposes z, candidates are ranked by the heads' agreement with the formula, and the best are
decoded with the formula's types kept as a multiset (the decoder assigns them to sites, ``type_update:
composition``), its atom count and the lattice head's cell for that count.

The agreement (:func:`formula_nll`) is the negative log-likelihood of the formula under the heads:
``−log p(N | z) − Σ_atoms log p_comp(type | z)`` (nats per cell; CDVAE trains both heads with these CEs).

Latent sources (``method``), compared on the val split in ``bench/csp.py`` and docs/csp.md:

  ``random``     one z ~ N(0, I) per candidate, no ranking (the baseline: the decoder alone with the types).
  ``prior``      ``draws`` z ~ N(0, I); the ``samples`` with the smallest formula NLL are kept.
  ``prior_opt``  ``prior``, then Adam on each kept z to lower the formula NLL, z held inside the ball that
                 holds 99% of the encoded training crystals' μ (the default: best on val, docs/csp.md).
  ``posterior``  ``draws`` from the aggregate posterior of training crystals (z = μ_i + σ_i·ε, i drawn
                 uniformly from a pool of encoded training crystals), ranked as ``prior``; the latents come
                 from where the decoder was trained, and the heads pick those whose formula is the target's.
  ``posterior_opt``  ``posterior``, then the Adam refinement of ``prior_opt``.

Only the training split is ever encoded; the target's structure is never seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genlowdim.crystal.geometry.encoder import MAX_ATOMIC_NUM
from genlowdim.crystal.cdvae.sampling import decode_latents
from genlowdim.crystal.decoded import DecodedCrystals
from genlowdim.crystal.latents import LatentPool, adam_in_ball, draw_latents, encode_pool

__all__ = ["METHODS", "CSPSettings", "formula_counts", "formula_nll",
           "propose_latents", "refine_latents", "predict_structures", "training_pool", "load_pool"]

METHODS = ("random", "prior", "prior_opt", "posterior", "posterior_opt")


@dataclass(frozen=True)
class CSPSettings:
    """``method``: a latent source of :data:`METHODS`; ``draws``: proposals scored per formula (heads only);
    ``opt_steps``/``opt_lr``: the Adam refinement of the ``*_opt`` methods."""
    method: str = "prior_opt"
    draws: int = 2048
    opt_steps: int = 100
    opt_lr: float = 0.05

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"CSP method must be one of {', '.join(METHODS)}, got {self.method!r}")


def formula_counts(types: torch.Tensor) -> torch.Tensor:
    """(100,) counts over atomic numbers 1..100 of a formula's atom types (N,)."""
    return torch.bincount(types - 1, minlength=MAX_ATOMIC_NUM).to(torch.get_default_dtype())


def formula_nll(model, z: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """−log p(N | z) − Σ_types count·log p_comp(type | z), (M,) nats, for z (M, latent) and one formula's
    ``counts`` (100,) (N = counts.sum()). Differentiable in z."""
    n = int(counts.sum())
    natom = -F.log_softmax(model.fc_num_atoms(z), -1)[:, n]
    comp = -(F.log_softmax(model.fc_composition(z), -1) * counts.to(z)).sum(-1)
    return natom + comp


@torch.no_grad()
def propose_latents(model, counts: torch.Tensor, samples: int, settings: CSPSettings,
                    pool: LatentPool | None = None, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (samples, latent), formula NLL (samples,)) for one formula, best first (``random``: unranked)."""
    like = next(model.parameters())
    latent_dim = model.cfg.latent_dim
    if settings.method == "random":
        z = draw_latents(samples, latent_dim, None, generator, like)
        return z, formula_nll(model, z, counts)
    if settings.method.startswith("posterior") and pool is None:
        raise ValueError(f"CSP method {settings.method!r} needs a pool of encoded training crystals")
    source = pool if settings.method.startswith("posterior") else None
    z = draw_latents(max(settings.draws, samples), latent_dim, source, generator, like)
    nll = formula_nll(model, z, counts)
    order = torch.argsort(nll)[:samples]
    return z[order], nll[order]


def refine_latents(model, z: torch.Tensor, counts: torch.Tensor, *, steps: int, lr: float,
                   radius: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on z (K, latent) to lower :func:`formula_nll`; after each step z is scaled back into the ball
    ‖z‖ ≤ ``radius`` (None: unbounded). Returns (z, NLL), re-sorted best first."""
    z = adam_in_ball(z, lambda z: formula_nll(model, z, counts), steps=steps, lr=lr, radius=radius)
    with torch.no_grad():
        nll = formula_nll(model, z, counts)
    order = torch.argsort(nll)
    return z[order], nll[order]


def candidate_latents(model, formulas: list[torch.Tensor], samples: int, settings: CSPSettings,
                      pool: LatentPool | None = None, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents of ``samples`` candidates per formula, formula-major and best first within a formula:
    (len(formulas)·samples, latent) and their formula NLL (len(formulas)·samples,). ``pool``: the draws of
    ``posterior*``, and the radius of the ``*_opt`` refinement (None: unbounded)."""
    zs, nlls = [], []
    for types in formulas:
        counts = formula_counts(types)
        z, nll = propose_latents(model, counts, samples, settings, pool, generator)
        if settings.method.endswith("_opt") and settings.opt_steps > 0:
            z, nll = refine_latents(model, z, counts, steps=settings.opt_steps, lr=settings.opt_lr,
                                    radius=pool.radius if pool is not None else None)
        zs.append(z)
        nlls.append(nll)
    return torch.cat(zs), torch.cat(nlls)


def predict_structures(model, sampling_cfg, formulas: list[torch.Tensor], samples: int,
                       settings: CSPSettings, *, pool: LatentPool | None = None, sampler: str | None = None,
                       steps: int | None = None, generator=None) -> tuple[DecodedCrystals, torch.Tensor]:
    """``samples`` candidate structures for each formula (a list of atom-type tensors (N_f,)).

    Returns the decoded crystals, formula-major (candidate j of formula f at f·samples + j, best ranked
    first), and their formula NLL (len(formulas)·samples,). Every candidate has exactly its formula's
    types; the decoder places them (``type_update: composition``)."""
    z, nll = candidate_latents(model, formulas, samples, settings, pool, generator)
    device = z.device
    num_atoms = torch.tensor([len(t) for t in formulas for _ in range(samples)], device=device)
    types = torch.cat([t.to(device) for t in formulas for _ in range(samples)])
    decoded = decode_latents(model, z, sampling_cfg, sampler=sampler, steps=steps, generator=generator,
                             num_atoms=num_atoms, atom_types=types, type_update="composition")
    return decoded, nll


def needs_pool(settings: CSPSettings) -> bool:
    """``posterior*`` draws from the pool; ``*_opt`` keeps z inside its radius."""
    return settings.method.startswith("posterior") or settings.method.endswith("_opt")


def training_pool(model, cfg, pool_size: int | None) -> LatentPool:
    """The encoded first ``pool_size`` training crystals of the config's dataset (None: all of them)."""
    from genlowdim.crystal.cdvae.training import load_split

    return encode_pool(model, load_split(cfg, "train", pool_size))


def load_pool(model, cfg, settings: CSPSettings, pool_size: int) -> LatentPool | None:
    """:func:`training_pool` for the methods that need one (:func:`needs_pool`), else None."""
    return training_pool(model, cfg, pool_size) if needs_pool(settings) else None
