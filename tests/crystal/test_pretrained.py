"""Shipped models: export keeps one set of weights and records hashes; resolve checks them."""
from __future__ import annotations

import json

import pytest
import torch

from genlowdim.crystal.pretrained import (PRETRAINED_DIR, available_models, checkpoint_path, export_model,
                                          resolve_model, sha256_of, slim_payload)
from genlowdim.runtime import CheckpointError, load_checkpoint, save_checkpoint


def _fake_run(path, ema: bool = True):
    weights = {"w": torch.arange(6, dtype=torch.float32).view(2, 3)}
    shadow = {"w": torch.full((2, 3), 0.5)}
    save_checkpoint(path, {"family": "crystal", "config": {"task": "cdvae", "name": "fake"},
                           "state_dict": weights, "ema_state_dict": shadow if ema else None,
                           "optimizer": {"state": {}, "param_groups": []},
                           "train_state": {"step": 123, "epoch": 4, "elapsed_s": 60.0, "best_val": 1.5},
                           "extra_state": {"max_atoms": 5, "task": "cdvae"}})
    return path


def test_slim_payload_keeps_the_ema_weights_and_drops_training_state(tmp_path):
    payload = load_checkpoint(_fake_run(tmp_path / "run.pt"))
    slim = slim_payload(payload)
    assert torch.equal(slim["state_dict"]["w"], torch.full((2, 3), 0.5))
    assert slim["ema_state_dict"] is None and "optimizer" not in slim
    raw = slim_payload(load_checkpoint(_fake_run(tmp_path / "raw.pt", ema=False)))
    assert torch.equal(raw["state_dict"]["w"], torch.arange(6, dtype=torch.float32).view(2, 3))


def test_export_then_resolve_round_trip(tmp_path):
    run = _fake_run(tmp_path / "run.pt")
    manifest = export_model("toy", run, run, commands={"cdvae": "genlowdim train ..."}, git_commit="abc",
                            metrics={"val": {"x": 1.0}}, root=tmp_path / "models")
    entry = manifest["files"]["cdvae"]
    assert (entry["steps"], entry["epochs"], entry["wall_seconds"], entry["weights"]) == (123, 4, 60.0, "ema")
    path = resolve_model("toy", "cdvae", root=tmp_path / "models")
    assert sha256_of(path) == entry["sha256"]
    assert json.loads((tmp_path / "models" / "toy" / "manifest.json").read_text())["git_commit"] == "abc"
    loaded = load_checkpoint(path, family="crystal")
    assert torch.equal(loaded["state_dict"]["w"], torch.full((2, 3), 0.5))
    assert set(available_models(tmp_path / "models")) == {"toy"}


def test_resolve_refuses_unknown_names_and_damaged_files(tmp_path):
    run = _fake_run(tmp_path / "run.pt")
    export_model("toy", run, root=tmp_path / "models")
    with pytest.raises(CheckpointError, match="no shipped model of that name.*toy"):
        resolve_model("perov_6", root=tmp_path / "models")
    with pytest.raises(CheckpointError, match="ships no property model"):
        resolve_model("toy", "property", root=tmp_path / "models")
    target = tmp_path / "models" / "toy" / "cdvae.pt"
    target.write_bytes(target.read_bytes()[:-1] + b"x")
    with pytest.raises(CheckpointError, match="sha256"):
        resolve_model("toy", root=tmp_path / "models")


def test_checkpoint_path_takes_exactly_one_source(tmp_path):
    assert checkpoint_path(str(tmp_path / "a.pt"), None) == tmp_path / "a.pt"
    with pytest.raises(CheckpointError, match="exactly one"):
        checkpoint_path(None, None)
    with pytest.raises(CheckpointError, match="exactly one"):
        checkpoint_path("a.pt", "perov_5")


def test_every_shipped_model_matches_its_manifest():
    for name, manifest in available_models(PRETRAINED_DIR).items():
        for kind, entry in manifest["files"].items():
            path = resolve_model(name, kind)            # raises on a hash mismatch
            assert path.stat().st_size == entry["bytes"]
            assert load_checkpoint(path, family="crystal")["config"]["task"] == entry["task"]


def test_export_drops_the_training_machines_data_dir(tmp_path):
    run = _fake_run(tmp_path / "run.pt")
    payload = load_checkpoint(run)
    payload["config"]["data"] = {"dataset": "mine", "data_dir": "/home/someone/data", "max_atoms": 8}
    save_checkpoint(run, payload)
    manifest = export_model("toy", run, root=tmp_path / "models")
    assert manifest["files"]["cdvae"]["config"]["data"] == {"dataset": "mine", "data_dir": None, "max_atoms": 8}
    shipped = load_checkpoint(resolve_model("toy", root=tmp_path / "models"))
    assert shipped["config"]["data"]["data_dir"] is None


def test_every_shipped_model_finds_its_val_and_test_splits_in_the_package(monkeypatch):
    """A fresh install has no data directory: each shipped model's dataset must resolve to shipped files."""
    from genlowdim.crystal.cdvae.config import config_from_dict
    from genlowdim.crystal.cdvae.training import load_split_dataset

    monkeypatch.delenv("GENLOWDIM_DATA_DIR", raising=False)
    for name, manifest in available_models(PRETRAINED_DIR).items():
        cfg = config_from_dict(manifest["files"]["cdvae"]["config"])
        assert cfg.data.data_dir is None, name
        for split in ("val", "test"):
            assert len(load_split_dataset(cfg, split)) > 100, (name, split)


def test_models_export_and_list_through_the_cli(tmp_path, capsys, monkeypatch):
    from genlowdim.cli import main
    import genlowdim.crystal.pretrained as pretrained

    run = _fake_run(tmp_path / "run.pt")
    assert main(["models", "export", "--name", "toy", "--cdvae", str(run), "--property", str(run),
                 "--cdvae-command", "genlowdim train --config x.yaml", "--git-commit", "abc",
                 "--root", str(tmp_path / "models")]) == 0
    manifest = json.loads((tmp_path / "models" / "toy" / "manifest.json").read_text())
    assert manifest["files"]["cdvae"]["command"] == "genlowdim train --config x.yaml"
    assert manifest["git_commit"] == "abc" and set(manifest["files"]) == {"cdvae", "property"}
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "models")
    monkeypatch.setattr(pretrained.available_models, "__defaults__", (tmp_path / "models",))
    capsys.readouterr()
    assert main(["models"]) == 0
    assert "toy: CDVAE 123 steps (fake)" in capsys.readouterr().out
