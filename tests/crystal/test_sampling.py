"""Decoding through the core samplers: plumbing checked with a decoder whose score is known exactly."""
import math

import pytest
import torch
from torch import nn

from genlowdim.core.samplers import CountingDenoiser

from genlowdim.crystal.cdvae.config import GraphNetConfig, ModelConfig, SamplerSpec, SamplingConfig
from genlowdim.crystal.geometry.lattice import frac_to_cart, lattice_from_params, min_image_cart_displacement
from genlowdim.crystal.cdvae.model import CDVAE
from genlowdim.crystal.cdvae.sampling import (DecoderDenoiser, TypeState, assign_types, decode_latents, run_sampler,
                                       sample_composition)

TINY = GraphNetConfig(num_layers=1, num_scalars=8, num_vectors=4, cutoff=5.0, max_neighbors=8,
                      num_basis=4, radial_hidden=8)


class ExactDecoder(nn.Module):
    """Outputs σ·score of a Gaussian around fixed targets (min image), and logits preferring type 8."""

    def __init__(self, target_frac, lattice, batch):
        super().__init__()
        self.target_frac, self.lattice, self.batch = target_frac, lattice, batch

    def forward(self, pos, types, z, sigma, lattice, batch):
        from genlowdim.crystal.geometry.lattice import cart_to_frac

        frac = cart_to_frac(pos, lattice, batch)
        d = min_image_cart_displacement(self.target_frac, frac, lattice, batch)   # x* − x, nearest image
        logits = torch.zeros(pos.shape[0], 100, dtype=pos.dtype)
        logits[:, 7] = 1.0
        return d / sigma[batch][:, None], logits


def test_composition_sampler_rounds_exactly_when_it_can():
    probs = torch.zeros(2, 100)
    probs[0, 19], probs[0, 7] = 0.6, 0.4          # Ca 3/5, O 2/5
    probs[1, 10], probs[1, 16] = 0.5, 0.5         # Na / Cl, 3 atoms: rounding gives 4, one dropped
    types = sample_composition(probs, torch.tensor([5, 3]), torch.Generator().manual_seed(0))
    assert sorted(types[:5].tolist()) == [8, 8, 20, 20, 20]
    assert len(types) == 8 and set(types[5:].tolist()) == {11, 17}


def test_ald_through_core_sampler_finds_the_exact_targets_and_wraps():
    lengths = torch.tensor([[4.0, 5.0, 4.5]], dtype=torch.float64)
    lattice = lattice_from_params(lengths, torch.tensor([[90.0, 100.0, 90.0]], dtype=torch.float64))
    batch = torch.zeros(3, dtype=torch.long)
    target = torch.tensor([[0.02, 0.5, 0.98], [0.5, 0.99, 0.5], [0.3, 0.3, 0.01]], dtype=torch.float64)
    state = TypeState(torch.ones(3, dtype=torch.long), batch)
    den = CountingDenoiser(DecoderDenoiser(ExactDecoder(target, lattice, batch),
                                           torch.zeros(1, 2, dtype=torch.float64), lattice, batch, state))
    from genlowdim.core.samplers import sample_ald
    from genlowdim.core.schedules import sigmas_geometric

    gen = torch.Generator().manual_seed(0)
    x0 = frac_to_cart(torch.rand((3, 3), generator=gen, dtype=torch.float64), lattice, batch)
    seen_outside = []

    def callback(info):
        state(info)
        seen_outside.append(_outside(info["x"], lattice, batch))

    x = sample_ald(den, x0, sigmas_geometric(10, 0.01, 20, dtype=torch.float64), n_steps_each=20,
                   step_lr=1e-4, generator=gen, wrap=den.denoiser.wrap, callback=callback)
    err = min_image_cart_displacement(target, _frac(x, lattice, batch), lattice, batch).norm(dim=-1)
    assert err.max() < 0.1, err                    # final noise level σ_min = 0.01 Å
    assert not any(seen_outside)                   # wrap kept every iterate in the cell
    assert den.calls == 400 and state.types.tolist() == [8, 8, 8]


def _frac(x, lattice, batch):
    from genlowdim.crystal.geometry.lattice import cart_to_frac

    return cart_to_frac(x, lattice, batch)


def _outside(x, lattice, batch):
    f = _frac(x, lattice, batch)
    return bool(((f < -1e-9) | (f > 1 + 1e-9)).any())


def _random_model(num_noise_levels: int) -> CDVAE:
    """An untrained tiny CDVAE whose lattice head decodes to ~4 Å cubic-ish cells."""
    torch.manual_seed(0)
    model = CDVAE(ModelConfig(latent_dim=8, head_hidden=16, encoder=TINY, decoder=TINY,
                              num_noise_levels=num_noise_levels), max_atoms=5).eval()
    model.lattice_scaler.mean.copy_(torch.tensor([2.3, 2.3, 2.3, 90.0, 90.0, 90.0]))
    model.lattice_scaler.std.copy_(torch.tensor([0.1, 0.1, 0.1, 1.0, 1.0, 1.0]))
    return model


def test_every_sampler_flag_decodes_a_random_model():
    model = _random_model(5)
    z = torch.randn(2, 8)
    cfg = SamplingConfig(samplers={"ald": SamplerSpec(steps_each=2), "ald_fast": SamplerSpec(steps_each=1)})
    calls = {}
    for name in ("ald", "ald_fast", "pc", "em", "heun", "ddim"):
        out = decode_latents(model, z, cfg, sampler=name, steps=4 if name not in ("ald", "ald_fast") else None,
                             generator=torch.Generator().manual_seed(1))
        assert len(out.atom_types) == int(out.num_atoms.sum())
        assert ((out.frac_coords >= 0) & (out.frac_coords < 1)).all()
        calls[name] = out.decoder_calls
    # ald: 5 levels x 2 steps; ald_fast: 5 x 1; pc: 4 levels x (1 corrector + 1 predictor); heun: 2*4 - 1
    assert calls == {"ald": 10, "ald_fast": 5, "pc": 8, "em": 4, "heun": 7, "ddim": 4}


def test_type_assignment_keeps_each_composition_and_is_optimal():
    import itertools

    gen = torch.Generator().manual_seed(0)
    # SrTiO3-like and NaCl2 (scored ordering by ordering), a 7-atom cell (batched shortest paths), a 5-atom one
    types = torch.tensor([8, 8, 8, 22, 38, 11, 17, 17, 3, 3, 3, 26, 26, 8, 9, 12, 12, 8, 8, 7])
    batch = torch.tensor([0] * 5 + [1] * 3 + [2] * 7 + [3] * 5)
    log_probs = torch.log_softmax(torch.randn(len(types), 100, generator=gen), -1)
    out = assign_types(log_probs, types, batch)
    for b in (0, 1, 2, 3):
        mine, theirs = out[batch == b], types[batch == b]
        assert sorted(mine.tolist()) == sorted(theirs.tolist())        # the multiset is kept
        lp = log_probs[batch == b]
        best = max(sum(float(lp[i, t - 1]) for i, t in enumerate(perm))
                   for perm in set(itertools.permutations(theirs.tolist())))
        got = sum(float(lp[i, t - 1]) for i, t in enumerate(mine.tolist()))
        assert got == pytest.approx(best, abs=1e-12)                    # brute force agrees
    # logits that clearly prefer a permutation are followed exactly
    want = torch.tensor([38, 8, 22, 8, 8])
    lp = torch.full((5, 100), -20.0)
    lp[torch.arange(5), want - 1] = 0.0
    assert assign_types(lp, torch.tensor([8, 8, 8, 22, 38]), torch.zeros(5, dtype=torch.long)).tolist() \
        == want.tolist()


def test_type_update_modes_argmax_composition_fixed():
    lengths = torch.tensor([[4.0, 4.0, 4.0]], dtype=torch.float64)
    lattice = lattice_from_params(lengths, torch.tensor([[90.0, 90.0, 90.0]], dtype=torch.float64))
    batch = torch.zeros(3, dtype=torch.long)
    target = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.0]], dtype=torch.float64)
    start = torch.tensor([11, 17, 17])
    x = frac_to_cart(target, lattice, batch)
    final = {}
    for mode in ("argmax", "composition", "fixed"):
        state = TypeState(start.clone(), batch, mode)
        den = DecoderDenoiser(ExactDecoder(target, lattice, batch), torch.zeros(1, 2, dtype=torch.float64),
                              lattice, batch, state)
        denoised = den(x, torch.tensor(0.1, dtype=torch.float64))
        assert state.types.tolist() == start.tolist()          # evaluating never changes the types
        state({"denoised": denoised})                          # the loop's step callback does
        final[mode] = state.types.tolist()
    # ExactDecoder's logits prefer oxygen everywhere: argmax follows them, the other modes keep Na + 2 Cl
    assert final["argmax"] == [8, 8, 8]
    assert sorted(final["composition"]) == [11, 17, 17] and final["fixed"] == [11, 17, 17]
    with pytest.raises(ValueError, match="type_update"):
        TypeState(start, batch, "nearest")


def test_reconstruction_keeps_the_composition_heads_counts():
    from dataclasses import replace

    from genlowdim.crystal.cdvae.sampling import reconstruct_batch
    from genlowdim.testing import random_crystals

    model = _random_model(4)
    b = random_crystals([3, 4], generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    cfg = SamplingConfig().with_spec("ald_fast", steps_each=2)
    comps = {}
    for mode in ("composition", "fixed"):
        out = reconstruct_batch(model, b, replace(cfg, recon_type_update=mode), sampler="ald_fast",
                                generator=torch.Generator().manual_seed(3))
        per = torch.repeat_interleave(torch.arange(len(out.num_atoms)), out.num_atoms)
        comps[mode] = [sorted(out.atom_types[per == i].tolist()) for i in range(len(out.num_atoms))]
    # both start from the same draw of the composition head and neither may change the counts
    assert comps["composition"] == comps["fixed"]


def test_one_hot_compositions_give_exact_counts():
    # a composition head sure of one element: every atom is that element, for every size and seed
    sizes = torch.tensor([1, 2, 3, 4, 5, 7])
    probs = torch.zeros(len(sizes), 100)
    elements = torch.tensor([26, 8, 1, 100, 38, 14])
    probs[torch.arange(len(sizes)), elements - 1] = 1.0
    for seed in range(5):
        types = sample_composition(probs, sizes, torch.Generator().manual_seed(seed))
        assert torch.equal(types, torch.repeat_interleave(elements, sizes))
    # fractions that are exact multiples of 1/n are reproduced exactly: Sr 1, Ti 1, O 3 of 5
    perov = torch.zeros(1, 100)
    perov[0, [37, 21, 7]] = torch.tensor([0.2, 0.2, 0.6])
    for seed in range(5):
        types = sample_composition(perov, torch.tensor([5]), torch.Generator().manual_seed(seed))
        assert sorted(types.tolist()) == [8, 8, 8, 22, 38]


def test_ald_steps_on_a_point_mass_give_the_closed_form_mean_and_variance():
    """A decoder whose x̂₀ is a fixed point x* (the exact denoiser of a point mass): one ALD step at σ with
    step s is x ← (1 − a)x + a·x* + √(2s)·ε, a = s/σ². Two levels σ = (2, 1), step_lr = 0.01 (s = 0.04,
    then 0.01; a = 0.01 both) from x₀: mean x* + (1 − a)²(x₀ − x*), variance 2·0.04·(1 − a)² + 2·0.01."""
    from genlowdim.core.samplers import sample_ald

    n = 20_000                                   # atoms of one 50 Å cell, far from its faces
    lattice = lattice_from_params(torch.full((1, 3), 50.0, dtype=torch.float64),
                                  torch.full((1, 3), 90.0, dtype=torch.float64))
    batch = torch.zeros(n, dtype=torch.long)
    x_star = torch.tensor([26.0, 24.0, 25.5], dtype=torch.float64)
    x0 = torch.tensor([25.0, 25.0, 25.0], dtype=torch.float64)
    target_frac = (x_star / 50.0).expand(n, 3)
    state = TypeState(torch.ones(n, dtype=torch.long), batch, "fixed")
    den = CountingDenoiser(DecoderDenoiser(ExactDecoder(target_frac, lattice, batch),
                                           torch.zeros(1, 2, dtype=torch.float64), lattice, batch, state))
    x = sample_ald(den, x0.expand(n, 3).clone(), torch.tensor([2.0, 1.0], dtype=torch.float64), n_steps_each=1,
                   step_lr=0.01, generator=torch.Generator().manual_seed(0), wrap=den.denoiser.wrap)
    a = 0.01
    mean = x_star + (1 - a) ** 2 * (x0 - x_star)
    var = 2 * 0.04 * (1 - a) ** 2 + 2 * 0.01
    se = math.sqrt(var / n)
    assert (x.mean(0) - mean).abs().max() < 4 * se, (x.mean(0), mean)
    assert torch.allclose(x.var(0), torch.full((3,), var, dtype=torch.float64), rtol=4 * math.sqrt(2 / n))
    assert den.calls == 2


class TypeCountingDecoder(nn.Module):
    """Zero coordinate output; its type logits favour the element numbered by the evaluation count (so every
    evaluation proposes different types) and it records the types it was called with."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, pos, types, z, sigma, lattice, batch):
        self.seen.append(types.tolist())
        logits = torch.zeros(pos.shape[0], 100, dtype=pos.dtype)
        logits[:, len(self.seen) % 100] = 1.0          # proposes element len(seen) + 1
        return torch.zeros_like(pos), logits


@pytest.mark.parametrize("sampler", ["heun", "pc"])
def test_trial_evaluations_do_not_change_the_types(sampler):
    """Heun's second evaluation and PC's corrector steps are not accepted steps: the types they would propose
    must not reach the next evaluation. Types change once per step, from the step's own evaluation."""
    lattice = lattice_from_params(torch.tensor([[4.0, 4.0, 4.0]], dtype=torch.float64),
                                  torch.tensor([[90.0, 90.0, 90.0]], dtype=torch.float64))
    batch = torch.zeros(2, dtype=torch.long)
    decoder = TypeCountingDecoder()
    state = TypeState(torch.tensor([1, 1]), batch, "argmax")
    den = DecoderDenoiser(decoder, torch.zeros(1, 2, dtype=torch.float64), lattice, batch, state)
    x = torch.zeros(2, 3, dtype=torch.float64)
    run_sampler(den, x, torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64), SamplerSpec(method=sampler, steps=4),
                generator=torch.Generator().manual_seed(0), wrap=den.wrap, callback=state)
    seen = [t[0] for t in decoder.seen]
    per_step = 2                                    # heun: main + trial; pc: corrector + predictor
    steps = [seen[i:i + per_step] for i in range(0, len(seen) - 1, per_step)]
    for k, pair in enumerate(steps):
        assert pair[0] == pair[1], seen              # the trial evaluation saw the step's own types
    # each step's types come from one evaluation of the previous step: heun its first, pc its predictor
    used = 0 if sampler == "heun" else 1
    for k in range(1, len(steps)):
        assert steps[k][0] == (per_step * (k - 1) + used + 1) % 100 + 1, seen
