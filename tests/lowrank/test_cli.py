"""The lowrank CLI in-process: train → metrics.json + checkpoint, sample, sweeps; bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genlowdim.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "lowrank"


def test_train_then_sample(tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", "--config", str(CONFIGS / "molrg.yaml"), "--out", str(run), "--device", "cpu",
               "--set", "train.steps=40", "--set", "data.per_subspace=12"])
    assert rc == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["subspace_error"] < 0.2 and metrics["max_principal_angle"] < 0.15
    assert metrics["clustering_accuracy"] == 1.0
    assert metrics["init_subspace_error"] < 1e-8  # the spectral solution is exact on noiseless data
    # --resume with the same config finds the finished run and leaves it alone
    stamp = (run / "model.pt").stat().st_mtime_ns
    assert main(["train", "--config", str(CONFIGS / "molrg.yaml"), "--out", str(run), "--resume",
                 "--set", "train.steps=40", "--set", "data.per_subspace=12"]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert (run / "model.pt").stat().st_mtime_ns == stamp
    rc = main(["sample", "--checkpoint", str(run / "model.pt"), "--num", "60", "--batch-size", "25",
               "--seed", "1", "--sampler", "euler", "--steps", "20", "--out", str(tmp_path / "s")])
    assert rc == 0
    samples = np.load(tmp_path / "s" / "samples.npy")
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert samples.shape == (60, 48)
    assert summary["sampler"] == "euler" and summary["on_subspace_fraction"] > 0.9
    from genlowdim.runtime import resolve_device

    assert summary["device"] == str(resolve_device("auto"))
    # an explicit --device cpu is honoured and gives the same seeded samples
    assert main(["sample", "--checkpoint", str(run / "model.pt"), "--num", "60", "--batch-size", "25",
                 "--seed", "1", "--sampler", "euler", "--steps", "20", "--device", "cpu",
                 "--out", str(tmp_path / "s2")]) == 0
    assert np.array_equal(np.load(tmp_path / "s2" / "samples.npy"), samples)
    rc = main(["sample", "--checkpoint", str(run / "model.pt"), "--sampler", "nope", "--out", str(tmp_path / "x")])
    assert rc == 2 and "unknown sampler 'nope'" in capsys.readouterr().err


def test_random_start_config_flag_changes_the_result(tmp_path):
    rc = main(["train", "--config", str(CONFIGS / "molrg.yaml"), "--out", str(tmp_path), "--device", "cpu",
               "--set", "model.init=random", "--set", "train.steps=5", "--set", "data.per_subspace=8"])
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["init_subspace_error"] is None and metrics["subspace_error"] > 0.5


SWEEP = ["lowrank", "sweep", "--config", str(CONFIGS / "phase_transition.yaml"), "--set", "subspace_dims=[2, 3]",
         "--set", "per_subspace=[1, 2, 3]", "--set", "seeds=2", "--set", "solvers=[spectral]"]


def _count_cells(monkeypatch) -> list:
    """Record every cell the sweep actually computes."""
    import genlowdim.lowrank.analysis as analysis

    calls, real = [], analysis.run_cell
    monkeypatch.setattr(analysis, "run_cell", lambda cfg, solver, d, n, seeds: calls.append((d, n)) or
                        real(cfg, solver, d, n, seeds))
    return calls


def test_sweep_writes_json_png_and_resumes_only_unfinished_cells(tmp_path, capsys, monkeypatch):
    args = SWEEP + ["--out", str(tmp_path)]
    calls = _count_cells(monkeypatch)
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rates = {(c["d"], c["per_subspace"]): c["success_rate"] for c in results["cells"].values()}
    assert rates == {(d, n): float(n >= d) for d in (2, 3) for n in (1, 2, 3)}   # the step at N_k = d
    assert len(calls) == 6 and (tmp_path / "phase_transition.png").stat().st_size > 1000
    assert "spectral: success rate" in capsys.readouterr().out
    # a rerun computes nothing; with one finished cell removed (an interrupted run) it computes that one
    calls.clear()
    assert main(args) == 0 and calls == []
    del results["cells"]["spectral/d=3/N=2"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(args) == 0 and calls == [(3, 2)]
    assert json.loads((tmp_path / "results.json").read_text())["cells"]["spectral/d=3/N=2"]["success_rate"] == 0.0


def test_resumed_sweep_with_other_settings_stops_until_overwrite(tmp_path, capsys, monkeypatch):
    args = SWEEP + ["--out", str(tmp_path)]
    assert main(args) == 0
    calls = _count_cells(monkeypatch)
    capsys.readouterr()
    assert main(args + ["--set", "noise_std=0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err
    assert "noise_std: 0.0 -> 0.01" in err and "--overwrite" in err and calls == []
    # a change that does not define the spectral cells' results (training settings) resumes them
    assert main(args + ["--set", "train.steps=7"]) == 0 and calls == []
    assert main(args + ["--set", "noise_std=0.01", "--overwrite"]) == 0 and len(calls) == 6
    cells = json.loads((tmp_path / "results.json").read_text())["cells"].values()
    assert {c["settings"]["noise_std"] for c in cells} == {0.01}
    # results written before settings were recorded cannot be verified, so they are not resumed
    stripped = {"cells": {k: {kk: v for kk, v in c.items() if not kk.startswith("settings")}
                          for k, c in json.loads((tmp_path / "results.json").read_text())["cells"].items()}}
    (tmp_path / "results.json").write_text(json.dumps(stripped))
    assert main(args + ["--set", "noise_std=0.01"]) == 2
    assert "no settings recorded" in capsys.readouterr().err


def test_bad_sweep_settings(tmp_path, capsys, monkeypatch):
    base = ["lowrank", "sweep", "--config", str(CONFIGS / "phase_transition.yaml"), "--out", str(tmp_path)]
    calls = _count_cells(monkeypatch)
    for override, message in (("solvers=[spectral, magic]", "solvers: unknown solver(s) ['magic']"),
                              ("subspace_dims=[30]", "K·d = 2·30 > n = 48")):
        assert main(base + ["--set", override]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err
    assert calls == [] and not (tmp_path / "results.json").exists()   # stopped before any work
    assert main(base + ["--set", "seeds=many"]) == 2
    assert "expected an integer" in capsys.readouterr().err
