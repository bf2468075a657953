"""Q4: editing a crystal by moving its latent along the leading directions of its cluster's subspace.

For a crystal with posterior mean z in cluster k of the latent union of subspaces (bases U_k from
:func:`genlowdim.crystal.analysis.subspaces.union_of_subspaces`), z' = z + α·s·u with u the j-th column of U_k (the
j-th principal direction of the cluster) and s the standard deviation of the cluster's centred latents along
U_k's first column. As a control, the same steps go along random unit directions orthogonal to every
subspace of the union (orthogonal to U_k alone when the union spans the whole latent space): MoLRG's
editing rests on such directions leaving the output unchanged. Decoded without sampling: number of atoms,
lattice (volume per atom, lengths), the composition head's formula (counts round(p·N), as the sampler's
initial types) and the property head; the gallery decodes full cells with the model's sampler.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch



@dataclass(frozen=True)
class EditSettings:
    num_crystals: int = 3
    num_directions: int = 3
    steps: tuple = (-2.0, -1.0, 0.0, 1.0, 2.0)
    sampler: str = "ald_fast"
    sampler_steps: int | None = None
    seed: int = 0


def head_formula(comp_probs: torch.Tensor, num_atoms: int) -> str:
    """Formula of counts round(p·N) of the composition head's probabilities (B=1): (100,) -> "SrTiO3"."""
    from pymatgen.core import Composition, Element

    counts = torch.round(comp_probs * num_atoms).long()
    parts = {Element.from_Z(int(z) + 1).symbol: int(c) for z, c in enumerate(counts.tolist()) if c > 0}
    return Composition(parts).reduced_formula if parts else "-"


@torch.no_grad()
def decode_heads(model, z: torch.Tensor) -> list[dict]:
    """Deterministic decode of each row of z: (B, latent): num_atoms, volume per atom (Å³), lengths (Å),
    angles (degrees), formula of the composition head and the property head (None without one)."""
    from genlowdim.crystal.geometry.lattice import lattice_from_params

    natom_logits, lengths, angles, comp_logits = model.decode_stats(z)
    num_atoms = natom_logits.argmax(-1).clamp_min(1)
    volume = torch.linalg.det(lattice_from_params(lengths, angles)).abs() / num_atoms
    prop = model.predict_property(z) if model.fc_property is not None else None
    probs = torch.softmax(comp_logits, -1)
    return [{"num_atoms": int(num_atoms[b]), "volume_per_atom": float(volume[b]),
             "lengths": lengths[b].tolist(), "angles": angles[b].tolist(),
             "formula": head_formula(probs[b], int(num_atoms[b])),
             "property": None if prop is None else float(prop[b])} for b in range(z.shape[0])]


def orthogonal_directions(bases: torch.Tensor, cluster: int, num: int, generator) -> torch.Tensor:
    """(latent, num) random unit directions orthogonal to all bases (K, n, d), or to bases[cluster] alone
    when the union leaves no complement."""
    n = bases.shape[1]
    span = bases.permute(1, 0, 2).reshape(n, -1)
    if span.shape[1] + num > n:
        span = bases[cluster]
    q = torch.linalg.qr(span.double())[0]
    g = torch.randn(n, num, generator=generator, dtype=torch.float64)
    g = g - q @ (q.T @ g)
    return g / g.norm(dim=0, keepdim=True)


def edit_along_subspace(model, z_all: torch.Tensor, fit, centre: torch.Tensor, crystal_ids, s: EditSettings) -> dict:
    """Decoded heads along ±α·s·u_j (j < num_directions) of each crystal's own cluster subspace and along
    orthogonal controls. ``z_all``: (N, latent) μ; ``fit``: the union fit on the centred unit rows of z_all
    (labels (N,), bases (K, latent, d)); ``centre``: the mean it was centred on."""
    gen = torch.Generator().manual_seed(s.seed)
    dtype = next(model.parameters()).dtype
    rows = []
    for i in crystal_ids:
        k = int(fit.labels[i])
        members = (z_all[fit.labels == k] - centre).double()
        u = fit.bases[k][:, : s.num_directions].double()
        scale = float((members @ u[:, 0]).std())
        ortho = orthogonal_directions(fit.bases.double(), k, s.num_directions, gen)
        entry = {"crystal": int(i), "cluster": k, "step_scale": scale, "directions": []}
        for kind, dirs in (("subspace", u), ("orthogonal", ortho)):
            for j in range(dirs.shape[1]):
                z = torch.stack([z_all[i].double() + a * scale * dirs[:, j] for a in s.steps]).to(dtype)
                entry["directions"].append({"kind": kind, "index": j, "decoded": decode_heads(model, z)})
        rows.append(entry)
    return {"crystals": rows, "steps": list(s.steps), "summary": edit_summary(rows, s.steps),
            "params": {"num_directions": s.num_directions, "seed": s.seed,
                       "step_unit": "std of the cluster's latents along its first direction"}}


def edit_summary(rows: list[dict], steps) -> dict:
    """Mean absolute change (at the largest |α|) of volume per atom and property, and the fraction of edits
    whose formula differs from the unedited one, per direction kind."""
    far = [i for i, a in enumerate(steps) if abs(a) == max(abs(x) for x in steps)]
    centre = [i for i, a in enumerate(steps) if a == 0][0]
    out = {}
    for kind in ("subspace", "orthogonal"):
        dv, dp, changed = [], [], []
        for entry in rows:
            for d in (d for d in entry["directions"] if d["kind"] == kind):
                base = d["decoded"][centre]
                for i in far:
                    dv.append(abs(d["decoded"][i]["volume_per_atom"] - base["volume_per_atom"]))
                    if base["property"] is not None:
                        dp.append(abs(d["decoded"][i]["property"] - base["property"]))
                    changed.append(d["decoded"][i]["formula"] != base["formula"])
        out[kind] = {"mean_abs_dvolume_per_atom": float(np.mean(dv)) if dv else None,
                     "mean_abs_dproperty": float(np.mean(dp)) if dp else None,
                     "formula_changed_fraction": float(np.mean(changed)) if changed else None}
    return out


def gallery_structures(model, cfg, z: torch.Tensor, direction: torch.Tensor, scale: float, steps,
                       s: EditSettings, generator=None) -> list:
    """pymatgen structures decoded (model sampler ``s.sampler``) from z + α·scale·direction, α in ``steps``."""
    from genlowdim.crystal.cdvae.sampling import decode_latents

    dtype = next(model.parameters()).dtype
    zs = torch.stack([z.double() + a * scale * direction.double() for a in steps]).to(dtype)
    decoded = decode_latents(model, zs, cfg.sampling, sampler=s.sampler, steps=s.sampler_steps, generator=generator)
    return decoded.to_structures()



