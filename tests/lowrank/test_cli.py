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


def test_sweep_writes_json_png_and_resumes(tmp_path, capsys):
    args = ["lowrank", "sweep", "--config", str(CONFIGS / "phase_transition.yaml"), "--out", str(tmp_path),
            "--set", "subspace_dims=[2, 3]", "--set", "per_subspace=[1, 2, 3]", "--set", "seeds=2",
            "--set", "solvers=[spectral]"]
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rates = {(c["d"], c["per_subspace"]): c["success_rate"] for c in results["cells"].values()}
    assert rates == {(d, n): float(n >= d) for d in (2, 3) for n in (1, 2, 3)}
    assert (tmp_path / "phase_transition.png").stat().st_size > 1000
    assert "spectral: success rate" in capsys.readouterr().out
    # a rerun with the same config finds every cell done and keeps them
    stamp = (tmp_path / "results.json").stat().st_mtime_ns
    assert main(args) == 0
    assert json.loads((tmp_path / "results.json").read_text())["cells"] == results["cells"]
    assert (tmp_path / "results.json").stat().st_mtime_ns >= stamp


def test_bad_sweep_settings(tmp_path, capsys):
    base = ["lowrank", "sweep", "--config", str(CONFIGS / "phase_transition.yaml"), "--out", str(tmp_path)]
    with pytest.raises(ValueError, match="unknown solver"):
        main(base + ["--set", "solvers=[magic]"])
    with pytest.raises(ValueError, match="K·d"):
        main(base + ["--set", "subspace_dims=[30]"])
    assert main(base + ["--set", "seeds=many"]) == 2
    assert "expected an integer" in capsys.readouterr().err
