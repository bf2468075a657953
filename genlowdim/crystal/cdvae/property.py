"""Property predictor: the CDVAE encoder's pooled invariant representation + an MLP regression head.

Trained with ``task: property`` configs (``configs/crystal/property_perov_5.yaml``) on the dataset's property
(perov_5: ``heat_ref``, eV/atom); the evaluation's ``wdist_prop`` and the optimisation success rates use it
to score generated crystals (CDVAE trains such a separate model for the same purpose).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlowdim.crystal.cdvae.config import ModelConfig
from genlowdim.crystal.geometry.encoder import CrystalEncoder
from genlowdim.crystal.cdvae.model import Standardiser, mlp_head


class PropertyPredictor(nn.Module):
    """``predict(batch) -> (B,)`` property in data units; ``forward(batch, ...) -> (mse loss, parts)``.

    The target is standardised with the train-set mean/std (a buffer, saved in checkpoints); the loss is the
    MSE in standardised units, so ``val_property`` is comparable across datasets."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = CrystalEncoder(cfg.encoder, cfg.latent_dim)
        self.head = mlp_head(self.encoder.pooled_dim, cfg.head_hidden, 1)
        self.property_scaler = Standardiser(1)

    def predict_scaled(self, batch) -> torch.Tensor:
        return self.head(self.encoder.embed(batch)).squeeze(-1)

    def predict(self, batch) -> torch.Tensor:
        return self.property_scaler.inverse(self.predict_scaled(batch)[:, None]).squeeze(-1)

    def forward(self, batch, generator=None, teacher_forcing: bool = True):
        target = self.property_scaler(batch.y.view(-1, 1).to(batch.frac_coords.dtype)).squeeze(-1)
        mse = F.mse_loss(self.predict_scaled(batch), target)
        mae = (self.predict(batch) - batch.y.view(-1)).abs().mean()
        return mse, {"property": mse, "mae": mae.detach()}
