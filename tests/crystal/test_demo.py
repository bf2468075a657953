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
    assert written["reference"] == "perov_5:test[:6]"     # a part of the split: not the shipped set's name
    assert written["trained"]["budget_steps"] == 2 and "smoke run" in written["trained"]["label"]
    assert written["wall_seconds"] > 0
    assert SHIPPED in available_models(), "the package ships the perov_5 model"
    for part in ("shipped", "trained"):
        assert summary[part]["num_generated"] == 3
        assert summary[part]["protocol"]["protocol"] == "genlowdim"
        assert (tmp_path / "demo" / part / "cells.png").stat().st_size > 0
        assert 0.0 <= summary[part]["metrics"]["struct_valid"] <= 1.0
    assert summary["shipped"]["decoder_calls"] == 500          # one batch, 50 levels x 10 steps


def _part(n=200):
    return {"num_generated": n, "sample_seconds": 95.2, "decoder_calls": 500,
            "metrics": {"struct_valid": 0.99, "comp_valid": 0.975, "cov_recall": 0.406, "cov_precision": 0.705},
            "files": {"cells": "d/cells.png", "evaluation": "d/eval"}}


def test_the_demo_ends_on_a_readable_summary_that_names_a_hit_cap():
    from genlowdim.crystal.tasks.demo_summary import format_summary

    trained = {**_part(), "label": "smoke", "train_steps": 1500, "budget_steps": 1500, "cap_minutes": None,
               "train_seconds": 120, "loss_curve": "d/loss.png"}
    text = format_summary({"num_reference": 500, "reference": "perov_5:test[:500]", "shipped": _part(),
                           "trained": trained}, "runs/demo", 270)
    assert "finished in 4.5 min" in text and "{" not in text   # prose, not a dict
    assert "COV-R 40.6%: share of the 500 test crystals" in text and "valid structures 99.0%" in text
    assert "compared with the first 500 crystals of perov_5's test split" in text
    assert "smoke run" in text and "1,500 of 1,500 optimiser steps" in text and "stopped early" not in text
    capped = format_summary({"num_reference": 500, "trained": {**trained, "train_steps": 356, "cap_minutes": 15}},
                            "runs/demo", 900)
    assert "356 of 1,500" in capped and "stopped early by its wall-clock cap, 15 min" in capped


def test_the_summary_says_what_the_figures_mean_at_their_size():
    from genlowdim.crystal.tasks.demo_summary import format_summary, interval

    known = {"num_generated": 2000, "cov_recall": 0.9125, "cov_precision": 0.97}
    trained = {**_part(), "label": "smoke", "train_steps": 10, "budget_steps": 10, "cap_minutes": None,
               "train_seconds": 60, "loss_curve": "d/loss.png"}
    text = format_summary({"num_reference": 3785, "reference": "perov_5:test", "cov_thresholds": [0.2, 4.0],
                           "shipped": {**_part(), "known": known}, "trained": trained}, "runs/demo", 270)
    assert "compared with all 3,785 crystals of perov_5's test split" in text
    assert "structure fingerprint distance 0.2, composition 4" in text
    assert "200 cannot cover 3,785" in text and "2,000 crystals reach COV-R 91.2% and COV-P 97.0%" in text
    assert text.count("2,000 crystals reach") == 1          # the scale is the shipped model's, said once
    low, high = interval(0.705, 200)                         # Wilson interval of 141 of 200
    assert (round(low, 3), round(high, 3)) == (0.638, 0.764)
    assert "COV-P 70.5% (95% interval 63.8-76.4%)" in text
    assert interval(1.0, 200)[1] == 1.0 and interval(1.0, 200)[0] > 0.98
