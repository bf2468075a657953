"""CDVAE (Xie, Fu, Ganea, Barzilay, Jaakkola, ICLR 2022) with the e3nn encoder and decoder of this package.

* ``encode``: q(z | M) = N(μ, diag σ²) from :class:`CrystalEncoder`; z = μ + σ·ε (ε from the caller's generator).
* heads on z, each Linear–ReLU–Linear: number of atoms (max_atoms+1 classes), lattice (6 values: lengths
  · N^(-1/3) in Å and angles in degrees, standardised by :class:`Standardiser` fitted on the train set),
  composition (100 logits, one distribution per crystal), optionally a property.
* ``loss``: CDVAE's eq. 3 with its weights: natom CE + 10·lattice MSE + 10·coord DSM + type CE/σ_type
  + 0.01·KL + composition CE + property MSE; see :func:`coord_loss` and :func:`type_loss`.
The scalers live in buffers, so every checkpoint (``state_dict``) carries them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter

from genlowdim.core.losses import dsm_reduce
from genlowdim.core.schedules import sigmas_geometric
from genlowdim.crystal.cdvae.config import ModelConfig
from genlowdim.crystal.cdvae.decoder import CrystalDecoder
from genlowdim.crystal.geometry.encoder import MAX_ATOMIC_NUM, CrystalEncoder
from genlowdim.crystal.geometry.lattice import (cart_to_frac, frac_to_cart, lattice_from_params,
                                                min_image_cart_displacement)


MIN_SCALED_LENGTH = 0.5       # Å, lower bound of a decoded length·N^(-1/3)
ANGLE_RANGE = (30.0, 150.0)   # degrees, bounds of a decoded cell angle


class Standardiser(nn.Module):
    """(x − mean)/std with buffers (D,); ``fit(x: (M, D))`` sets them from training data."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: torch.Tensor) -> "Standardiser":
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0, unbiased=False).clamp_min(1e-6))   # population std, as CDVAE's scaler
        return self

    def forward(self, x):
        return (x - self.mean) / self.std

    def inverse(self, x):
        return x * self.std + self.mean


def mlp_head(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def scaled_lattice_target(lengths: torch.Tensor, angles: torch.Tensor, num_atoms: torch.Tensor):
    """(B,3) Å, (B,3) degrees, (B,) -> (B,6): lengths·N^(-1/3) and angles (CDVAE's 'scale_length')."""
    return torch.cat([lengths / num_atoms.to(lengths.dtype)[:, None].pow(1 / 3), angles], dim=-1)


def coord_score_target(noisy_frac, true_frac, lattice, batch, sigma_atom):
    """Score of the wrapped Gaussian's nearest image: −d/σ², d = minimum-image (noisy − true) in Å. (N,3)."""
    d = min_image_cart_displacement(noisy_frac, true_frac, lattice, batch)
    return -d / sigma_atom[:, None] ** 2


def coord_loss(coord_out, target, sigma_atom, batch):
    """CDVAE's DSM loss ½σ²‖target − out/σ‖² (the core DSM loss with λ = σ², reduced as it reduces graphs:
    summed over x, y, z, averaged per crystal), then averaged over the batch."""
    sigma = sigma_atom[:, None]
    return dsm_reduce(0.5 * sigma ** 2 * (target - coord_out / sigma) ** 2, batch).mean()


def type_loss(type_logits, atom_types, type_sigma_atom, batch):
    """CE(logits, true type)/σ_type, averaged per crystal, then over the batch (CDVAE)."""
    ce = F.cross_entropy(type_logits, atom_types - 1, reduction="none") / type_sigma_atom
    return scatter(ce, batch, dim=0, reduce="mean").mean()


def composition_loss(composition_logits, batch):
    """CDVAE's composition CE: every atom's type under its crystal's predicted composition, averaged per
    crystal, then over the batch. ``composition_logits``: (B, 100); ``batch``: a PyG batch."""
    ones = torch.ones(batch.atom_types.shape, dtype=composition_logits.dtype, device=composition_logits.device)
    return type_loss(composition_logits[batch.batch], batch.atom_types, ones, batch.batch)


def kl_to_prior(mu, log_var):
    """KL(N(μ, diag σ²) ‖ N(0, I)) per crystal, averaged over the batch. (B, latent) each -> scalar."""
    return torch.mean(-0.5 * torch.sum(1 + log_var - mu ** 2 - log_var.exp(), dim=1))


class CDVAE(nn.Module):
    """The generative model. Batches are PyG batches of crystals (see :class:`CrystalEncoder`)."""

    def __init__(self, cfg: ModelConfig, max_atoms: int):
        super().__init__()
        self.cfg, self.max_atoms = cfg, int(max_atoms)
        self.encoder = CrystalEncoder(cfg.encoder, cfg.latent_dim)
        self.decoder = CrystalDecoder(cfg.decoder, cfg.latent_dim)
        h = cfg.head_hidden
        self.fc_num_atoms = mlp_head(cfg.latent_dim, h, self.max_atoms + 1)
        self.fc_lattice = mlp_head(cfg.latent_dim, h, 6)
        self.fc_composition = mlp_head(cfg.latent_dim, h, MAX_ATOMIC_NUM)
        self.fc_property = mlp_head(cfg.latent_dim, h, 1) if cfg.predict_property else None
        self.lattice_scaler = Standardiser(6)
        self.property_scaler = Standardiser(1)
        self.register_buffer("sigmas", sigmas_geometric(cfg.sigma_begin, cfg.sigma_end, cfg.num_noise_levels))
        self.register_buffer("type_sigmas", sigmas_geometric(
            cfg.type_sigma_begin, cfg.type_sigma_end, cfg.num_type_noise_levels))

    def compile_kernels(self) -> None:
        """Run the encoder's and decoder's interaction blocks through torch.compile, in place
        (``train.compile_kernels``; bench/train_step.py --visits measures the gain)."""
        from genlowdim.crystal.geometry.layers import compile_blocks

        compile_blocks(self)

    # ---- latent ------------------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    def encode(self, batch, generator=None, sample: bool = True):
        """-> (mu, log_var, z), each (B, latent). ``sample=False`` returns z = μ (deterministic)."""
        mu, log_var = self.encoder(batch)
        if not sample:
            return mu, log_var, mu
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu, log_var, mu + torch.exp(0.5 * log_var) * eps

    def decode_stats(self, z):
        """-> (num_atoms logits (B, max_atoms+1), lengths (B,3) Å, angles (B,3) deg, composition logits (B,100)).

        The lengths use the argmax number of atoms to undo the N^(-1/3) scaling (CDVAE)."""
        natom_logits = self.fc_num_atoms(z)
        num_atoms = natom_logits.argmax(-1).clamp_min(1)
        lengths, angles = self.unscale_lattice(self.fc_lattice(z), num_atoms)
        return natom_logits, lengths, angles, self.fc_composition(z)

    def unscale_lattice(self, pred6, num_atoms):
        """Standardised (B,6) -> lengths (B,3) Å, angles (B,3) degrees.

        Clamped to a usable cell (scaled lengths ≥ 0.5 Å, angles in [30°, 150°]) so that a badly predicted
        lattice (an untrained head, a latent far from the prior) still gives a finite periodic graph."""
        raw = self.lattice_scaler.inverse(pred6)
        lengths = raw[:, :3].clamp_min(MIN_SCALED_LENGTH) * num_atoms.to(raw.dtype)[:, None].pow(1 / 3)
        return lengths, raw[:, 3:].clamp(*ANGLE_RANGE)

    def lattice_clamped(self, pred6):
        """(B,) bool: the lattice of standardised prediction ``pred6`` needed :meth:`unscale_lattice`'s clamp
        (a scaled length below 0.5 Å or an angle outside [30°, 150°]); counted and reported with every
        decode, since CDVAE would have decoded such a cell as it is (and counted it invalid if non-positive)."""
        raw = self.lattice_scaler.inverse(pred6)
        return ((raw[:, :3] < MIN_SCALED_LENGTH).any(-1) | (raw[:, 3:] < ANGLE_RANGE[0]).any(-1)
                | (raw[:, 3:] > ANGLE_RANGE[1]).any(-1))

    def predict_property(self, z):
        """Property in data units, (B,)."""
        if self.fc_property is None:
            raise ValueError("this model was trained without a property head (model.predict_property: false)")
        return self.property_scaler.inverse(self.fc_property(z)).squeeze(-1)

    # ---- training ----------------------------------------------------------------------------------
    def forward(self, batch, generator=None, teacher_forcing: bool = True):
        """The training loss (so DDP sees a forward): see :meth:`loss`."""
        return self.loss(batch, generator, teacher_forcing)

    def noisy_types(self, batch, composition_logits, type_sigma_atom, generator):
        """Draw noisy types from one-hot + σ_type·softmax(composition) (CDVAE); (N,) atomic numbers."""
        probs = F.one_hot(batch.atom_types - 1, MAX_ATOMIC_NUM).to(type_sigma_atom.dtype)
        probs = probs + type_sigma_atom[:, None] * F.softmax(composition_logits.detach(), -1)[batch.batch]
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1) + 1

    def loss(self, batch, generator=None, teacher_forcing: bool = True):
        """CDVAE's total loss and its parts for a PyG batch; all noise from ``generator``. -> (loss, dict)."""
        mu, log_var, z = self.encode(batch, generator)
        natom_logits, _, _, comp_logits = self.decode_stats(z)
        pred6 = self.fc_lattice(z)
        num_atoms = batch.num_atoms
        target6 = self.lattice_scaler(scaled_lattice_target(batch.lengths.view(-1, 3), batch.angles.view(-1, 3),
                                                            num_atoms))
        if teacher_forcing:
            lattice = batch.lattice.view(-1, 3, 3)
        else:
            lattice = lattice_from_params(*self.unscale_lattice(pred6, num_atoms))
        B, dev, dt = z.shape[0], z.device, z.dtype
        level = torch.randint(0, len(self.sigmas), (B,), generator=generator, device=dev)
        type_level = torch.randint(0, len(self.type_sigmas), (B,), generator=generator, device=dev)
        sigma_atom = self.sigmas[level][batch.batch]
        type_sigma_atom = self.type_sigmas[type_level][batch.batch]
        noise = torch.randn(batch.frac_coords.shape, generator=generator, device=dev, dtype=dt)
        cart = frac_to_cart(batch.frac_coords, lattice, batch.batch) + noise * sigma_atom[:, None]
        noisy_frac = torch.remainder(cart_to_frac(cart, lattice, batch.batch), 1.0)
        types = self.noisy_types(batch, comp_logits, type_sigma_atom, generator)
        coord_out, type_logits = self.decoder(frac_to_cart(noisy_frac, lattice, batch.batch), types, z,
                                              self.sigmas[level], lattice, batch.batch)
        # the target's displacement is measured in the true cell, as CDVAE does, whichever cell the noise and
        # the decoder used (they differ once teacher forcing ends)
        target = coord_score_target(noisy_frac, batch.frac_coords, batch.lattice.view(-1, 3, 3), batch.batch,
                                    sigma_atom)
        parts = {
            "natom": F.cross_entropy(natom_logits, num_atoms),
            "lattice": F.mse_loss(pred6, target6),
            "composition": composition_loss(comp_logits, batch),
            "coord": coord_loss(coord_out, target, sigma_atom, batch.batch),
            "type": type_loss(type_logits, batch.atom_types, type_sigma_atom, batch.batch),
            "kld": kl_to_prior(mu, log_var),
        }
        if self.fc_property is not None:
            parts["property"] = F.mse_loss(self.fc_property(z).squeeze(-1),
                                           self.property_scaler(batch.y.view(-1, 1)).squeeze(-1))
        c = self.cfg
        weights = {"natom": c.cost_natom, "lattice": c.cost_lattice, "composition": c.cost_composition,
                   "coord": c.cost_coord, "type": c.cost_type, "kld": c.cost_kld, "property": c.cost_property}
        total = sum(weights[k] * v for k, v in parts.items())
        return total, parts
