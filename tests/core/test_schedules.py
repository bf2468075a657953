"""Schedules, batch helpers, denoiser adapters and the core's import isolation."""
import math
import subprocess
import sys

import pytest
import torch

from genlowdim.core import (
    CountingDenoiser,
    append_zero,
    denoiser_from_score,
    expand_sigma,
    gaussian_score,
    per_graph_to_nodes,
    per_sample_mean,
    score_from_denoiser,
    sigmas_geometric,
    sigmas_karras,
    vp_cosine,
    vp_linear,
    vp_to_ve_sigmas,
)

from .helpers import gaussian_denoiser

F64 = torch.float64


def test_geometric_is_cdvae_grid():
    s = sigmas_geometric(10.0, 0.01, 50, dtype=F64)
    assert s.shape == (50,) and s[0].item() == pytest.approx(10.0) and s[-1].item() == pytest.approx(0.01)
    ratios = s[1:] / s[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 0.001 ** (1 / 49)))
    assert sigmas_geometric(3.0, 1.0, 1).tolist() == [3.0]
    assert sigmas_geometric(1.0, 0.1, 4, dtype=torch.float32).dtype == torch.float32


def test_karras_matches_edm_formula():
    s = sigmas_karras(18, 0.002, 80.0, rho=7.0, dtype=F64)
    assert s.shape == (19,) and s[-1] == 0
    i = torch.arange(18, dtype=F64)
    edm = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7  # Karras et al. 2022, Eq. 5
    torch.testing.assert_close(s[:-1], edm)
    assert (s[1:] < s[:-1]).all()


def test_vp_schedules_known_values():
    t = torch.linspace(0, 1, 11, dtype=F64)
    s_t, sigma_t = vp_linear(t)
    torch.testing.assert_close(s_t**2 + sigma_t**2, torch.ones_like(t))
    assert s_t[-1].item() == pytest.approx(math.exp(-0.25 * 19.9 - 0.05))
    assert s_t[0].item() == 1.0 and sigma_t[0].item() == 0.0
    s_c, sigma_c = vp_cosine(t)
    torch.testing.assert_close(s_c**2 + sigma_c**2, torch.ones_like(t))
    assert s_c[0].item() == pytest.approx(1.0) and s_c[-1].item() < 1e-3
    half = math.cos((0.5 + 0.008) / 1.008 * math.pi / 2) / math.cos(0.008 / 1.008 * math.pi / 2)
    assert s_c[5].item() == pytest.approx(half)
    torch.testing.assert_close(vp_to_ve_sigmas(s_t[1:], sigma_t[1:]), sigma_t[1:] / s_t[1:])


def test_schedules_reject_bad_input():
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        sigmas_geometric(0.01, 10.0, 5)
    with pytest.raises(ValueError, match="num must be"):
        sigmas_karras(0, 0.1, 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vp_linear(1.5)
    with pytest.raises(ValueError, match="s_t must be > 0"):
        vp_to_ve_sigmas(torch.tensor([0.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        append_zero(torch.ones(2, 2))


def test_expand_sigma_and_reductions():
    x = torch.zeros(4, 3, 2)
    assert expand_sigma(0.5, x).shape == ()
    assert expand_sigma(torch.arange(4.0), x).shape == (4, 1, 1)
    with pytest.raises(ValueError, match=r"does not broadcast to a batch x of shape \(4, 3, 2\)"):
        expand_sigma(torch.ones(3), x)
    values = torch.arange(24.0).reshape(4, 3, 2)
    torch.testing.assert_close(per_sample_mean(values), torch.stack([v.mean() for v in values]))
    batch_index = torch.tensor([0, 0, 2, 2])
    torch.testing.assert_close(per_sample_mean(values, batch_index),
                               torch.stack([values[:2].mean(), torch.tensor(0.0), values[2:].mean()]))
    torch.testing.assert_close(per_graph_to_nodes(torch.tensor([1.0, 2.0, 3.0]), batch_index),
                               torch.tensor([1.0, 1.0, 3.0, 3.0]))
    with pytest.raises(ValueError, match="only 2 per-graph values"):
        per_graph_to_nodes(torch.tensor([1.0, 2.0]), batch_index)


def test_score_and_denoiser_adapters_round_trip():
    v = 2.0
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0], dtype=F64)
    score = score_from_denoiser(gaussian_denoiser(v))
    for i in range(5):  # score of N(0, (v + sigma²) I)
        expected = gaussian_score(x[i : i + 1], torch.zeros(3, dtype=F64), (v + sigma[i] ** 2) * torch.eye(3, dtype=F64))
        torch.testing.assert_close(score(x, sigma)[i : i + 1], expected)
    back = denoiser_from_score(score)
    torch.testing.assert_close(back(x, sigma), gaussian_denoiser(v)(x, sigma))
    counted = CountingDenoiser(back)
    counted(x, 1.0), counted(x, 2.0)
    assert counted.calls == 2
    counted.reset()
    assert counted.calls == 0


def test_core_imports_no_family_or_metrics_module():
    code = (
        "import sys, genlowdim.core; "
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['genlowdim', 'crystal'], ['genlowdim', 'lowrank'], "
        "['genlowdim', 'likelihood'], ['genlowdim', 'metrics'])]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vp_schedule_drives_a_ve_sampler_after_conversion():
    # VP linear schedule on t in [1e-3, 1] -> sigma_VE = sigma_t / s_t (~ 149 at t = 1); Heun on N(0, 2 I) data.
    from genlowdim.core import sample_ode_heun

    t = torch.linspace(1.0, 1e-3, 60, dtype=F64)
    sigmas = append_zero(vp_to_ve_sigmas(*vp_linear(t)))
    assert (sigmas[1:] < sigmas[:-1]).all() and 140 < sigmas[0] < 160
    g = torch.Generator().manual_seed(0)
    x = (2.0 + sigmas[0] ** 2) ** 0.5 * torch.randn(20_000, 2, generator=g, dtype=F64)
    out = sample_ode_heun(gaussian_denoiser(2.0), x, sigmas)
    assert abs(out.var().item() / 2.0 - 1) < 0.05
