"""Execute notebooks/singular_likelihood.ipynb in quick mode (GENLOWDIM_QUICK=1); check its numbers where
the answer is known in closed form, and that it shows its figures."""
import math
import re

import pytest
from _notebooks import assert_agrees_with_stored, run_quick


def test_notebook_numbers_and_figures():
    run = run_quick("singular_likelihood.ipynb")
    assert "quick mode" in run.text and "diffusion" in run.text
    # toys, fits, σ̃ trade-off, diffusion samples, −(D − d) log σ growth
    assert run.images == 5
    checks = run.checks()
    # constant generator g ≡ (1, …, 1), σ = 0.5, y = 0 in R^10: log N(0; 1, σ²I) = −||1||²/(2σ²) − D log σ − D/2 log 2π
    exact = -10 / (2 * 0.25) - 10 * math.log(0.5) - 5 * math.log(2 * math.pi)
    assert checks["gaussian_loglik"] == pytest.approx(exact, abs=1e-5)
    assert checks["w1_translation"] == pytest.approx(0.5, abs=1e-5)        # W1(μ, μ + v) = ||v||
    assert checks["loglik_slope"] == pytest.approx(-(10 - 1), abs=0.15)    # −(D − d), D = 10, d = 1
    # unperturbed fit: σ̂ collapses; perturbed with σ̃ = 0.1: σ̂ ≈ σ̃ (the fitted noise is the added noise)
    sigma_hat = {float(a): float(b) for a, b in re.findall(r"σ̃=(0\.\d+): σ̂=(\d+\.\d+)", run.text)}
    assert sigma_hat[0.0] < 0.05 and sigma_hat[0.1] == pytest.approx(0.1, rel=0.3)
    assert_agrees_with_stored('singular_likelihood.ipynb', run)   # the outputs committed with the notebook
