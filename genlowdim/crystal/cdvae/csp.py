"""Crystal structure prediction (CSP) from a formula with a trained CDVAE.

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
from genlowdim.config import to_dict
from genlowdim.crystal.cdvae.sampling import decode_latents
from genlowdim.crystal.decoded import DecodedCrystals
from genlowdim.crystal.latents import LatentPool, adam_in_ball, draw_latents, encode_pool
from genlowdim.crystal.runs import BatchRun, item_id, model_digest
from genlowdim.errors import UsageError
from genlowdim.runtime import library_versions, write_json

__all__ = ["METHODS", "CSPSettings", "parse_formula", "formula_counts", "formula_nll",
           "propose_latents", "refine_latents", "predict_structures"]

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


def parse_formula(text: str, max_atoms: int) -> torch.Tensor:
    """Atom types (N,) of a cell formula such as ``CsPbI3`` (the formula as written is the cell content),
    sorted atomic numbers. Raises UsageError (one line) for an unparsable formula, an unknown element,
    fractional counts, or more atoms than the model's ``max_atoms``."""
    from pymatgen.core import Composition

    try:
        comp = Composition(text)
    except Exception as err:  # noqa: BLE001 - pymatgen raises several kinds for bad input
        raise UsageError(f"--formula {text!r}: not a chemical formula ({' '.join(str(err).split())})") from err
    types = []
    for element, count in comp.items():
        z = getattr(element, "Z", None)
        if z is None or not 1 <= z <= MAX_ATOMIC_NUM:
            raise UsageError(f"--formula {text!r}: unknown element {element}")
        if abs(count - round(count)) > 1e-8 or round(count) < 1:
            raise UsageError(f"--formula {text!r}: {element} has a non-integer count {count:g}; give the "
                             f"cell's whole-number formula")
        types += [z] * int(round(count))
    if not types:
        raise UsageError(f"--formula {text!r}: no atoms")
    if len(types) > max_atoms:
        raise UsageError(f"--formula {text!r}: {len(types)} atoms, but this model decodes cells of at most "
                         f"{max_atoms} atoms")
    return torch.tensor(sorted(types), dtype=torch.long)


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


# ---------------------------------------------------------------- runs written to disk
def _run_settings(model, cfg, settings: CSPSettings, samples: int, pool_size: int, batch_size: int, seed: int,
                  protocol: dict | None) -> dict:
    device = next(model.parameters()).device
    sampler = cfg.sampling.sampler
    return {"task": "csp", "model": model_digest(model), "csp": to_dict(settings), "samples": samples,
            "pool_size": pool_size if needs_pool(settings) else None,
            "batch_size": batch_size, "seed": seed, "protocol": protocol, "sampler": sampler,
            "sampler_spec": to_dict(cfg.sampling.spec(sampler)), "device": device.type}


def needs_pool(settings: CSPSettings) -> bool:
    """``posterior*`` draws from the pool; ``*_opt`` keeps z inside its radius."""
    return settings.method.startswith("posterior") or settings.method.endswith("_opt")


def load_pool(model, cfg, settings: CSPSettings, pool_size: int) -> LatentPool | None:
    """The encoded first ``pool_size`` training crystals, for methods that need them (:func:`needs_pool`)."""
    if not needs_pool(settings):
        return None
    from genlowdim.crystal.cdvae.training import load_split

    return encode_pool(model, load_split(cfg, "train", pool_size))


def run_csp(model, cfg, formulas: list[torch.Tensor], ids: list[str], out_dir, *, samples: int = 1,
            settings: CSPSettings = CSPSettings(), pool_size: int = 2000, batch_size: int = 500, seed: int = 0,
            overwrite: bool = False, protocol: dict | None = None, merged: str = "candidates.extxyz",
            candidate_ids: str = "rank", extra_settings: dict | None = None) -> dict:
    """Write ``samples`` candidates for each formula (``ids[i]`` names formula i) into ``out_dir``, batch by
    batch (resumable like ``reconstruct``; batch k decodes whole formulas, ``batch_size // samples`` of them).

    ``candidate_ids``: ``rank`` names candidate j of formula i ``<ids[i]>_<j:03d>`` and writes CIFs;
    ``same`` repeats ``ids[i]`` for its candidates (the benchmark's form, paired with ``truth.extxyz``) and
    writes no CIFs. Candidates are ranked best first by the formula NLL (stored per frame as
    ``formula_nll`` with ``rank``). Returns the summary also written as ``manifest.json``."""
    run = _run_settings(model, cfg, settings, samples, pool_size, batch_size, seed, protocol)
    run.update(ids=list(ids), formulas=[t.tolist() for t in formulas], **(extra_settings or {}))
    batches = BatchRun.open(out_dir, run, device=next(model.parameters()).device, overwrite=overwrite,
                            write_cifs=candidate_ids == "rank", cleared=("manifest.json", merged, "truth.extxyz"))
    writer = batches.writer
    per_batch = max(1, batch_size // samples)
    num_batches = -(-len(formulas) // per_batch)
    pool = None
    for k in batches.pending(num_batches, "CSP batches"):
        if pool is None:
            pool = load_pool(model, cfg, settings, pool_size)
        chunk = slice(k * per_batch, (k + 1) * per_batch)
        decoded, nll = predict_structures(model, cfg.sampling, formulas[chunk], samples, settings, pool=pool,
                                          generator=batches.generator(seed, k))
        names = [f"{i}_{j:03d}" if candidate_ids == "rank" else i for i in ids[chunk] for j in range(samples)]
        ranks = [j for _ in ids[chunk] for j in range(samples)]
        writer.write(k, decoded.to_structures(), names,
                     {"decoder_calls": decoded.decoder_calls, "formula_nll": nll.tolist()},
                     frame_info={"rank": ranks, "formula_nll": nll.tolist()})
    batches.barrier()
    summary = {"compositions": len(formulas), "samples": samples, "method": settings.method,
               "csp": run["csp"], "sampler": run["sampler"], "protocol": protocol, "seed": seed}
    record = {"settings_hash": writer.hash, "versions": library_versions(), **(extra_settings or {})}
    if batches.first:
        count, finished = writer.merge(num_batches, merged)
        calls = sum(i.get("decoder_calls", 0) for i in writer.infos(finished))
        summary = {"count": count, **summary, "decoder_calls": calls, **record}
        write_json(writer.out / "manifest.json", summary)
    else:
        summary.update(record)
    batches.barrier()
    return summary


def csp_formula(model, cfg, formula: str, out_dir, *, samples: int = 20, **kw) -> dict:
    """Candidates for one formula: ``cif/<formula>_<rank>.cif`` and ``candidates.extxyz``, best first."""
    types = parse_formula(formula, model.max_atoms)
    name = "".join(formula.split())
    return run_csp(model, cfg, [types], [name], out_dir, samples=samples,
                   extra_settings={"formula": formula}, **kw)


def csp_split(model, cfg, split: str, out_dir, *, num: int | None = None, samples: int = 1, **kw) -> dict:
    """The CSP benchmark on the first ``num`` crystals of ``split``: ``truth.extxyz`` and
    ``predictions.extxyz`` with the same ids in the same order (``samples`` consecutive candidates per id,
    best ranked first), for ``genlowdim evaluate ... --mode reconstruction``. Only the compositions are given
    to the model."""
    from torch_geometric.data import Batch

    from genlowdim.crystal.decoded import batch_to_decoded
    from genlowdim.crystal.cdvae.training import load_split
    from genlowdim.structures.io import write_extxyz

    items = load_split(cfg, split, num)
    ids = [item_id(d, split, i) for i, d in enumerate(items)]
    summary = run_csp(model, cfg, [d.atom_types for d in items], ids, out_dir, samples=samples,
                      merged="predictions.extxyz", candidate_ids="same",
                      extra_settings={"split": split, "dataset": cfg.data.dataset}, **kw)
    from pathlib import Path

    write_extxyz(batch_to_decoded(Batch.from_data_list(items)).to_structures(), Path(out_dir) / "truth.extxyz",
                 ids=ids)
    return summary
