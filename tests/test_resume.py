"""What --resume compares: the settings that decide the weights, not the budget, nor keys one side lacks."""
from __future__ import annotations

import pytest

from genlowdim.config import ConfigError
from genlowdim.resume import check_resume, config_differences


def test_only_settings_that_decide_the_weights_count():
    old = {"name": "a", "model": {"latent_dim": 8, "encoder": {"cutoff": 6.0}},
           "train": {"max_steps": 100, "lr": 1e-3}, "sampling": {"sampler": "ald"}}
    new = {"name": "b", "model": {"latent_dim": 8, "encoder": {"cutoff": 7.0}, "added_since": 1},
           "train": {"max_steps": 500, "lr": 1e-3}, "sampling": {"sampler": "pc"}}
    assert config_differences(old, new) == ["model.encoder.cutoff: 6.0 -> 7.0"]


def test_a_folder_without_a_run_resumes_from_nothing(tmp_path):
    assert check_resume(tmp_path, {"model": {}}) is None


def test_a_changed_model_is_named_before_any_weight_is_loaded(tmp_path):
    import torch

    from genlowdim.runtime import save_checkpoint

    save_checkpoint(tmp_path / "last.pt", {"family": "toy", "config": {"model": {"width": 8}},
                                           "state_dict": {"w": torch.ones(8)}})
    assert check_resume(tmp_path, {"model": {"width": 8}}, family="toy")["state_dict"]["w"].shape == (8,)
    with pytest.raises(ConfigError, match=r"last.pt was written with other settings \(model.width: 8 -> 16\)"):
        check_resume(tmp_path, {"model": {"width": 16}}, family="toy")
