"""The fast CrystalNN "ops" fingerprint against matminer: a frozen fixture, live comparisons, the guards."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.metrics import crystalnn as cnn
from genlowdim.metrics import fingerprints as fp
from genlowdim.metrics.evaluate import diversity
from genlowdim.metrics.order_params import Geometry, bcc_order_unknown, ops_layout, order_parameter
from tests.metrics._data import perov_structures

FIXTURE = Path(__file__).parent / "data" / "crystalnn_ops_fixture.json.gz"
TOL = 1e-6


@pytest.fixture(scope="module")
def fixture():
    with gzip.open(FIXTURE, "rt") as fh:
        doc = json.load(fh)
    structures = [Structure(Lattice(it["lattice"]), it["species"], it["frac_coords"]) for it in doc["items"]]
    return doc, structures


def test_fast_path_equals_the_frozen_matminer_values(fixture):
    doc, structures = fixture
    stats = cnn.FastStats()
    fast = cnn.fast_structure_fingerprints(structures, stats)
    assert len(structures) >= 150 and stats.sites > 1000
    worst = 0.0
    for item, got in zip(doc["items"], fast):
        if item["fingerprint"] is None:  # the same crystals fail
            assert isinstance(got, Exception), item["set"]
            continue
        assert not isinstance(got, Exception), (item["set"], got)
        worst = max(worst, float(np.abs(got - np.asarray(item["fingerprint"])).max()))
    assert worst <= TOL
    # almost every site is computed without matminer (only order parameters on a threshold go there);
    # faces with collinear vertices take pymatgen's exact Voronoi arithmetic
    assert stats.fallback_sites / stats.sites < 0.01
    assert stats.replayed_sites / stats.sites < 0.1


def test_installed_matminer_still_gives_the_frozen_values(fixture):
    """Fails when a pymatgen/matminer release changes the reference itself (versions in the fixture)."""
    doc, structures = fixture
    picks = [i for i, it in enumerate(doc["items"]) if it["fingerprint"] is not None][::25]
    for i in picks:
        s = structures[i]
        ref = np.mean([cnn.reference_site(s, k) for k in range(len(s))], axis=0)
        np.testing.assert_allclose(ref, doc["items"][i]["fingerprint"], atol=1e-9,
                                   err_msg=f"versions at freezing: {doc['versions']}")


def test_compute_fingerprints_fast_equals_reference_and_counts_fallbacks():
    structures = list(perov_structures(6, skip=10))
    fast = fp.compute_fingerprints(structures, workers=1, show_progress=False, method="fast")
    ref = fp.compute_fingerprints(structures, workers=1, show_progress=False, method="reference")
    assert np.abs(fast.struct - ref.struct).max() <= TOL
    assert np.array_equal(fast.comp_raw, ref.comp_raw, equal_nan=True)
    assert fast.info["method"] == "fast" and fast.info["sites"] == 30
    assert 0 <= fast.info["fallback_sites"] <= 30
    with pytest.raises(ValueError, match="fingerprint method"):
        fp.compute_fingerprints(structures, method="slow")


def test_fast_magpie_is_matminers_values_bit_for_bit(fixture):
    """The vectorised Magpie statistics against ElementProperty.featurize: the frozen set's compositions
    (1–4 elements, fractional weights, ties for the mode) and elements with missing Magpie data."""
    _, structures = fixture
    odd = [Structure(Lattice.cubic(5.0), sp, [[0.1 * k, 0.2 * k, 0.3 * k] for k in range(len(sp))])
           for sp in (["He", "Xe"], ["H", "O", "O"], ["U", "Pu", "O", "O"], ["Fe"], ["Og", "Fe", "Fe"])]
    for s in structures[::4] + odd:
        ref = fp.composition_fingerprint(s)
        got = fp.fast_composition_fingerprint(s)
        assert np.array_equal(ref, got, equal_nan=True), s.composition


def test_batching_sites_of_many_structures_changes_no_bit(fixture):
    """The Voronoi cells of consecutive structures are computed together; alone they give the same bits."""
    _, structures = fixture
    picks = structures[::10]
    together = cnn.fast_structure_fingerprints(picks)
    for s, t in zip(picks, together):
        alone = cnn.fast_structure_fingerprints([s])[0]
        if isinstance(t, Exception):
            assert isinstance(alone, Exception)
        else:
            assert np.array_equal(alone, t)


def test_known_environments():
    # rock salt: one octahedral environment; CsCl: 8 neighbours at pi/2 ties (bcc sign) -> still exact
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    labels = fp._featurizers()[0].feature_labels()
    stats = cnn.FastStats()
    got = cnn.fast_structure_fingerprints([nacl, cscl], stats)
    assert got[0][labels.index("wt CN_6")] == pytest.approx(1.0)
    assert got[0][labels.index("octahedral CN_6")] == pytest.approx(1.0, abs=1e-9)
    for s, g in zip((nacl, cscl), got):
        ref = np.mean([cnn.reference_site(s, i) for i in range(len(s))], axis=0)
        assert np.abs(ref - g).max() <= TOL


def _pymatgen_op(typ, params, vectors):
    from pymatgen.core import Molecule
    from pymatgen.core.local_env import LocalStructOrderParams

    mol = Molecule(["C"] * (len(vectors) + 1), np.vstack([[0, 0, 0], vectors]))
    v = LocalStructOrderParams([typ], parameters=[params]).get_order_parameters(
        mol, 0, indices_neighs=list(range(1, len(vectors) + 1)))[0]
    return v or 0.0


def test_every_vectorised_order_parameter_matches_pymatgen_on_random_sets():
    rng = np.random.default_rng(3)
    for cn, entries in ops_layout():
        if len(entries) == 1 or cn > 12:
            continue
        vecs = rng.normal(size=(4, cn, 3)) * rng.uniform(1.5, 3.0, size=(4, cn, 1))
        unit = vecs / np.linalg.norm(vecs, axis=2, keepdims=True)
        geom = Geometry(unit)
        for typ, params in entries[1:]:
            vals, fragile = order_parameter(typ, params, geom)
            for b in range(len(vecs)):
                assert not fragile[b]
                assert vals[b] == pytest.approx(_pymatgen_op(typ, params, vecs[b]), abs=1e-9), (cn, typ)


def test_ties_are_marked_fragile():
    # a perfect octahedron: theta = pi/2 and pi everywhere; the bcc sign test sits on pi/2
    octa = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1],
                     [1, 1, 1], [-1, -1, -1]], float)
    unit = (octa / np.linalg.norm(octa, axis=1)[:, None])[None]
    bcc = dict(ops_layout())[8][1]
    assert bcc[0] == "bcc"
    _, fragile = order_parameter("bcc", bcc[1], Geometry(unit))
    assert fragile.all()
    # a rounding tie: 1000 * w = k + 1/2 within the band goes to the reference
    with pytest.raises(cnn.NeedsReference):
        cnn._weights(np.eye(3), np.zeros(3, int), np.ones(3), np.ones(3), np.array([1.0, 80.0, 1.0]),
                     ["Na"], 0)  # w = omega/omega_max * omega/area = 0.0125


def test_semicircle_weights_sum_to_one_when_the_smallest_bin_is_zero():
    sets = cnn._cn_sets(np.array([1.0, 1.0, 0.5, 0.25]))
    assert [cn for cn, _ in sets] == [2, 3, 4]
    assert sum(w for _, w in sets) == pytest.approx(1.0)  # bins reach 0: nothing left for CN 0
    # the weight of CN 2 is the semicircle area between 1 and 0.5, normalised by pi/4
    x = 0.5
    area = 0.5 * (x * math.sqrt(1 - x * x) + math.asin(x))
    assert sets[0][1] == pytest.approx((math.pi / 4 - area) / (math.pi / 4))


def test_diversity_is_the_mean_pairwise_distance():
    struct = np.array([[0.0] * 61, [3.0] + [0.0] * 60, [0.0, 4.0] + [0.0] * 59])
    fps = fp.Fingerprints(struct, np.zeros((3, 132)), ["", "", ""])
    out = diversity(fps, np.array([True, True, True]), 1000, 0)
    assert out["struct_div"].value == pytest.approx((3 + 4 + 5) / 3)
    assert out["comp_div"].value == pytest.approx(0.0)
    assert diversity(fps, np.array([True, False, False]), 1000, 0)["struct_div"].value is None


def _cubic_structures():
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    srtio3 = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
                       [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return [nacl.get_primitive_structure(), cscl, srtio3]


def test_exact_voronoi_path_equals_matminer_on_every_site(monkeypatch):
    """Forced through pymatgen's exact Voronoi arithmetic (tie order, 2π fan terms, rounding), every
    site of symmetric cells, where all of those ties occur, agrees with matminer."""
    def always(*args, **kwargs):
        raise cnn.NeedsExactFaces("forced")

    monkeypatch.setattr(cnn, "site_neighbours", always)
    structures = _cubic_structures()
    stats = cnn.FastStats()
    got = cnn.fast_structure_fingerprints(structures, stats)
    assert stats.replayed_sites == stats.sites == sum(len(s) for s in structures)
    for s, g in zip(structures, got):
        ref = np.mean([cnn.reference_site(s, i) for i in range(len(s))], axis=0)
        assert np.abs(ref - g).max() <= TOL


def test_tied_bcc_neighbours_need_the_order_only_when_the_value_depends_on_it():
    params = dict(ops_layout())[8][1][1]
    cube = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) / math.sqrt(3)
    all_tied = ~np.eye(8, dtype=bool)
    # a perfect cube: every swap of two corners is a symmetry, so any order gives the same value
    assert not bcc_order_unknown(params, cube[None], all_tied[None])[0]
    rng = np.random.default_rng(0)
    skew = cube + rng.normal(0, 0.1, cube.shape)
    skew /= np.linalg.norm(skew, axis=1, keepdims=True)
    assert bcc_order_unknown(params, skew[None], all_tied[None])[0]
    assert not bcc_order_unknown(params, skew[None], np.zeros((1, 8, 8), dtype=bool))[0]


def test_unbounded_cell_is_retried_at_pymatgens_larger_cutoff():
    # layers 9 Å apart: within 7 Å every image is in the site's layer, so the cell is unbounded (the
    # site's own in-plane images put it on the boundary) and pymatgen retries with a longer cutoff; the
    # exact Voronoi step reproduces the retry
    layered = Structure(Lattice.from_parameters(3.0, 3.2, 9.0, 90, 95, 100), ["Si", "O"],
                        [[0, 0, 0], [0.5, 0.4, 0.1]])
    assert cnn.retry_cutoff(layered.lattice.matrix) > cnn.SEARCH_CUTOFF
    stats = cnn.FastStats()
    got = cnn.fast_structure_fingerprints([layered], stats)[0]
    assert stats.fallback_sites == 0 and stats.replayed_sites == 2
    ref = np.mean([cnn.reference_site(layered, i) for i in range(len(layered))], axis=0)
    assert np.abs(ref - got).max() <= TOL
