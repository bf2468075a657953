"""``genlowdim demo`` end to end at a tiny size: the shipped model's part, then a short training run."""
import json

import pytest
import torch

from genlowdim.crystal.tasks.demo import SHIPPED, run_demo
from genlowdim.crystal.pretrained import available_models


@pytest.mark.slow
def test_demo_samples_the_shipped_model_then_trains_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_demo(tmp_path / "demo", steps=2, num=3, num_reference=6)
    finally:
        torch.set_num_threads(before)
    written = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert written["trained"]["train_steps"] == 2 and written["num_reference"] == 6
    assert SHIPPED in available_models(), "the package ships the perov_5 model"
    for part in ("shipped", "trained"):
        assert summary[part]["num_generated"] == 3
        assert summary[part]["protocol"]["protocol"] == "genlowdim"
        assert (tmp_path / "demo" / part / "cells.png").stat().st_size > 0
        assert 0.0 <= summary[part]["metrics"]["struct_valid"] <= 1.0
    assert summary["shipped"]["decoder_calls"] == 500          # one batch, 50 levels x 10 steps
