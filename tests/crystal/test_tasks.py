"""Generation/reconstruction outputs resume only their own settings; old sampling configs still load."""
import json

import pytest
import torch

from genlowdim.cli import main
from genlowdim.config import to_dict
from genlowdim.crystal.cdvae.checkpoints import load_model
from genlowdim.crystal.runs import model_digest
from genlowdim.crystal.cdvae.config import SamplerSpec, config_from_dict, load_crystal_config
from genlowdim.crystal.tasks.generate import reconstruct, sample_crystals
from genlowdim.crystal.cdvae.training import build_model, resolve_max_atoms
from genlowdim.runtime import save_checkpoint
from genlowdim.structures.batches import OutputConflictError
from genlowdim.structures.io import read_structures

TINY = "configs/crystal/tiny.yaml"


def _sample(model, cfg, out, **kw):
    kw = {"num": 3, "batch_size": 1, "seed": 0, "sampler": "ald_fast", **kw}
    return sample_crystals(model, cfg, kw.pop("num"), out, **kw)


def test_a_rerun_with_other_settings_stops_and_overwrite_replaces(model_cfg, tmp_path):
    model, cfg = model_cfg
    out = tmp_path / "s"
    first = _sample(model, cfg, out)
    text = (out / "samples.extxyz").read_text()
    assert _sample(model, cfg, out)["settings_hash"] == first["settings_hash"]     # same settings: resumes
    assert (out / "samples.extxyz").read_text() == text
    with pytest.raises(OutputConflictError, match=r"seed: 0 -> 1.*--overwrite") as err:
        _sample(model, cfg, out, seed=1)
    assert str(out) in str(err.value)
    with pytest.raises(OutputConflictError, match="sampler"):
        _sample(model, cfg, out, sampler="ald")
    with pytest.raises(OutputConflictError, match="num: 3 -> 4"):
        _sample(model, cfg, out, num=4)
    assert (out / "samples.extxyz").read_text() == text                             # nothing was touched
    second = _sample(model, cfg, out, seed=1, overwrite=True)
    assert second["seed"] == 1 and second["count"] == 3
    assert (out / "samples.extxyz").read_text() != text


def test_other_weights_do_not_resume(model_cfg, tmp_path):
    model, cfg = model_cfg
    out = tmp_path / "s"
    _sample(model, cfg, out, num=1)
    other = build_model(cfg, resolve_max_atoms(cfg)).eval()
    other.load_state_dict(model.state_dict())
    assert model_digest(other) == model_digest(model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    with pytest.raises(OutputConflictError, match="model"):
        _sample(other, cfg, out, num=1)


def test_overwrite_with_fewer_crystals_leaves_no_stale_files(model_cfg, tmp_path):
    model, cfg = model_cfg
    out = tmp_path / "s"
    _sample(model, cfg, out, num=3)
    manifest = _sample(model, cfg, out, num=1, overwrite=True)
    assert manifest["count"] == 1 and manifest["batches"] == [0]
    assert sorted(p.name for p in (out / "cif").iterdir()) == ["gen_000000.cif"]
    assert sorted(p.name for p in (out / "batches").iterdir()) == ["batch_00000"]
    assert len(read_structures(out / "samples.extxyz")) == 1


def test_reconstruction_resumes_only_its_own_settings(model_cfg, tmp_path):
    model, cfg = model_cfg
    out = tmp_path / "r"
    kw = dict(num=2, batch_size=1, sampler="ald_fast")
    reconstruct(model, cfg, "test", out, seed=0, **kw)
    preds = (out / "predictions.extxyz").read_text()
    (out / "batches" / "batch_00001" / "done.json").unlink()          # an interrupted run
    reconstruct(model, cfg, "test", out, seed=0, **kw)
    assert (out / "predictions.extxyz").read_text() == preds
    with pytest.raises(OutputConflictError, match="seed"):
        reconstruct(model, cfg, "test", out, seed=5, **kw)
    with pytest.raises(OutputConflictError, match="split"):
        reconstruct(model, cfg, "val", out, seed=0, **kw)
    summary = reconstruct(model, cfg, "test", out, seed=5, overwrite=True, **kw)
    assert summary["count"] == 2 and summary["seed"] == 5


def test_sample_overwrite_flag_through_the_cli(model_cfg, tmp_path):
    model, cfg = model_cfg
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, {"family": "crystal", "config": to_dict(cfg), "state_dict": model.state_dict(),
                           "extra_state": {"max_atoms": resolve_max_atoms(cfg), "task": "cdvae"}})
    out = tmp_path / "s"
    args = ["sample", "--checkpoint", str(ckpt), "--num", "2", "--batch-size", "1", "--sampler", "ald_fast",
            "--out", str(out), "--device", "cpu"]
    assert main(args + ["--seed", "0"]) == 0
    assert main(args + ["--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1


def _old_sampling(cfg) -> dict:
    """The sampling section as configs and checkpoints wrote it before named sampler specs."""
    return {"sampler": "ald", "n_steps_each": 7, "step_lr": 2e-4, "fast_n_steps_each": 3, "fast_step_lr": 4e-5,
            "type_update": "composition", "recon_type_update": "fixed"}


def test_checkpoints_with_the_old_sampling_keys_still_load(model_cfg, tmp_path):
    model, cfg = model_cfg
    old = {**to_dict(cfg), "sampling": _old_sampling(cfg)}
    ckpt = tmp_path / "old.pt"
    save_checkpoint(ckpt, {"family": "crystal", "config": old, "state_dict": model.state_dict(),
                           "extra_state": {"max_atoms": resolve_max_atoms(cfg), "task": "cdvae"}})
    loaded, loaded_cfg = load_model(ckpt)
    assert model_digest(loaded) == model_digest(model)
    s = loaded_cfg.sampling
    assert s.spec("ald") == SamplerSpec("ald", 7, 2e-4) and s.spec("ald_fast") == SamplerSpec("ald", 3, 4e-5)
    assert (s.sampler, s.type_update, s.recon_type_update) == ("ald", "composition", "fixed")
    assert config_from_dict(old) == loaded_cfg
    # only some old keys: the rest keep their defaults
    partial = config_from_dict({**to_dict(cfg), "sampling": {"fast_step_lr": 1e-5}}).sampling
    assert partial.spec("ald_fast") == SamplerSpec("ald", 10, 1e-5) and partial.spec("ald").steps_each == 100


def test_yaml_and_overrides_with_the_old_sampling_keys(tmp_path):
    import yaml

    data = yaml.safe_load(open(TINY))
    data["sampling"] = {"sampler": "ald_fast", "fast_n_steps_each": 4, "fast_step_lr": 3e-5}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_crystal_config(path, ["sampling.step_lr=5e-4"])
    assert cfg.sampling.spec("ald_fast") == SamplerSpec("ald", 4, 3e-5)
    assert cfg.sampling.spec("ald").step_lr == 5e-4
    new = load_crystal_config(TINY, ["sampling.samplers.ald_fast.step_lr=6e-5"])
    assert new.sampling.spec("ald_fast").step_lr == 6e-5 and new.sampling.spec("ald_fast").steps_each == 1
