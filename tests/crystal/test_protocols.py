"""Protocols set defaults, flags override single settings, and the record says what was used."""
import pytest

from genlowdim.crystal.cdvae.config import SamplerSpec, load_crystal_config
from genlowdim.crystal.cdvae.protocols import CDVAE_ALD, resolve

TINY = "configs/crystal/tiny.yaml"


@pytest.fixture(scope="module")
def cfg():
    return load_crystal_config(TINY)


def test_cdvae_protocol_is_cdvae_evaluate_py(cfg):
    for task, types_field in (("sample", "type_update"), ("reconstruct", "recon_type_update"),
                              ("optimize", "type_update")):
        used, settings = resolve("cdvae", task, cfg)
        assert used.sampling.sampler == "ald"
        assert used.sampling.spec() == SamplerSpec("ald", steps_each=100, step_lr=1e-4) == CDVAE_ALD
        assert getattr(used.sampling, types_field) == "argmax" and settings.type_update == "argmax"
        assert settings.overridden == () and settings.spec.steps_each == 100
    assert resolve("cdvae", "reconstruct", cfg)[1].latent == "sample"
    assert resolve("cdvae", "optimize", cfg)[1].constraint == "none"


def test_genlowdim_protocol_takes_the_checkpoint_s_fast_sampler(cfg):
    used, settings = resolve("genlowdim", "reconstruct", cfg)
    assert used.sampling.sampler == "ald_fast"
    assert used.sampling.spec() == cfg.sampling.spec("ald_fast")
    assert used.sampling.recon_type_update == cfg.sampling.recon_type_update == settings.type_update
    assert settings.latent == "mean"
    assert resolve("genlowdim", "optimize", cfg)[1].constraint == "ball"
    assert resolve("genlowdim", "sample", cfg)[0].sampling.type_update == cfg.sampling.type_update


def test_a_flag_overrides_one_setting_and_is_recorded(cfg):
    used, settings = resolve("cdvae", "sample", cfg, sampler="ald_fast")
    assert used.sampling.spec() == cfg.sampling.spec("ald_fast")          # the named sampler's own spec
    assert used.sampling.type_update == "argmax" and settings.overridden == ("sampler",)
    used, settings = resolve("cdvae", "reconstruct", cfg, steps=7, step_lr=3e-5, latent="mean")
    assert used.sampling.spec() == SamplerSpec("ald", steps_each=7, step_lr=3e-5)
    assert settings.latent == "mean" and settings.overridden == ("steps", "step_lr", "latent")
    used, _ = resolve("genlowdim", "sample", cfg, sampler="pc", steps=12)
    assert used.sampling.spec().method == "pc" and used.sampling.spec().steps == 12


def test_generation_draws_from_the_prior_unless_told_and_records_a_posterior_source(cfg):
    for protocol in ("cdvae", "genlowdim"):
        settings = resolve(protocol, "sample", cfg)[1]
        assert settings.source == "prior" and "latent_source" not in settings.to_dict()
    settings = resolve("cdvae", "sample", cfg, source="posterior")[1]
    assert settings.to_dict()["latent_source"] == "posterior" and settings.overridden == ("latent_source",)


@pytest.mark.parametrize("kwargs, words", [
    ({"protocol": "paper"}, "--protocol 'paper'"),
    ({"step_lr": 1e-4, "sampler": "pc"}, "--step-lr"),
    ({"step_lr": -1.0}, "positive"),
    ({"latent": "mode"}, "--latent 'mode'"),
    ({"constraint": "box"}, "--constraint 'box'"),
    ({"source": "data"}, "--latent-source 'data'"),
])
def test_bad_settings_name_the_flag(cfg, kwargs, words):
    protocol = kwargs.pop("protocol", "genlowdim")
    task = "optimize" if "constraint" in kwargs else "reconstruct"
    with pytest.raises(ValueError, match=words):
        resolve(protocol, task, cfg, **kwargs)


def test_the_decode_settings_write_their_own_record(cfg):
    _, settings = resolve("cdvae", "reconstruct", cfg, steps=7)
    assert settings.to_dict() == {"protocol": "cdvae", "task": "reconstruct", "sampler": "ald",
                                  "sampler_spec": {"method": "ald", "steps_each": 7, "step_lr": 1e-4, "steps": 50},
                                  "type_update": "argmax", "overridden": ["steps"], "latent": "sample"}
    assert "latent" not in resolve("cdvae", "optimize", cfg)[1].to_dict()
    assert resolve("cdvae", "optimize", cfg)[1].to_dict()["constraint"] == "none"
