"""Experiment building blocks: restarts keep the best training objective; evaluation metrics by construction."""
import dataclasses

import pytest

from genlowdim.likelihood.config import FitConfig, RunConfig, check_run_config
from genlowdim.likelihood.sweeps import build_toy, evaluate_samples, fit_one, true_samples




def test_restarts_keep_the_highest_training_objective():
    cfg = RunConfig(fit=FitConfig(steps=30, num_nodes=50, restarts=3))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, ambient_dim=3, num_train=40))
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, num_samples=100))
    toy = build_toy(cfg)
    train, fresh = true_samples(toy, cfg)
    metrics, _ = fit_one(cfg, toy, train, fresh, 0.1)
    assert len(metrics["restart_objectives"]) == 3
    assert len(set(metrics["restart_objectives"])) == 3  # different initialisations, different optima
    assert metrics["final_objective"] == max(metrics["restart_objectives"])
    with pytest.raises(ValueError, match="fit.restarts"):
        check_run_config(dataclasses.replace(cfg, fit=FitConfig(restarts=0)))


def test_evaluate_samples_of_the_truth_against_itself():
    cfg = RunConfig()
    toy = build_toy(cfg)
    _, fresh = true_samples(toy, cfg)
    m = evaluate_samples(toy, fresh, fresh)
    assert m["w1"] == pytest.approx(0.0, abs=1e-9)
    assert m["support_distance"] < 1e-6
    assert m["precision"] == 1.0 and m["recall"] == 1.0
