"""Atomic writes, standard JSON, checkpoints loaded with weights_only and a family check."""
from __future__ import annotations

import json
from importlib import metadata
import math

import numpy as np
import pytest
import torch

from genlowdim.runtime import (CheckpointError, atomic_write_text, library_versions, load_checkpoint,
                               save_checkpoint, write_json)


def test_write_json_handles_numpy_torch_and_nan(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": np.float32(0.5), "b": torch.tensor([1.0, 2.0]), "c": math.nan,
                      "d": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [1.0, 2.0], "c": None, "d": [0, 1, 2]}


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_text(tmp_path / "x.txt", "hello")
    atomic_write_text(tmp_path / "x.txt", "again")
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
    assert (tmp_path / "x.txt").read_text() == "again"


def test_checkpoint_round_trip_and_family_check(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"family": "lowrank", "config": {"k": 2}, "state_dict": {"w": torch.ones(2)}})
    payload = load_checkpoint(path, family="lowrank")
    assert payload["config"] == {"k": 2} and torch.equal(payload["state_dict"]["w"], torch.ones(2))
    assert payload["versions"]["torch"] == metadata.version("torch")
    with pytest.raises(CheckpointError, match="of the 'lowrank' family, expected 'crystal'"):
        load_checkpoint(path, family="crystal")


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable genlowdim checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no 'family' entry"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="lacks 'config'"):
        save_checkpoint(tmp_path / "x.pt", {"family": "crystal"})


def test_library_versions_lists_result_relevant_libraries():
    versions = library_versions()
    for name in ("python", "genlowdim", "torch", "numpy"):
        assert versions[name]
