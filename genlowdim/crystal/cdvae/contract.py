"""A trained CDVAE and its decode settings as a :class:`~genlowdim.crystal.contract.LatentCrystalModel`:
what the crystal tasks call."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch

from genlowdim.config import to_dict
from genlowdim.crystal.cdvae.config import CrystalConfig, SamplingConfig
from genlowdim.crystal.cdvae.csp import CSPSettings, needs_pool, predict_structures
from genlowdim.crystal.cdvae.protocols import DecodeSettings
from genlowdim.crystal.cdvae.sampling import decode_latents, generate, reconstruct_batch
from genlowdim.crystal.contract import LatentOptimization
from genlowdim.crystal.decoded import DecodedCrystals
from genlowdim.crystal.latents import LatentPool, draw_latents
from genlowdim.crystal.runs import model_digest

__all__ = ["CDVAECrystals", "data_record"]


@dataclass(frozen=True, eq=False)
class CDVAECrystals:
    """``model``: a CDVAE in eval mode; ``sampling``: its decode settings; ``sampler``/``steps``: a sampler of
    ``sampling.samplers`` and its step count (None: the config's); ``latent``: reconstruction from the
    posterior ``mean`` or a posterior ``sample`` (also where property optimisation starts); ``constraint``:
    property optimisation's bound on z (``none``/``ball``, :meth:`latent_optimization`); ``csp``/``pool``: how
    :meth:`predict` proposes latents (``pool_loader``: loads the pool at the first use instead, so that a
    finished run encodes nothing; ``pool_size``: the training crystals it encodes, recorded); ``source``:
    where :meth:`sample` draws z, ``prior`` N(0, I) or ``posterior`` around the pool's crystals.
    ``config``: the checkpoint's config (its dataset, for :meth:`load_split`); ``protocol``: the decode
    settings ``sampling`` was resolved from (recorded by the runs)."""
    model: torch.nn.Module
    sampling: SamplingConfig
    sampler: str | None = None
    steps: int | None = None
    latent: str = "mean"
    constraint: str = "none"
    csp: CSPSettings = field(default_factory=CSPSettings)
    pool: LatentPool | None = None
    pool_loader: Callable[[], LatentPool | None] | None = None
    pool_size: int | None = None
    config: CrystalConfig | None = None
    protocol: DecodeSettings | None = None
    source: str = "prior"

    @property
    def sampler_name(self) -> str:
        return self.sampler or self.sampling.sampler

    @property
    def latent_dim(self) -> int:
        return self.model.cfg.latent_dim

    @property
    def max_atoms(self) -> int:
        return self.model.max_atoms

    @property
    def property_head(self) -> str | None:
        return "CDVAE property head" if self.model.fc_property is not None else None

    @property
    def dataset(self) -> str:
        return self._config().data.dataset

    def _config(self) -> CrystalConfig:
        if self.config is None:
            raise ValueError("this CDVAECrystals was built without its config; pass config= to read its dataset")
        return self.config

    def load_split(self, split: str, num: int | None = None) -> list:
        from genlowdim.crystal.cdvae.training import load_split

        return load_split(self._config(), split, num)

    def run_entries(self, task: str) -> tuple[dict, dict]:
        """(settings, manifest) entries of a run of ``task``: the protocol record, and for ``reconstruct`` the
        data section and latent, for ``csp`` the latent source and pool, for ``sample`` the sampling config,
        for ``optimize`` the sampler's spec."""
        record = self.protocol.to_dict() if self.protocol is not None else None
        name = self.sampler_name
        if task == "reconstruct":
            described = "posterior mean (mu)" if self.latent == "mean" else "posterior sample (mu + sigma * eps)"
            return ({"data": data_record(self._config()), "latent": self.latent, "protocol": record},
                    {"sampler": name, "steps": self.steps, "protocol": record,
                     "dataset": self._config().data.dataset, "latent": described})
        if task == "csp":
            csp = to_dict(self.csp)
            return ({"csp": csp, "pool_size": self.pool_size if needs_pool(self.csp) else None, "protocol": record},
                    {"method": self.csp.method, "csp": csp, "sampler": name})
        if task == "optimize":
            return {"protocol": record}, {"protocol": record, "sampler": name,
                                          "sampler_spec": to_dict(self.sampling.spec(name))}
        manifest = {"sampler": name, "steps": self.steps, "protocol": record}
        settings = {"protocol": record}
        if task == "sample":
            manifest["sampling_config"] = to_dict(self.sampling)
            if self.source != "prior":   # the pool the latents are drawn around (0: the whole training split)
                settings["pool_size"] = manifest["pool_size"] = self.pool_size
        return settings, manifest

    def record(self, task: str) -> dict:
        """Weights digest, sampler and its spec, device; for ``sample`` and ``reconstruct`` also the step
        override and how the types follow the decoder."""
        name = self.sampler_name
        rec = {"model": model_digest(self.model), "sampler": name,
               "sampler_spec": to_dict(self.sampling.spec(name))}
        if task in ("sample", "reconstruct"):
            rec.update(steps=self.steps, type_update=self.sampling.type_update if task == "sample"
                       else self.sampling.recon_type_update)
        rec["device"] = next(self.model.parameters()).device.type
        return rec

    @cached_property
    def latent_pool(self) -> LatentPool | None:
        return self.pool if self.pool is not None or self.pool_loader is None else self.pool_loader()

    def sample(self, num: int, generator=None) -> DecodedCrystals:
        if self.source == "prior":
            return generate(self.model, num, self.sampling, sampler=self.sampler, steps=self.steps,
                            generator=generator)
        z = draw_latents(num, self.latent_dim, self.latent_pool, generator, like=next(self.model.parameters()))
        return self.decode(z, generator)

    def reconstruct(self, batch, generator=None) -> DecodedCrystals:
        return reconstruct_batch(self.model, batch, self.sampling, sampler=self.sampler, steps=self.steps,
                                 generator=generator, sample_latent=self.latent == "sample")

    def predict(self, formulas, samples: int, generator=None) -> tuple[DecodedCrystals, torch.Tensor]:
        return predict_structures(self.model, self.sampling, formulas, samples, self.csp, pool=self.latent_pool,
                                  sampler=self.sampler, steps=self.steps, generator=generator)

    def encode(self, batch, generator=None, sample: bool = True):
        return self.model.encode(batch, generator=generator, sample=sample)

    def decode(self, z: torch.Tensor, generator=None) -> DecodedCrystals:
        return decode_latents(self.model, z, self.sampling, sampler=self.sampler, steps=self.steps,
                              generator=generator)

    def predict_property(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.predict_property(z)

    def latent_optimization(self) -> LatentOptimization:
        """Starts from ``latent`` (mean or posterior sample), bounded by ``constraint``."""
        return LatentOptimization(self.latent, self.constraint)

    def parameters(self):
        return self.model.parameters()


def data_record(cfg: CrystalConfig) -> dict:
    """The data section as reconstruction settings record it: ``data_dir`` only when one is given, so that
    folders written before the field existed still resume."""
    data = to_dict(cfg.data)
    if data.get("data_dir") is None:
        data.pop("data_dir", None)
    return data
