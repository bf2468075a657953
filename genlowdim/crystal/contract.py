"""What the crystal tasks ask of a crystal model: the contract a model family meets.

A family (CDVAE today: :class:`genlowdim.crystal.cdvae.contract.CDVAECrystals`) wraps a trained model and
its decode settings, resolved once, into an object with

* ``record(task) -> dict``: what decides its outputs for ``task`` besides the seed and the inputs (a digest of
  the weights, the sampler and its spec, the device); part of the settings a resumed run must match.
* ``sample(num, generator) -> DecodedCrystals``: ``num`` new crystals.
* ``reconstruct(batch, generator) -> DecodedCrystals``: the crystals of a PyG batch, encoded and decoded.
* ``predict(formulas, samples, generator) -> (DecodedCrystals, scores)``: ``samples`` candidate structures for
  each formula (atom types (N_f,)), formula-major and best first; ``scores`` (len(formulas)·samples,), lower
  is better.

All noise comes from ``generator``, so batch k of a run is reproducible from (seed, k) alone.

What the commands read of it besides (``reconstruct``, ``csp`` and ``optimize`` on the command line):

* ``max_atoms``: the largest cell it decodes (a ``--formula`` with more atoms is refused);
* ``load_split(split, num) -> list``: the first ``num`` crystals (PyG ``Data``; None: all) of a split of the
  dataset it was trained on;
* ``run_entries(task) -> (settings, manifest)``: further entries of the settings a resumed run of ``task``
  must match (e.g. the protocol it was resolved from) and of the run's manifest (both may be empty).

Models with a latent space add the latent hooks that property optimisation, aiming at a property and the
analysis use (:class:`LatentCrystalModel`).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from genlowdim.crystal.decoded import DecodedCrystals

__all__ = ["CrystalModel", "LatentCrystalModel"]


@runtime_checkable
class CrystalModel(Protocol):
    """The tasks' view of a trained crystal model (see the module docstring)."""

    def record(self, task: str) -> dict: ...

    def sample(self, num: int, generator: torch.Generator | None) -> DecodedCrystals: ...

    def reconstruct(self, batch, generator: torch.Generator | None) -> DecodedCrystals: ...

    def predict(self, formulas: list[torch.Tensor], samples: int,
                generator: torch.Generator | None) -> tuple[DecodedCrystals, torch.Tensor]: ...

    max_atoms: int

    def load_split(self, split: str, num: int | None) -> list: ...

    def run_entries(self, task: str) -> tuple[dict, dict]: ...


@runtime_checkable
class LatentCrystalModel(CrystalModel, Protocol):
    """A crystal model with a latent space z (latent_dim,): ``encode(batch, sample=False) -> (mu, log_var,
    z)``, ``decode(z, generator)`` and ``predict_property(z) -> (B, 1)`` (a property head on z);
    ``parameters()`` gives the device and dtype of new latents; ``dataset``: the name of its training
    dataset (property optimisation reads its success-rate percentiles and property name)."""
    dataset: str
    latent_dim: int

    def encode(self, batch, generator: torch.Generator | None = None, sample: bool = True): ...

    def decode(self, z: torch.Tensor, generator: torch.Generator | None) -> DecodedCrystals: ...

    def predict_property(self, z: torch.Tensor) -> torch.Tensor: ...

    def parameters(self): ...
