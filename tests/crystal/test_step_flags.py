"""One unit per flag: ``--steps-per-level`` (ALD samplers: Langevin steps at each of the model's noise levels)
and ``--levels`` (the other samplers: noise levels, one step each); ``--steps`` stays their deprecated alias
with its old meaning. Counted in decoder calls of the shipped model, whose CDVAE has 50 noise levels."""
import json

import pytest

from genlowdim.cli import main
from genlowdim.crystal.cdvae.config import SamplerSpec, load_crystal_config
from genlowdim.crystal.cdvae.protocols import resolve

COMMON = ["--model", "perov_5", "--device", "cpu", "--seed", "2", "--num", "2", "--batch-size", "2"]
MODEL_LEVELS = 50          # the shipped CDVAE's model.num_noise_levels


def _sample(tmp_path, name: str, *flags: str) -> dict:
    out = tmp_path / name
    assert main(["sample", *COMMON, *flags, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    return {"calls": manifest["decoder_calls"], "hash": manifest["settings_hash"],
            "samples": (out / "samples.extxyz").read_text(), "protocol": manifest["protocol"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, module_one_thread):
    root = tmp_path_factory.mktemp("steps")
    return {"per_level": _sample(root, "per_level", "--sampler", "ald_fast", "--steps-per-level", "2"),
            "alias_ald": _sample(root, "alias_ald", "--sampler", "ald_fast", "--steps", "2"),
            "levels": _sample(root, "levels", "--sampler", "euler", "--levels", "7"),
            "alias_euler": _sample(root, "alias_euler", "--sampler", "euler", "--steps", "7")}


def test_steps_per_level_runs_that_many_steps_at_each_model_level(runs):
    assert runs["per_level"]["calls"] == MODEL_LEVELS * 2
    assert runs["per_level"]["protocol"]["sampler_spec"]["steps_each"] == 2


def test_levels_sets_the_number_of_noise_levels(runs):
    assert runs["levels"]["calls"] == 7                        # Euler: one decoder call per level
    assert runs["levels"]["protocol"]["sampler_spec"]["steps"] == 7


@pytest.mark.parametrize("new, alias", [("per_level", "alias_ald"), ("levels", "alias_euler")])
def test_the_deprecated_steps_equals_its_new_form(runs, new, alias):
    """Same crystals, same record and settings hash: a folder written with --steps resumes under the new flag."""
    assert runs[new] == runs[alias]
    assert runs[new]["protocol"]["overridden"] == ["sampler", "steps"]


def test_the_deprecated_steps_warns_on_one_line(tmp_path, capsys):
    _sample(tmp_path, "warned", "--sampler", "ald_fast", "--steps", "1")
    warning = [line for line in capsys.readouterr().err.splitlines() if "deprecated" in line]
    assert len(warning) == 1 and "--steps-per-level" in warning[0] and "--levels" in warning[0]


@pytest.mark.parametrize("flags, words", [
    (["--sampler", "ald_fast", "--levels", "3"], "--levels 3: sampler 'ald_fast' is an ALD sampler"),
    (["--levels", "3"], "--levels 3: sampler 'ald_fast' is an ALD sampler"),    # the protocol's sampler
    (["--sampler", "euler", "--steps-per-level", "3"], "--steps-per-level 3: sampler 'euler'"),
    (["--sampler", "euler", "--steps", "3", "--levels", "3"], "--steps is the deprecated form"),
    (["--steps-per-level", "0"], "--steps-per-level 0: must be at least 1"),
])
def test_a_wrong_combination_is_a_one_line_error(tmp_path, capsys, flags, words):
    assert main(["sample", *COMMON, *flags, "--out", str(tmp_path / "s")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and words in err[0], err


def test_resolve_sets_the_field_of_each_unit():
    cfg = load_crystal_config("configs/crystal/tiny.yaml")
    used, settings = resolve("cdvae", "sample", cfg, steps_per_level=4)
    assert used.sampling.spec() == SamplerSpec("ald", steps_each=4, step_lr=1e-4) and settings.overridden == ("steps",)
    used, _ = resolve("genlowdim", "sample", cfg, sampler="heun", levels=9)
    assert used.sampling.spec().steps == 9 and used.sampling.spec().steps_each == SamplerSpec().steps_each
    for flag, value in (("levels", 3), ("steps_per_level", 3)):
        sampler = "ald" if flag == "levels" else "pc"
        with pytest.raises(ValueError, match=f"--{flag.replace('_', '-')} 3"):
            resolve("cdvae", "sample", cfg, sampler=sampler, **{flag: value})
