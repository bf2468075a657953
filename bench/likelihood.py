"""Benchmark: marginal log-likelihood evaluations per second and fit time, n = 1,000, D = 50, d = 2.

Importance-weighted Monte Carlo with M samples (M = 64, 256, 1024), vectorised over the batch and the M
samples (logsumexp), against a per-point Python loop on a subsample, in the same run. Rows:
- ``iw_prior shared``: one set of M prior draws for the whole batch (M network calls);
- ``iw_prior per-point``: independent draws per point (B·M network calls), the same estimator as the loop;
- ``iw_encoder``: amortised Gaussian proposal (B·M network calls + encoder);
- ``loop``: the per-point-draw estimator computed one point at a time.
Fit time: ``fit_perturbed_mle`` with the shared-draw estimator, full batch, ``FIT_STEPS`` steps.

Run: ``.venv/bin/python bench/likelihood.py`` (``--quick`` for fewer repeats). One intra-op thread.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from genlowdim.likelihood.estimators import FitSettings, fit_perturbed_mle, log_likelihood, perturb
from genlowdim.likelihood.manifolds import make_manifold
from genlowdim.likelihood.model import GaussianEncoder, LatentGenerator

N, D, LATENT, SIGMA_TILDE = 1000, 50, 2, 0.1
LOOP_POINTS = 50
FIT_STEPS = 50


def best_time(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def loop_estimate(model: LatentGenerator, y: torch.Tensor, num_samples: int, gen: torch.Generator):
    """Per-point baseline: for each y_i, M prior draws, g, Gaussian log-density, logsumexp."""
    out = []
    for yi in y:
        z = model.sample_latent(num_samples, gen)
        mu = model(z)
        log_w = (-0.5 * (yi - mu).square().sum(1) / model.sigma**2 - D * torch.log(model.sigma)
                 - 0.5 * D * math.log(2 * math.pi))
        out.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 1 if args.quick else 3
    toy = make_manifold("sphere", D, seed=0)
    y = perturb(toy.sample(N, torch.Generator().manual_seed(0)), SIGMA_TILDE, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = LatentGenerator(LATENT, D, (64, 64), sigma_init=0.3)
    encoder = GaussianEncoder(D, LATENT)
    gen = torch.Generator().manual_seed(2)
    print(f"n = {N}, D = {D}, d = {LATENT}, MLP 64-64, torch {torch.__version__}, 1 thread; "
          f"loop baseline on {LOOP_POINTS} points")
    head = (f"{'M':>5} | {'shared evals/s':>14} | {'per-point evals/s':>17} | {'encoder evals/s':>15} | "
            f"{'loop evals/s':>12} | {'per-point/loop':>14} | {'shared/loop':>11} | {'fit s/step':>10} | {'ESS/M':>6}")
    print(head)
    print("-" * len(head))
    for m in (64, 256, 1024):
        def run(method, shared=True, points=y):
            with torch.no_grad():
                return log_likelihood(model, points, method, num_samples=m, encoder=encoder, generator=gen,
                                      shared_draws=shared)
        t_shared = best_time(lambda: run("iw_prior"), repeats)
        t_point = best_time(lambda: run("iw_prior", shared=False), repeats)
        t_enc = best_time(lambda: run("iw_encoder"), repeats)
        t_loop = best_time(lambda: loop_estimate(model, y[:LOOP_POINTS], m, gen), 1)
        ess = float(run("iw_prior").ess.mean()) / m
        fit_model = LatentGenerator(LATENT, D, (64, 64), sigma_init=0.3)
        fit = fit_perturbed_mle(y, fit_model, 0.0, FitSettings(method="iw_prior", num_samples=m,
                                                                steps=FIT_STEPS), gen)
        loop_rate, point_rate = LOOP_POINTS / t_loop, N / t_point
        print(f"{m:>5} | {N / t_shared:>14.0f} | {point_rate:>17.0f} | {N / t_enc:>15.0f} | {loop_rate:>12.0f} | "
              f"{point_rate / loop_rate:>13.1f}x | {N / t_shared / loop_rate:>10.0f}x | {fit.seconds / FIT_STEPS:>10.4f} | {ess:>6.3f}")


if __name__ == "__main__":
    main()
