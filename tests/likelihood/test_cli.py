"""The likelihood family through the CLI, in-process."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genlowdim.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "likelihood" / "circle_r10.yaml")
SWEEP = str(ROOT / "configs" / "likelihood" / "sweep.yaml")


@pytest.fixture(autouse=True)
def quiet_one_thread(monkeypatch):
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    before = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == before  # the handlers restore the thread count


@pytest.fixture(scope="module")
def circle_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("circle_r10")
    # reduced from the config's 1,000 steps / 500 nodes / 1,000 eval samples (diffusion: wiring only) to keep the test short; at
    # these settings (seeded) σ̂ of the unperturbed fit has already collapsed (< 0.02) and its W1 is about
    # twice the perturbed one (measured: ≈ 0.24 vs ≈ 0.12)
    rc = main(["train", "--config", CONFIG, "--out", str(out), "--set", "fit.steps=300",
               "--set", "fit.num_nodes=300", "--set", "eval.num_samples=500", "--set", "diffusion.steps=50",
               "--set", "diffusion.likelihood_steps=8", "--set", "heldout_points=50"])
    assert rc == 0
    return out


def test_circle_r10_perturbed_beats_unperturbed(circle_run):
    m = json.loads((circle_run / "metrics.json").read_text())
    assert m["w1_perturbed"] < m["w1_unperturbed"]
    assert m["sigma_hat_unperturbed"] < 0.5 * m["sigma_hat_perturbed"]  # σ̂ → 0 without perturbation
    assert m["perturbed"]["sigma_hat"] == pytest.approx(0.1, rel=0.3)   # σ̂ tracks σ̃
    for label in ("unperturbed", "perturbed"):
        assert {"w1", "sigma_hat", "support_distance", "mmd2", "precision", "recall"} <= set(m[label])
    assert m["w1_true_vs_true"] < m["w1_perturbed"]
    # the collapsed unperturbed model gives held-out perturbed points a far lower likelihood
    assert m["unperturbed"]["heldout_loglik"] < m["perturbed"]["heldout_loglik"] - 100
    assert {"w1", "support_distance", "heldout_loglik"} <= set(m["diffusion"])
    assert (circle_run / "samples.png").stat().st_size > 1000
    assert (circle_run / "model.pt").is_file()


def test_sample_command_writes_pushforward_and_noisy_samples(circle_run, tmp_path):
    ckpt = str(circle_run / "model.pt")
    assert main(["sample", "--checkpoint", ckpt, "--num", "300", "--seed", "3", "--out", str(tmp_path / "a")]) == 0
    assert main(["sample", "--checkpoint", ckpt, "--num", "300", "--seed", "3", "--out", str(tmp_path / "b"),
                 "--sampler", "noisy"]) == 0
    a, b = np.load(tmp_path / "a" / "samples.npy"), np.load(tmp_path / "b" / "samples.npy")
    assert a.shape == b.shape == (300, 10)
    # noisy samples add σ̂ε with σ̂ ≈ 0.1: mean squared difference ≈ D σ̂²
    sigma_hat = json.loads((tmp_path / "b" / "samples.json").read_text())["sigma_hat"]
    assert np.mean(np.sum((a - b) ** 2, 1)) == pytest.approx(10 * sigma_hat**2, rel=0.2)
    assert main(["sample", "--checkpoint", ckpt, "--num", "5", "--out", str(tmp_path / "c"),
                 "--sampler", "heun"]) == 2


def test_sweep_command_writes_rows_and_resumes(tmp_path, capsys, monkeypatch):
    args = ["likelihood", "sweep", "--config", SWEEP, "--out", str(tmp_path),
            "--set", "base.fit.steps=30", "--set", "base.fit.num_nodes=50", "--set", "base.eval.num_samples=60",
            "--set", "sweep.ambient_dims=[2, 3]", "--set", "sweep.perturbation_stds=[0.0, 0.2]",
            "--set", "sweep.sample_sizes=[20, 40]"]
    assert main(args) == 0
    rows = json.loads((tmp_path / "sigma_sweep.json").read_text())["rows"]
    assert sorted((r["setting"]["ambient_dim"], r["setting"]["perturbation_std"]) for r in rows) == \
        [(2, 0.0), (2, 0.2), (3, 0.0), (3, 0.2)]
    n_rows = json.loads((tmp_path / "n_sweep.json").read_text())["rows"]
    assert [r["setting"]["num_train"] for r in n_rows] == [20, 40]
    assert (tmp_path / "sigma_sweep.png").is_file() and (tmp_path / "n_sweep.png").is_file()
    assert "log-log slope" in capsys.readouterr().out
    # a rerun finds every setting done and fits nothing new; an interrupted one fits only what is missing
    import genlowdim.likelihood.sweeps as sweeps

    fits, real = [], sweeps.fit_one
    monkeypatch.setattr(sweeps, "fit_one", lambda cfg, *a, **k: fits.append(cfg.data.ambient_dim) or real(cfg, *a, **k))
    assert main(args + ["--kind", "sigma"]) == 0 and fits == []
    saved = json.loads((tmp_path / "sigma_sweep.json").read_text())
    (tmp_path / "sigma_sweep.json").write_text(json.dumps({**saved, "rows": saved["rows"][:-1]}))
    assert main(args + ["--kind", "sigma"]) == 0 and fits == [3]
    assert json.loads((tmp_path / "sigma_sweep.json").read_text())["rows"][-1]["w1"] == saved["rows"][-1]["w1"]
    # other settings: one clear line naming the directory and the difference, until --overwrite
    capsys.readouterr()
    assert main(args + ["--kind", "sigma", "--set", "base.fit.steps=31"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err and "run.fit.steps: 30 -> 31" in err
    assert "--overwrite" in err and fits == [3]
    assert main(args + ["--kind", "sigma", "--set", "base.fit.steps=31", "--overwrite"]) == 0 and len(fits) == 5


@pytest.mark.parametrize("override,message", [
    ("data.perturbation_std=-0.1", "perturbation_std"),
    ("model.latent_dim=11", "exceeds data.ambient_dim"),
    ("data.manifold=klein", "unknown manifold"),
    ("model.latent_dim=3", "quadrature needs model.latent_dim <= 2"),
    ("fit.method=newton", "not one of"),
])
def test_invalid_configs_give_clear_errors(tmp_path, capsys, override, message):
    rc = main(["train", "--config", CONFIG, "--out", str(tmp_path), "--set", override, "--set", "fit.steps=1"])
    assert rc == 2
    assert message in capsys.readouterr().err
