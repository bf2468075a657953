"""Samplers against exact answers: the exact MoLRG denoiser and an isotropic Gaussian drive every sampler.

MoLRG set-up: n = 16, K = 2 mutually orthogonal d = 2 subspaces, weights (0.3, 0.7), 10^4 samples in float32,
initial x = sigmas[0] * randn. Exact answers: every sample lies on one subspace; the fraction on subspace 0 is
0.3; in-subspace coordinates are N(0, 1). Tolerances (stated per sampler below) = measured discretisation bias
at the stated step count + about 4 standard errors (SE of the weight 0.0046, of the pooled variance 0.01).
ALD is run with 20 levels x 20 steps (400 calls) instead of CDVAE's 50 x 100, with step_lr = 5e-5.
Distance tolerance: 1e-5 (float32 rounding) for samplers ending at sigma = 0, 0.1 for ALD (sigma_min-sized noise).
"""
import pytest
import torch

from genlowdim.core import (
    SAMPLERS,
    CountingDenoiser,
    append_zero,
    get_sampler,
    sample_ddim,
    sample_ode_euler,
    sigmas_geometric,
    sigmas_karras,
)
from genlowdim.core.kernels import molrg_denoise

from .helpers import gaussian_denoiser, orthogonal_bases


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the tensors here are small; threads only add contention
    yield
    torch.set_num_threads(before)


BASES = orthogonal_bases(16, 2, 2).float()
LOGW = torch.tensor([0.3, 0.7]).log()


def molrg(x, sigma):
    return molrg_denoise(x, BASES, LOGW, sigma, check=False)


# name -> (sigmas, kwargs, decoder calls, |w0 - 0.3| tol, |pooled var - 1| tol, q99 residual tol (absolute))
CASES = {
    "ald": (sigmas_geometric(10, 0.01, 20), dict(n_steps_each=20, step_lr=5e-5), 400, 0.035, 0.08, 0.1),
    "em": (sigmas_karras(300, 0.002, 80), {}, 300, 0.02, 0.08, 1e-5),
    "pc": (append_zero(sigmas_geometric(40, 0.002, 100)), dict(snr=0.3, n_corrector=2), 300, 0.02, 0.05, 1e-5),
    "euler": (sigmas_karras(200, 0.002, 80), {}, 200, 0.02, 0.06, 1e-5),
    "heun": (sigmas_karras(50, 0.002, 80), {}, 99, 0.02, 0.05, 1e-5),
    "ddim": (sigmas_karras(200, 0.002, 80), dict(eta=1.0), 200, 0.02, 0.1, 1e-5),
}


def subspace_statistics(x):
    """(fraction assigned to subspace 0, pooled in-subspace variance, absolute distances to the union (B,))."""
    proj = torch.einsum("bn,knd->bkd", x, BASES)
    energy = proj.pow(2).sum(-1)
    k = energy.argmax(1)
    coords = proj[torch.arange(len(x)), k]
    dist = (x - torch.einsum("bd,bnd->bn", coords, BASES[k])).norm(dim=1)  # direct, no cancellation
    return (k == 0).float().mean().item(), coords.pow(2).mean().item(), dist


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_recovers_molrg(name):
    sigmas, kwargs, calls, tol_w, tol_var, tol_dist = CASES[name]
    g = torch.Generator().manual_seed(0)
    x = sigmas[0] * torch.randn(10_000, 16, generator=g)
    counted = CountingDenoiser(molrg)
    out = get_sampler(name)(counted, x, sigmas, generator=g, **kwargs)
    w0, var, dist = subspace_statistics(out)
    assert counted.calls == calls
    assert abs(w0 - 0.3) < tol_w, w0
    assert abs(var - 1.0) < tol_var, var
    assert torch.quantile(dist, 0.99) < tol_dist


# Isotropic Gaussian N(0, v I_2), v = 2, with x started exactly from N(0, (v + sigma_max^2) I): the output
# variance must be v. 10^4 x 2 values: SE of the variance ~ 1 %; measured biases at these step counts are
# <= 2 % (EM +1.9 %, DDIM(eta=1) -2.1 %, Euler -1.3 %, ALD +0.5 %); tolerance 5 % of v.
GAUSS = {
    "ald": (sigmas_geometric(10, 0.01, 20), dict(n_steps_each=60, step_lr=1e-4, final_denoise=True)),
    "em": (sigmas_karras(500, 0.002, 80), {}),
    "pc": (append_zero(sigmas_geometric(40, 0.002, 100)), dict(snr=0.1, n_corrector=2)),
    "euler": (sigmas_karras(500, 0.002, 80), {}),
    "heun": (sigmas_karras(50, 0.002, 80), {}),
    "ddim": (sigmas_karras(500, 0.002, 80), dict(eta=1.0)),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_output_variance_on_gaussian(name):
    v = 2.0
    sigmas, kwargs = GAUSS[name]
    g = torch.Generator().manual_seed(1)
    x = (v + sigmas[0] ** 2) ** 0.5 * torch.randn(10_000, 2, generator=g, dtype=torch.float64)
    out = get_sampler(name)(gaussian_denoiser(v), x, sigmas.double(), generator=g, **kwargs)
    assert abs(out.var().item() / v - 1) < 0.05, out.var().item()
    assert abs(out.mean().item()) < 0.05


def test_ddim_eta0_is_the_euler_ode_step():
    g = torch.Generator().manual_seed(2)
    sigmas = sigmas_karras(10, 0.01, 20)
    x = sigmas[0] * torch.randn(64, 16, generator=g)
    torch.testing.assert_close(sample_ddim(molrg, x, sigmas, eta=0.0), sample_ode_euler(molrg, x, sigmas))


SMALL = {
    "ald": (sigmas_geometric(5, 0.1, 3), dict(n_steps_each=2, final_denoise=True), 7, 6),
    "em": (sigmas_karras(4, 0.1, 5), {}, 4, 4),
    "pc": (sigmas_karras(4, 0.1, 5), dict(n_corrector=2), 12, 4),
    "euler": (sigmas_karras(4, 0.1, 5), {}, 4, 4),
    "heun": (sigmas_karras(4, 0.1, 5), {}, 7, 4),
    "ddim": (sigmas_karras(4, 0.1, 5), dict(eta=0.5), 4, 4),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_generator_extra_args_and_wrap(name):
    sigmas, kwargs, calls, steps = SMALL[name]
    seen, infos = [], []

    def denoiser(x, sigma, *, scale):
        seen.append(scale)
        return scale * x

    x = sigmas[0] * torch.randn(8, 3, generator=torch.Generator().manual_seed(7))

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return get_sampler(name)(denoiser, x, sigmas, generator=g, callback=infos.append,
                                 extra_args={"scale": 0.5}, wrap=lambda y: torch.remainder(y, 1.0), **kwargs)

    first = run(3)
    assert len(seen) == calls and set(seen) == {0.5}
    assert len(infos) == steps and all({"i", "x", "sigma", "denoised"} <= set(info) for info in infos)
    assert all(((info["x"] >= 0) & (info["x"] < 1)).all() for info in infos)
    assert ((first >= 0) & (first < 1)).all()
    torch.testing.assert_close(run(3), first, rtol=0, atol=0)
    # noise comes only from the generator: deterministic samplers ignore it, stochastic ones follow it
    assert torch.equal(run(4), first) == (name in ("euler", "heun"))


def test_bad_input_gives_clear_errors():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="unknown sampler 'foo'"):
        get_sampler("foo")
    with pytest.raises(ValueError, match="non-increasing"):
        SAMPLERS["em"](molrg, torch.zeros(4, 16), torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="only the last sigma may be 0"):
        SAMPLERS["euler"](molrg, torch.zeros(4, 16), torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="all be > 0"):
        SAMPLERS["ald"](lambda y, s: y, x, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="1-D"):
        SAMPLERS["heun"](lambda y, s: y, x, torch.ones(2, 2))
