"""The latent-structure analysis against answers known by construction, and ``genlowdim analyse`` end to end."""
import json

import numpy as np
import pytest
import torch

from genlowdim.cli import main
from genlowdim.core.jacobian import (exact_jacobian, numerical_rank, randomized_singular_values,
                                     sketched_numerical_rank)
from genlowdim.crystal.analysis.subspaces import LatentSettings, label_alignment, union_of_subspaces
from genlowdim.crystal.analysis.editing import orthogonal_directions
from genlowdim.crystal.analysis.jacobians import translation_projector
from genlowdim.crystal.analysis.labels import CrystalLabels, anion_label, perovskite_sites
from genlowdim.metrics.subspace import clustering_nmi, mle_dimension, pca_dimension, twonn_dimension

TINY = "configs/crystal/tiny.yaml"


@pytest.fixture(scope="module", autouse=True)
def one_thread(module_one_thread):
    """Every test of this module runs with one intra-op thread."""


def _plane(d: int, n: int = 2000, ambient: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(ambient, d, generator=g, dtype=torch.float64))[0]
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ u.T + 3.0   # an affine d-plane


@pytest.mark.parametrize("d", [2, 5, 8])
def test_intrinsic_dimension_of_a_plane_in_r64(d):
    x = _plane(d)
    assert pca_dimension(x, 0.99) == d
    assert twonn_dimension(x) == pytest.approx(d, rel=0.15)
    # Levina-Bickel is known to read Gaussian data low as d grows (measured 1.8 / 4.5 / 7.0 here)
    assert mle_dimension(x) == pytest.approx(d, rel=0.25)


def _planted_union(k=3, d=4, per=150, ambient=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(ambient, k * d, generator=g, dtype=torch.float64))[0]
    x = torch.cat([torch.randn(per, d, generator=g, dtype=torch.float64) @ basis[:, i * d:(i + 1) * d].T
                   for i in range(k)])
    return x, np.repeat(np.arange(k), per)


def test_planted_union_of_subspaces_is_found_and_scored():
    x, truth = _planted_union()
    s = LatentSettings(spectral_points=450, id_points=450)
    union = union_of_subspaces(x, s)
    assert union["num_clusters"] == 3                     # the eigengap finds K
    assert union["cluster_dims"] == [4, 4, 4]
    assert union["explained_union"] == pytest.approx(1.0, abs=0.02)
    labels = CrystalLabels()
    labels.add("planted", [int(t) for t in truth], "ground truth")
    row = label_alignment(x, labels, s)["planted"]
    assert row["union_of_subspaces"]["accuracy"] == pytest.approx(1.0)
    assert row["union_of_subspaces"]["nmi"] == pytest.approx(1.0)
    assert row["supervised_nearest_subspace"]["accuracy"] == pytest.approx(1.0)
    assert clustering_nmi([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)


def test_jacobian_rank_of_denoisers_with_known_jacobians():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    x0 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    point_mass = lambda v: x0 + 0.0 * v   # noqa: E731  exact denoiser of a point mass: constant in x
    assert numerical_rank(torch.linalg.svdvals(exact_jacobian(point_mass, x))) == 0
    u = torch.linalg.qr(torch.randn(12, 5, generator=g, dtype=torch.float64))[0]
    projector = lambda v: (u @ (u.T @ v.reshape(-1))).reshape(v.shape)   # noqa: E731
    jac = exact_jacobian(projector, x)
    assert torch.allclose(jac, u @ u.T)
    assert numerical_rank(torch.linalg.svdvals(jac)) == 5
    big = torch.linalg.qr(torch.randn(200, 6, generator=g, dtype=torch.float64))[0]
    svals, frob = randomized_singular_values(lambda v: big @ (big.T @ v), torch.randn(200, dtype=torch.float64),
                                             rank=10, generator=g)
    assert torch.allclose(svals[:6], torch.ones(6, dtype=torch.float64), atol=1e-8)
    assert sketched_numerical_rank(svals, frob) == 6


def test_translation_projector_removes_rigid_shifts():
    p = translation_projector(5)
    shift = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64).repeat(5)
    assert torch.allclose(p @ shift, torch.zeros(15, dtype=torch.float64), atol=1e-12)
    assert int(torch.linalg.matrix_rank(p)) == 12


def test_perovskite_site_rule_on_srtio3(small_structures):
    s = small_structures["SrTiO3"]
    sites = perovskite_sites(s.frac_coords, s.lattice.matrix, [site.specie.Z for site in s])
    assert sites == {"A": 38, "B": 22, "X": [8, 8, 8]}
    assert anion_label([8, 7, 8]) == "O2N"
    assert perovskite_sites(s.frac_coords[:3], s.lattice.matrix, [38, 22, 8]) is None   # not ABX3


def test_orthogonal_editing_directions_leave_every_subspace():
    g = torch.Generator().manual_seed(0)
    bases = torch.linalg.qr(torch.randn(16, 6, generator=g, dtype=torch.float64))[0].reshape(16, 2, 3).permute(1, 0, 2)
    dirs = orthogonal_directions(bases, 0, 3, g)
    assert torch.allclose(bases.permute(1, 0, 2).reshape(16, 6).T @ dirs, torch.zeros(6, 3, dtype=torch.float64),
                          atol=1e-12)
    assert torch.allclose(dirs.norm(dim=0), torch.ones(3, dtype=torch.float64))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_analyse")
    assert main(["train", "--config", TINY, "--out", str(out), "--set", "train.max_steps=6", "--device", "cpu"]) == 0
    return out / "last.pt"


def test_analyse_quick_writes_the_required_keys_and_figures(tiny_checkpoint, tmp_path):
    out = tmp_path / "analysis"
    assert main(["analyse", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quick", "--limit", "60"]) == 0
    res = json.loads((out / "analysis.json").read_text())
    for key in ("latent_intrinsic_dimension", "latent_subspace_dims", "latent_clustering", "jacobian_rank"):
        assert key in res, key
    assert {"twonn", "mle", "pca_95"} <= set(res["latent_intrinsic_dimension"])
    row = res["latent_clustering"]["anion"]
    assert {"union_of_subspaces", "kmeans", "gmm"} <= set(row)
    assert {"accuracy", "nmi"} <= set(row["kmeans"])
    level = res["jacobian_rank"]["levels"][0]
    assert len(level["coord"]) == 2 and "median_coord" in level
    assert all(0 <= r <= 15 for lv in res["jacobian_rank"]["levels"] for r in lv["coord"])
    # the recorded singular values give back the recorded ranks
    from genlowdim.core.jacobian import numerical_rank

    for lv in res["jacobian_rank"]["levels"]:
        assert [numerical_rank(torch.tensor(sv)) for sv in lv["coord_singular_values"]] == lv["coord"]
    assert "carbon_24" in res["not_encodable"]
    for png in ("latent_structure", "latent_scatter", "latent_clustering", "jacobian_rank", "editing",
                "editing_gallery"):
        assert (out / f"{png}.png").stat().st_size > 1000, png


def test_analyse_memorisation_runs_and_counts_copies(tmp_path):
    out = tmp_path / "memo"
    assert main(["analyse-memorisation", "--config", TINY, "--sizes", "4,8", "--steps", "2", "--num", "4",
                 "--sampler-steps", "1", "--out", str(out)]) == 0
    res = json.loads((out / "memorisation.json").read_text())
    assert [r["n"] for r in res["rows"]] == [4, 8]
    for r in res["rows"]:
        assert 0.0 <= r["copy_fraction"] <= 1.0 and r["valid_novel_fraction"] <= r["valid_fraction"]
    assert (out / "memorisation.png").is_file()


def test_a_training_set_judged_against_itself_is_all_copies(small_structures):
    from genlowdim.crystal.analysis.memorisation import judge_samples

    structures = [small_structures["SrTiO3"], small_structures["NaCl"]]
    row = judge_samples(structures, structures)
    assert row["copy_fraction"] == 1.0 and row["valid_novel_fraction"] == 0.0


def test_bad_analyse_input_is_a_clear_usage_error(tiny_checkpoint, tmp_path, capsys):
    assert main(["analyse-memorisation", "--config", TINY, "--sizes", "8,x", "--steps", "2",
                 "--out", str(tmp_path / "m")]) == 2
    assert "--sizes '8,x': give comma-separated integers" in capsys.readouterr().err
    assert main(["analyse", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "a"),
                 "--digits", str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["analyse", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "a"), "--limit", "0"]) == 2


def test_analyse_pins_one_thread_only_for_small_cell_models():
    from genlowdim.crystal.analysis_commands import analysis_threads

    assert analysis_threads(5, 8) == 1          # perov_5: tiny graphs, one thread is fastest
    assert analysis_threads(24, 8) == 8         # carbon_24-sized cells keep the caller's threads
