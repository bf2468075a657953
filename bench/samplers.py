"""Benchmark: sample quality vs decoder calls for every core sampler, driven by the exact MoLRG denoiser.

MoLRG: n = 16, K = 2 mutually orthogonal d = 2 subspaces, weights (0.3, 0.7); 4,000 samples per run, float32.
Exact answers: fraction on subspace 0 = 0.3, in-subspace coordinates N(0, 1), distance to the union 0.
Budgets map to settings as: euler/em/ddim(eta=1): Karras(calls) 80 -> 0.002; heun: Karras((calls+1)/2);
pc: Karras(calls/2), one corrector, snr 0.16; ald: 10 geometric levels 10 -> 0.01, calls/10 steps each,
step_lr 1e-4 (CDVAE's), final_denoise. The baseline is ALD, CDVAE's sampler. Usage::

    python bench/samplers.py [--budgets 25 50 100 200 400] [--num 4000] [--png docs/core_samplers.png]
"""
from __future__ import annotations

import argparse
import time

import torch

from genlowdim.core import (
    CountingDenoiser,
    get_sampler,
    molrg_denoise,
    sigmas_geometric,
    sigmas_karras,
)

N_DIM, K, D, WEIGHTS = 16, 2, 2, (0.3, 0.7)


def setup():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(N_DIM, N_DIM, generator=g, dtype=torch.float64))
    bases = q[:, : K * D].reshape(N_DIM, K, D).permute(1, 0, 2).contiguous().float()
    log_weights = torch.tensor(WEIGHTS).log()
    return bases, log_weights


def settings(name: str, calls: int):
    """(sigmas, kwargs) spending about ``calls`` denoiser calls."""
    if name == "ald":
        return sigmas_geometric(10.0, 0.01, 10), dict(n_steps_each=max(1, calls // 10), step_lr=1e-4,
                                                      final_denoise=True)
    if name == "heun":
        return sigmas_karras(max(2, (calls + 1) // 2), 0.002, 80.0), {}
    if name == "pc":
        return sigmas_karras(max(2, calls // 2), 0.002, 80.0), dict(snr=0.16, n_corrector=1)
    return sigmas_karras(calls, 0.002, 80.0), (dict(eta=1.0) if name == "ddim" else {})


def quality(x, bases):
    proj = torch.einsum("bn,knd->bkd", x, bases)
    k = proj.pow(2).sum(-1).argmax(1)
    coords = proj[torch.arange(len(x)), k]
    dist = (x - torch.einsum("bd,bnd->bn", coords, bases[k])).norm(dim=1)
    return (k == 0).float().mean().item(), coords.pow(2).mean().item(), torch.quantile(dist, 0.99).item()


def run(name, calls, num, bases, log_weights):
    sigmas, kwargs = settings(name, calls)
    counted = CountingDenoiser(lambda x, s: molrg_denoise(x, bases, log_weights, s, check=False))
    g = torch.Generator().manual_seed(1)
    x = sigmas[0] * torch.randn(num, N_DIM, generator=g)
    start = time.perf_counter()
    out = get_sampler(name)(counted, x, sigmas, generator=g, **kwargs)
    seconds = time.perf_counter() - start
    w0, var, dist = quality(out, bases)
    return dict(sampler=name, calls=counted.calls, weight0=w0, variance=var, dist_q99=dist, seconds=seconds)


def plot(rows, path, num):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in sorted({r["sampler"] for r in rows}):
        mine = [r for r in rows if r["sampler"] == name]
        calls = [r["calls"] for r in mine]
        axes[0].loglog(calls, [abs(r["variance"] - 1) + 1e-4 for r in mine], "o-", label=name)
        axes[1].semilogx(calls, [r["weight0"] for r in mine], "o-", label=name)
    calls = sorted({r["calls"] for r in rows if r["sampler"] == "euler"})
    se_var, se_w = (2 / (num * D)) ** 0.5, (WEIGHTS[0] * WEIGHTS[1] / num) ** 0.5
    axes[0].axhline(se_var, color="k", ls="--", lw=0.8, label="1 SE (sampling noise)")
    axes[1].axhspan(WEIGHTS[0] - 2 * se_w, WEIGHTS[0] + 2 * se_w, color="k", alpha=0.1, label="truth ± 2 SE")
    for ax in axes:
        ax.set_xticks(calls, [str(c) for c in calls])
        ax.minorticks_off()
    axes[0].set(xlabel="denoiser calls", ylabel="|in-subspace variance - 1|", title="variance error (truth 1)")
    axes[1].axhline(WEIGHTS[0], color="k", lw=0.8)
    axes[1].set(xlabel="denoiser calls", ylabel="fraction on subspace 0", title="mixture weight (truth 0.3)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    parser.add_argument("--num", type=int, default=4000)
    parser.add_argument("--png", default=None, help="write the quality-vs-calls plot here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bases, log_weights = setup()
    rows = [run(name, calls, args.num, bases, log_weights)
            for name in ("ald", "em", "pc", "euler", "heun", "ddim") for calls in args.budgets]
    print(f"Exact MoLRG (n={N_DIM}, K={K}, d={D}, weights {WEIGHTS}), {args.num} samples; truth: weight 0.3, variance 1")
    print("| sampler | calls | weight of subspace 0 | in-subspace variance | q99 distance to union | time (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler']} | {r['calls']} | {r['weight0']:.3f} | {r['variance']:.3f} | {r['dist_q99']:.1e} | "
              f"{r['seconds']:.2f} |")
    if args.png:
        plot(rows, args.png, args.num)
        print(f"plot written to {args.png}")


if __name__ == "__main__":
    main()
