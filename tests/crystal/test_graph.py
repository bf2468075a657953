"""Periodic radius graph: edge-for-edge agreement with pymatgen's neighbour list, truncation,
gradients, invariances and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

import genlowdim.crystal.geometry.graph as graph_module
from genlowdim.crystal.geometry.graph import periodic_radius_graph


def batch_of(structures, dtype=torch.float64):
    """Stack pymatgen structures as (pos, lattice, batch) tensors, keeping unwrapped coordinates."""
    pos = torch.tensor(np.concatenate([s.cart_coords for s in structures]), dtype=dtype)
    lattice = torch.tensor(np.stack([s.lattice.matrix for s in structures]), dtype=dtype)
    batch = torch.cat([torch.full((len(s),), k, dtype=torch.long) for k, s in enumerate(structures)])
    return pos, lattice, batch


def edge_keys(centre, neighbour, offsets, num_nodes):
    """Encode (i, j, offset) as one int64 per edge (offsets assumed within ±499)."""
    off = np.asarray(offsets, dtype=np.int64) + 499
    key = np.asarray(centre, dtype=np.int64) * num_nodes + np.asarray(neighbour, dtype=np.int64)
    return ((key * 1000 + off[:, 0]) * 1000 + off[:, 1]) * 1000 + off[:, 2]


def pymatgen_edges(structures, cutoff):
    """pymatgen neighbour lists of all structures, in global atom numbering: keys and distances."""
    num_nodes = sum(len(s) for s in structures)
    keys, dists, start = [], [], 0
    for s in structures:
        centre, neighbour, images, dist = s.get_neighbor_list(cutoff)
        keys.append(edge_keys(centre + start, neighbour + start, images.reshape(-1, 3), num_nodes))
        dists.append(dist)
        start += len(s)
    return np.concatenate(keys), np.concatenate(dists)


def assert_same_edges(structures, cutoff, graph, boundary_tol=1e-6, dist_tol=1e-6):
    """Same set of (i, j, offset) as pymatgen, same distances to 1e-6 (edges within boundary_tol of
    the cutoff may be decided either way by rounding and are left out of the set comparison)."""
    num_nodes = sum(len(s) for s in structures)
    ref_keys, ref_dist = pymatgen_edges(structures, cutoff)
    ours = edge_keys(graph.edge_index[1].numpy(), graph.edge_index[0].numpy(),
                     graph.cell_offsets.numpy(), num_nodes)
    our_dist = graph.edge_len.detach().double().numpy()
    near = lambda d: np.abs(d - cutoff) < boundary_tol  # noqa: E731
    # sort-based set comparison (numpy's hash-based unique is very slow on these keys)
    order_o, order_r = np.argsort(ours, kind="stable"), np.argsort(ref_keys, kind="stable")
    ours_sorted, ref_sorted = ours[order_o], ref_keys[order_r]
    assert not (np.diff(ours_sorted) == 0).any(), "duplicate edges"
    ours_far, ref_far = ours_sorted[~near(our_dist[order_o])], ref_sorted[~near(ref_dist[order_r])]
    assert np.array_equal(ours_far, ref_far), (len(ours_far), len(ref_far))
    # distances of the edges found by both
    at = np.clip(np.searchsorted(ref_sorted, ours_sorted), 0, len(ref_sorted) - 1)
    both = ref_sorted[at] == ours_sorted
    np.testing.assert_allclose(our_dist[order_o][both], ref_dist[order_r][at[both]], atol=dist_tol, rtol=0)
    return len(ours)


def random_skewed_structures(seed, count=12, small=False):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        lengths = rng.uniform(1.2, 3.0, 3) if small else rng.uniform(2.5, 9.0, 3)
        angles = rng.uniform(35.0, 145.0, 3)
        lattice = Lattice.from_parameters(*lengths, *angles)
        if lattice.volume < 0.2 * np.prod(lengths):  # nearly flat: skip
            continue
        n = int(rng.integers(1, 6))
        # coordinates outside the home cell on purpose: offsets must refer to the given positions
        out.append(Structure(lattice, ["C"] * n, rng.uniform(-1.5, 2.5, (n, 3))))
    return out


@pytest.mark.parametrize("small", [False, True])
def test_matches_pymatgen_on_random_skewed_cells(small):
    structures = random_skewed_structures(seed=1 + small, small=small)
    cutoff = 4.5 if small else 6.0  # small cells: 2-4 images per direction
    pos, lattice, batch = batch_of(structures)
    assert bool((lattice.norm(dim=-1) < cutoff).any())
    graph = periodic_radius_graph(pos, lattice, batch, cutoff)
    assert assert_same_edges(structures, cutoff, graph) > 100
    # edge vectors are what the contract says
    expect = (pos[graph.edge_index[0]] + torch.einsum("ei,eij->ej", graph.cell_offsets.double(),
              lattice[batch[graph.edge_index[1]]]) - pos[graph.edge_index[1]])
    torch.testing.assert_close(graph.edge_vec, expect)
    torch.testing.assert_close(graph.edge_len, expect.norm(dim=-1))


def test_small_structures_match_pymatgen(small_structures):
    structures = list(small_structures.values())
    pos, lattice, batch = batch_of(structures)
    graph = periodic_radius_graph(pos, lattice, batch, 7.0)
    assert_same_edges(structures, 7.0, graph)
    # one atom alone in a 2 Å cubic cell sees exactly its 6 images at 2 Å within 2.5 Å
    single = periodic_radius_graph(torch.zeros(1, 3), 2.0 * torch.eye(3).unsqueeze(0),
                                   torch.zeros(1, dtype=torch.long), 2.5)
    assert single.edge_len.shape == (6,)
    assert sorted(map(tuple, single.cell_offsets.abs().tolist())) == sorted(
        [(1, 0, 0)] * 2 + [(0, 1, 0)] * 2 + [(0, 0, 1)] * 2)


def test_sorted_by_centre_then_distance():
    structures = random_skewed_structures(seed=5, count=6)
    graph = periodic_radius_graph(*batch_of(structures), 5.0)
    centre, dist = graph.edge_index[1], graph.edge_len
    assert bool((centre[1:] >= centre[:-1]).all())
    same = centre[1:] == centre[:-1]
    assert bool((dist[1:][same] >= dist[:-1][same]).all())


def test_max_neighbors_keeps_exactly_the_k_nearest():
    structures = random_skewed_structures(seed=3, count=10)
    pos, lattice, batch = batch_of(structures)
    full = periodic_radius_graph(pos, lattice, batch, 6.0)
    k = 7
    cut = periodic_radius_graph(pos, lattice, batch, 6.0, max_neighbors=k)
    for i in range(pos.shape[0]):
        all_d = torch.sort(full.edge_len[full.edge_index[1] == i]).values
        kept = cut.edge_len[cut.edge_index[1] == i]
        assert kept.shape[0] == min(k, all_d.shape[0])
        torch.testing.assert_close(torch.sort(kept).values, all_d[:k])
    # the kept edges are a subset of the full graph
    n = pos.shape[0]
    full_keys = set(edge_keys(full.edge_index[1], full.edge_index[0], full.cell_offsets, n).tolist())
    assert set(edge_keys(cut.edge_index[1], cut.edge_index[0], cut.cell_offsets, n).tolist()) <= full_keys


def test_ties_are_broken_by_index():
    # cubic cell: the 6 nearest images are exactly tied; k = 3 keeps the lexicographically smallest offsets
    args = (torch.zeros(1, 3), 3.0 * torch.eye(3).unsqueeze(0), torch.zeros(1, dtype=torch.long), 3.5)
    expected = torch.tensor([[-1, 0, 0], [0, -1, 0], [0, 0, -1]])
    for _ in range(3):
        assert torch.equal(periodic_radius_graph(*args, max_neighbors=3).cell_offsets, expected)


@pytest.mark.parametrize("factor", [0.3, 100.0])
def test_first_pass_radius_does_not_change_the_result(monkeypatch, factor):
    """The k-nearest search first looks within a radius guessed from the density; a guess too small
    (every crystal searched again) or too large (plain cutoff) must give the same graph."""
    structures = random_skewed_structures(seed=19, count=10)
    pos, lattice, batch = batch_of(structures)
    base = periodic_radius_graph(pos, lattice, batch, 6.0, max_neighbors=9)
    monkeypatch.setattr(graph_module, "_K_RADIUS_FACTOR", factor)
    other = periodic_radius_graph(pos, lattice, batch, 6.0, max_neighbors=9)
    assert torch.equal(other.edge_index, base.edge_index) and torch.equal(other.cell_offsets, base.cell_offsets)


def test_gradients_flow_to_pos_and_lattice():
    structures = random_skewed_structures(seed=7, count=2)
    pos, lattice, batch = batch_of(structures)
    pos.requires_grad_(True)
    lattice.requires_grad_(True)

    def energy(p, lat):  # smooth pair energy over a fixed edge set
        graph = periodic_radius_graph(p, lat, batch, 4.0)
        return torch.exp(-graph.edge_len).sum()

    energy(pos, lattice).backward()
    assert pos.grad.abs().sum() > 0 and lattice.grad.abs().sum() > 0
    # away from the cutoff the edge set is locally constant, so gradcheck applies
    assert torch.autograd.gradcheck(lambda p, lat: energy(p, lat), (pos, lattice), eps=1e-7, atol=1e-5)


def test_invariant_to_rotation_translation_and_wrapping(generator):
    structures = random_skewed_structures(seed=11, count=4)
    pos, lattice, batch = batch_of(structures)
    base = periodic_radius_graph(pos, lattice, batch, 5.0)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    shift = torch.randn(1, 3, generator=generator, dtype=torch.float64)
    moved = periodic_radius_graph(pos @ q + shift, lattice @ q, batch, 5.0)
    torch.testing.assert_close(moved.edge_len, base.edge_len)
    torch.testing.assert_close(moved.edge_vec, base.edge_vec @ q)
    # moving atom 0 by a lattice vector changes its offsets, not the geometry
    jump = pos.clone()
    jump[0] += 2 * lattice[batch[0], 1]
    jumped = periodic_radius_graph(jump, lattice, batch, 5.0)
    torch.testing.assert_close(jumped.edge_vec, base.edge_vec)


def test_chunking_and_float32_give_the_same_graph(monkeypatch):
    structures = random_skewed_structures(seed=13, count=8)
    pos, lattice, batch = batch_of(structures)
    base = periodic_radius_graph(pos, lattice, batch, 5.0, max_neighbors=12)
    monkeypatch.setattr(graph_module, "MAX_CANDIDATES_PER_CHUNK", 50)
    chunked = periodic_radius_graph(pos, lattice, batch, 5.0, max_neighbors=12)
    assert torch.equal(chunked.edge_index, base.edge_index)
    assert torch.equal(chunked.cell_offsets, base.cell_offsets)
    single = periodic_radius_graph(pos.float(), lattice.float(), batch, 5.0)
    assert single.edge_vec.dtype == torch.float32
    assert_same_edges(structures, 5.0, single, boundary_tol=1e-4, dist_tol=1e-5)


def test_empty_crystals_and_unsorted_batch():
    structures = random_skewed_structures(seed=17, count=3)
    pos, lattice, batch = batch_of(structures)
    lattice = torch.cat([lattice[:1], torch.eye(3, dtype=torch.float64).unsqueeze(0) * 3, lattice[1:]])
    batch = torch.where(batch >= 1, batch + 1, batch)  # crystal 1 has no atoms
    perm = torch.randperm(pos.shape[0], generator=torch.Generator().manual_seed(0))
    graph = periodic_radius_graph(pos[perm], lattice, batch[perm], 5.0)
    ref = periodic_radius_graph(pos, lattice, batch, 5.0)
    assert_same_edges(structures, 5.0, ref)
    mapped = perm[graph.edge_index]  # back to the original numbering
    n = pos.shape[0]
    assert sorted(edge_keys(mapped[1], mapped[0], graph.cell_offsets, n).tolist()) == sorted(
        edge_keys(ref.edge_index[1], ref.edge_index[0], ref.cell_offsets, n).tolist())


@pytest.mark.parametrize("bad", ["nan", "flat"])
def test_a_degenerate_decoded_lattice_does_not_stop_the_batch(bad):
    """A NaN or nearly flat cell among good ones: the good crystals keep exactly their own graphs."""
    structures = random_skewed_structures(seed=5, count=2)
    pos, lattice, batch = batch_of(structures)
    broken = torch.eye(3, dtype=torch.float64) * 4.0
    if bad == "nan":
        broken[0, 0] = float("nan")
    else:
        broken[2, 2] = 1e-9   # heights ~0: an unbounded image search
    n_bad = 3
    pos_all = torch.cat([pos, torch.rand(n_bad, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))])
    lattice_all = torch.cat([lattice, broken.unsqueeze(0)])
    batch_all = torch.cat([batch, torch.full((n_bad,), 2, dtype=torch.long)])
    graph = periodic_radius_graph(pos_all, lattice_all, batch_all, 5.0, max_neighbors=12)
    ref = periodic_radius_graph(pos, lattice, batch, 5.0, max_neighbors=12)
    good = batch_all.index_select(0, graph.edge_index[1]) < 2
    n = pos_all.shape[0]
    assert sorted(edge_keys(graph.edge_index[1][good], graph.edge_index[0][good], graph.cell_offsets[good],
                            n).tolist()) == sorted(edge_keys(ref.edge_index[1], ref.edge_index[0],
                                                             ref.cell_offsets, n).tolist())
    if bad == "nan":
        assert bool(good.all())   # no edge of a cell whose geometry is undefined


@pytest.mark.parametrize("kwargs, message", [
    (dict(pos=torch.zeros(3, 2)), "pos must have shape"),
    (dict(lattice=torch.eye(3)), "lattice must have shape"),
    (dict(batch=torch.zeros(3)), "batch must be a long"),
    (dict(batch=torch.tensor([0, 0, 1])), "batch indices"),
    (dict(cutoff=0.0), "cutoff must be positive"),
    (dict(max_neighbors=0), "max_neighbors"),
])
def test_bad_input_is_named(kwargs, message):
    args = dict(pos=torch.zeros(3, 3), lattice=torch.eye(3).unsqueeze(0) * 4,
                batch=torch.zeros(3, dtype=torch.long), cutoff=5.0, max_neighbors=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        periodic_radius_graph(**args)


def test_matches_pymatgen_on_every_perov5_test_crystal():
    """All 3,785 perov_5 test crystals in one batch at the model's 7 Å cutoff (~1.9 M edges)."""
    from pathlib import Path

    from genlowdim.structures.io import read_structures

    path = Path(__file__).resolve().parents[2] / "datasets" / "perov_5" / "test.csv.gz"
    structures = [s for _, s in read_structures(path)]
    assert len(structures) == 3785
    tensors = batch_of(structures)
    graph = periodic_radius_graph(*tensors, 7.0)
    assert assert_same_edges(structures, 7.0, graph) > 1_000_000
    # the 20 nearest per centre (as the model uses them) are the first 20 of the full sorted list
    nearest = periodic_radius_graph(*tensors, 7.0, max_neighbors=20)
    centre = graph.edge_index[1]
    first = torch.cumsum(torch.bincount(centre), 0) - torch.bincount(centre)
    rank = torch.arange(centre.shape[0]) - first[centre]
    assert torch.equal(nearest.edge_index[1], centre[rank < 20])
    torch.testing.assert_close(nearest.edge_len, graph.edge_len[rank < 20])
