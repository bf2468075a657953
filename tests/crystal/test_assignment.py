"""The batched composition-constrained type assignment against scipy's linear_sum_assignment, and decoding
batches that mix 5-, 12- and 24-atom cells."""
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from genlowdim.crystal.cdvae.assignment import assign_types, assign_types_per_crystal
from genlowdim.crystal.cdvae.config import SamplerSpec, SamplingConfig
from genlowdim.crystal.cdvae.model import CDVAE
from genlowdim.crystal.cdvae.sampling import decode_latents

from .test_sampling import TINY, ModelConfig


def _random_problem(sizes, gen, num_elements=4):
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    types = torch.randint(1, num_elements + 1, (len(batch),), generator=gen) * 7
    log_probs = torch.log_softmax(3 * torch.randn(len(batch), 100, generator=gen, dtype=torch.float64), -1)
    return log_probs, types, batch


def _per_crystal_totals(log_probs, types, batch):
    return torch.stack([log_probs[batch == b].gather(1, (types[batch == b] - 1)[:, None]).sum()
                        for b in range(int(batch.max()) + 1)])


def _optimal_totals(log_probs, types, batch):
    best = []
    for b in range(int(batch.max()) + 1):
        lp, t = log_probs[batch == b].numpy(), types[batch == b].numpy()
        r, c = linear_sum_assignment(-lp[:, t - 1])
        best.append(float(lp[:, t - 1][r, c].sum()))
    return torch.tensor(best, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(6))
def test_batched_assignment_reaches_linear_sum_assignments_optimum_for_1_to_24_atoms(seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 25, (20,), generator=gen).tolist() + [1, 6, 7, 24]
    log_probs, types, batch = _random_problem(sizes, gen, num_elements=1 + seed % 5)
    out = assign_types(log_probs, types, batch)
    for b in range(len(sizes)):                                     # each crystal keeps its multiset
        assert sorted(out[batch == b].tolist()) == sorted(types[batch == b].tolist())
    torch.testing.assert_close(_per_crystal_totals(log_probs, out, batch), _optimal_totals(log_probs, types, batch),
                               rtol=0, atol=1e-9)
    reference = assign_types_per_crystal(log_probs, types, batch)
    torch.testing.assert_close(_per_crystal_totals(log_probs, reference, batch),
                               _per_crystal_totals(log_probs, out, batch), rtol=0, atol=1e-9)


def test_small_cells_keep_the_brute_force_choice_and_one_type_cells_are_untouched():
    gen = torch.Generator().manual_seed(1)
    log_probs, types, batch = _random_problem([5, 5, 3, 12, 24], gen)
    types[batch == 4] = 6                                            # an all-carbon 24-atom cell
    out = assign_types(log_probs, types, batch)
    small = assign_types(log_probs[batch <= 2], types[batch <= 2], batch[batch <= 2])
    assert torch.equal(out[batch <= 2], small)                       # unaffected by the large cells beside them
    assert torch.equal(out[batch == 4], types[batch == 4])
    want = torch.tensor([38, 8, 22, 8, 8])                           # a clear preference is followed exactly
    lp = torch.full((5, 100), -20.0)
    lp[torch.arange(5), want - 1] = 0.0
    assert assign_types(lp, torch.tensor([8, 8, 8, 22, 38]), torch.zeros(5, dtype=torch.long)).tolist() \
        == want.tolist()


def random_model(max_atoms: int) -> CDVAE:
    """An untrained tiny CDVAE whose lattice head decodes to ~7 Å cubic-ish cells."""
    torch.manual_seed(0)
    model = CDVAE(ModelConfig(latent_dim=8, head_hidden=16, encoder=TINY, decoder=TINY, num_noise_levels=3),
                  max_atoms=max_atoms).eval()
    model.lattice_scaler.mean.copy_(torch.tensor([2.0, 2.0, 2.0, 90.0, 90.0, 90.0]))
    model.lattice_scaler.std.copy_(torch.tensor([0.1, 0.1, 0.1, 1.0, 1.0, 1.0]))
    return model


@pytest.mark.parametrize("type_update", ["composition", "argmax"])
def test_a_batch_of_5_12_and_24_atom_cells_decodes(type_update):
    model = random_model(24)
    sizes = torch.tensor([5, 12, 24, 5, 24])
    gen = torch.Generator().manual_seed(0)
    types = torch.randint(1, 4, (int(sizes.sum()),), generator=gen) * 8
    cfg = SamplingConfig(samplers={"ald": SamplerSpec(steps_each=2)})
    out = decode_latents(model, torch.randn(5, 8, generator=gen), cfg, sampler="ald", num_atoms=sizes,
                         atom_types=types, type_update=type_update, generator=gen)
    assert out.num_atoms.tolist() == sizes.tolist() and out.decoder_calls == 6
    assert out.frac_coords.shape == (int(sizes.sum()), 3) and torch.isfinite(out.frac_coords).all()
    assert ((out.frac_coords >= 0) & (out.frac_coords < 1)).all()
    if type_update == "composition":
        batch = torch.repeat_interleave(torch.arange(5), sizes)
        for b in range(5):
            assert sorted(out.atom_types[batch == b].tolist()) == sorted(types[batch == b].tolist())
