"""Latent optimisation: Adam's path on a linear property is known in closed form, the ball constraint holds
it on the sphere, success rates count by construction, and the CLI writes what it says."""
import json
import math

import pytest
import torch

from genlowdim.cli import main
from genlowdim.crystal.tasks.optimize import optimize_latents, success_rates

TINY = "configs/crystal/tiny.yaml"


class LinearProperty(torch.nn.Module):
    """property(z) = w·z: a constant gradient w for every z."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.as_tensor(w, dtype=torch.float64), requires_grad=False)

    def predict_property(self, z):
        return z @ self.w


def test_unbounded_adam_moves_every_coordinate_by_lr_per_step():
    """With a constant gradient g, Adam's bias-corrected moments are exactly g and g², so each step is
    lr·g/(|g| + eps): after T steps z = z0 − T·lr·g/(|g| + eps), i.e. T·lr·sign(g) to within eps."""
    w = [3.0, -0.5, 0.0, 1e-3]
    z0 = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    z = optimize_latents(LinearProperty(w), z0, steps=200, lr=1e-2)
    g = torch.tensor(w, dtype=torch.float64)
    expected = z0 - 200 * 1e-2 * g / (g.abs() + 1e-8)             # PyTorch's Adam: eps added to √v̂ = |g|
    torch.testing.assert_close(z, expected, rtol=0, atol=1e-9)


def test_ball_constraint_ends_on_the_sphere_along_minus_the_gradient_direction():
    w = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    z0 = torch.zeros(2, 4, dtype=torch.float64)
    z = optimize_latents(LinearProperty(w), z0, steps=2000, lr=1e-2, radius=2.0)
    torch.testing.assert_close(z.norm(dim=-1), torch.full((2,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(z, torch.full((2, 4), -1.0, dtype=torch.float64))   # −R·w/‖w‖


def test_snapshots_at_cdvae_s_interval_and_at_the_end():
    seen = []
    optimize_latents(LinearProperty([1.0]), torch.zeros(1, 1, dtype=torch.float64), steps=5000,
                     decode_every=555, lr=1e-3, on_snapshot=lambda i, z: seen.append(i))
    assert seen == [0, 555, 1110, 1665, 2220, 2775, 3330, 3885, 4440, 4995, 4999]   # CDVAE's 11 snapshots


def test_success_rates_count_valid_starts_below_each_percentile():
    best = [0.30, 0.50, 0.70, math.nan, 1.00]       # NaN: no valid snapshot, a failure
    rates = success_rates(best, {"SR5": 0.4392, "SR10": 0.6120, "SR15": 0.7365})
    assert rates == {"SR5": 0.2, "SR10": 0.4, "SR15": 0.6}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_opt")
    assert main(["train", "--config", TINY, "--out", str(out), "--set", "train.max_steps=2",
                 "--set", "train.log_every=1", "--set", "data.train_limit=40", "--device", "cpu"]) == 0
    yield out
    torch.set_num_threads(before)


def test_optimize_cli_writes_every_snapshot_and_the_settings(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    out = tmp_path / "opt"
    assert main(["optimize", "--checkpoint", str(tiny_run / "last.pt"), "--split", "val", "--num", "3",
                 "--opt-steps", "5", "--decode-every", "2", "--steps", "1", "--protocol", "cdvae",
                 "--sampler", "ald_fast", "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert [s["step"] for s in result["snapshots"]] == [0, 2, 4]
    assert sorted(p.name for p in out.glob("snapshot_*.extxyz")) == [
        "snapshot_00000.extxyz", "snapshot_00002.extxyz", "snapshot_00004.extxyz"]
    assert result["protocol"]["protocol"] == "cdvae" and result["protocol"]["constraint"] == "none"
    assert result["protocol"]["overridden"] == ["sampler", "steps"] and result["radius"] is None
    assert result["split"] == "val" and result["num"] == 3
    assert all(0.0 <= result[k] <= 1.0 for k in ("SR5", "SR10", "SR15"))
    assert all(s["decoder_calls"] == 10 for s in result["snapshots"])    # tiny: 10 σ levels x 1 step
    ball = tmp_path / "ball"
    assert main(["optimize", "--checkpoint", str(tiny_run / "last.pt"), "--split", "val", "--num", "2",
                 "--opt-steps", "2", "--decode-every", "5", "--steps", "1", "--out", str(ball),
                 "--device", "cpu"]) == 0
    result = json.loads((ball / "results.json").read_text())
    assert result["protocol"]["constraint"] == "ball" and result["radius"] > 0
    assert all(s["mean_latent_norm"] <= result["radius"] + 1e-6 for s in result["snapshots"])
