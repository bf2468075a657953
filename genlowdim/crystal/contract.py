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

What the commands read of it besides:

* ``dataset``: the name of the dataset it was trained on (the splits it reconstructs, the property it
  predicts, the success-rate percentiles of property optimisation);
* ``max_atoms``: the largest cell it decodes (a ``--formula`` with more atoms is refused);
* ``load_split(split, num) -> list``: the first ``num`` crystals (PyG ``Data``; None: all) of a split of the
  dataset it was trained on;
* ``run_entries(task) -> (settings, manifest)``: further entries of the settings a resumed run of ``task``
  must match (e.g. the protocol it was resolved from) and of the run's manifest or results (both may be
  empty); ``task`` is ``sample``, ``reconstruct``, ``csp`` or ``optimize``.

Models with a latent space z (latent_dim,) add the latent hooks (:class:`LatentCrystalModel`), which property
optimisation (``optimize``) and generation aimed at a property (``sample --target``) use:

* ``latent_dim``: the size of z;
* ``parameters()``: an iterator whose first tensor gives the device and dtype of new latents;
* ``encode(batch, generator, sample) -> (mu, log_var, z)``, each (B, latent_dim): the posterior of a PyG batch;
  z = mu when ``sample`` is false, else a posterior draw mu + sigma·eps with eps from ``generator``;
* ``decode(z, generator) -> DecodedCrystals``: crystals of latents z (B, latent_dim), with the model's decode
  settings;
* ``property_head``: how outputs name its property head (e.g. ``"CDVAE property head"``), None when it has
  none (``optimize`` and ``--target`` then refuse it);
* ``predict_property(z) -> (B,)``: the head's prediction of the dataset's property from z, differentiable in z;
* ``latent_optimization() -> LatentOptimization``: where property optimisation starts and what bounds it,
  resolved once by the family (CDVAE: from its protocol and ``--latent``/``--constraint``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:   # the command line reads the constants below before any numerical library loads
    import torch

    from genlowdim.crystal.decoded import DecodedCrystals

__all__ = ["CrystalModel", "LatentCrystalModel", "LatentOptimization", "LATENT_HOOKS", "START_LATENTS",
           "CONSTRAINTS", "missing_latent_hooks"]

START_LATENTS = ("mean", "sample")
CONSTRAINTS = ("none", "ball")
# what a LatentCrystalModel adds to a CrystalModel, in the order a refusal names them
LATENT_HOOKS = ("latent_dim", "parameters", "encode", "decode", "property_head", "predict_property",
                "latent_optimization")


@dataclass(frozen=True)
class LatentOptimization:
    """How property optimisation searches a model's latent space. ``start``: ``mean`` (z = mu of each
    encoded crystal) or ``sample`` (z = mu + sigma·eps, eps from the run's generator, as CDVAE);
    ``constraint``: ``none`` (Adam on z unbounded, as CDVAE) or ``ball`` (after each step z is kept within
    the ball holding the posterior means of the first training crystals; see
    :mod:`genlowdim.crystal.tasks.optimize`)."""
    start: str = "mean"
    constraint: str = "none"

    def __post_init__(self):
        if self.start not in START_LATENTS:
            raise ValueError(f"start latent {self.start!r}: choose one of {', '.join(START_LATENTS)}")
        if self.constraint not in CONSTRAINTS:
            raise ValueError(f"constraint {self.constraint!r}: choose one of {', '.join(CONSTRAINTS)}")


@runtime_checkable
class CrystalModel(Protocol):
    """The tasks' view of a trained crystal model (see the module docstring)."""

    def record(self, task: str) -> dict: ...

    def sample(self, num: int, generator: torch.Generator | None) -> DecodedCrystals: ...

    def reconstruct(self, batch, generator: torch.Generator | None) -> DecodedCrystals: ...

    def predict(self, formulas: list[torch.Tensor], samples: int,
                generator: torch.Generator | None) -> tuple[DecodedCrystals, torch.Tensor]: ...

    dataset: str
    max_atoms: int

    def load_split(self, split: str, num: int | None) -> list: ...

    def run_entries(self, task: str) -> tuple[dict, dict]: ...


@runtime_checkable
class LatentCrystalModel(CrystalModel, Protocol):
    """A crystal model with a latent space and a property head on it (the latent hooks of the module
    docstring)."""
    latent_dim: int
    property_head: str | None

    def parameters(self): ...

    def encode(self, batch, generator: torch.Generator | None = None, sample: bool = True): ...

    def decode(self, z: torch.Tensor, generator: torch.Generator | None) -> DecodedCrystals: ...

    def predict_property(self, z: torch.Tensor) -> torch.Tensor: ...

    def latent_optimization(self) -> LatentOptimization: ...


def missing_latent_hooks(model) -> list[str]:
    """The latent hooks (:data:`LATENT_HOOKS`) that ``model`` lacks; empty for a :class:`LatentCrystalModel`."""
    return [name for name in LATENT_HOOKS if not hasattr(model, name)]
