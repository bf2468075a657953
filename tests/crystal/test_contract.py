"""The contract between the crystal tasks and a model family is enough: a test double that implements it
(and nothing of CDVAE) runs through generation, reconstruction and CSP, resumably, through ``genlowdim
sample``, ``reconstruct`` and ``csp`` once its family is registered, and ships like the pretrained models;
with the latent hooks it runs through property optimisation and generation aimed at a property, on the
command line too, with answers known by construction; without them those commands refuse it in one line.
The CDVAE wrapper meets the contract with its latent hooks."""
import json
import math

import pytest
import torch

from genlowdim.cli import main
from genlowdim.crystal import families, pretrained
from genlowdim.crystal.pretrained import available_models, resolve_model, sha256_of
from genlowdim.errors import CheckpointError
from genlowdim.runtime import save_checkpoint

from genlowdim.crystal.cdvae.contract import CDVAECrystals
from genlowdim.crystal.contract import CrystalModel, LatentCrystalModel, LatentOptimization, missing_latent_hooks
from genlowdim.crystal.data import load_dataset
from genlowdim.crystal.decoded import DecodedCrystals, batch_to_decoded
from genlowdim.crystal.tasks.csp import parse_formula, write_candidates
from genlowdim.crystal.tasks.generate import write_reconstructions, write_samples
from genlowdim.crystal.tasks.optimize import optimize_property, sr_thresholds
from genlowdim.crystal.tasks.targeted import Aim, parse_target
from genlowdim.structures.io import read_structures


class CubicCells:
    """Crystals in a cubic cell of edge ``edge`` Å, atoms at random fractional positions."""

    dataset = "perov_5"
    max_atoms = 20

    def __init__(self, edge: float = 5.0):
        self.edge = edge

    def load_split(self, split: str, num: int | None = None) -> list:
        items = list(load_dataset(self.dataset, split))
        return items if num is None else items[:num]

    def run_entries(self, task: str) -> tuple[dict, dict]:
        return {"edge": self.edge}, {"model": "cubic cells"}

    def record(self, task: str) -> dict:
        return {"model": f"cubic cells {self.edge}", "device": "cpu"}

    def _cells(self, types_per_cell: list[torch.Tensor], generator) -> DecodedCrystals:
        types = torch.cat(types_per_cell)
        frac = torch.rand((len(types), 3), generator=generator, dtype=torch.float64)
        b = len(types_per_cell)
        return DecodedCrystals(frac, types, torch.full((b, 3), self.edge, dtype=torch.float64),
                               torch.full((b, 3), 90.0, dtype=torch.float64),
                               torch.tensor([len(t) for t in types_per_cell]), decoder_calls=1)

    def sample(self, num: int, generator=None) -> DecodedCrystals:
        return self._cells([torch.tensor([11, 17]) for _ in range(num)], generator)

    def reconstruct(self, batch, generator=None) -> DecodedCrystals:
        truth = batch_to_decoded(batch)
        return self._cells([truth.atom_types[batch.batch == b] for b in range(len(truth.num_atoms))], generator)

    def predict(self, formulas, samples: int, generator=None):
        decoded = self._cells([t for t in formulas for _ in range(samples)], generator)
        return decoded, torch.arange(len(formulas) * samples, dtype=torch.float64)


class EdgeCells(CubicCells):
    """CubicCells with a latent space z (2,): the first two edges of a crystal's cell minus ``edge`` (a
    posterior of std 0.1 around them). z decodes to a NaCl cell of edges (edge + z₀, edge + z₁, edge), Na at
    the origin and Cl at its centre, so re-encoding a decode gives back its z; the property head is ‖z‖²
    ("heat_ref" of perov_5 by name), the squared distance of the decoded edges from ``edge``."""

    latent_dim = 2

    def __init__(self, edge: float = 5.0, search: LatentOptimization = LatentOptimization(),
                 property_head: str | None = "edge head"):
        super().__init__(edge)
        self.search, self.property_head = search, property_head
        self._like = torch.zeros(1, dtype=torch.float64)

    def parameters(self):
        return iter([self._like])

    def encode(self, batch, generator=None, sample: bool = True):
        mu = batch.lengths.view(-1, 3)[:, :2].double() - self.edge
        log_var = torch.full_like(mu, 2 * math.log(0.1))
        if not sample:
            return mu, log_var, mu
        return mu, log_var, mu + 0.1 * torch.randn(mu.shape, generator=generator, dtype=mu.dtype)

    def decode(self, z, generator=None) -> DecodedCrystals:
        b = z.shape[0]
        lengths = torch.cat([self.edge + z.detach().double(), torch.full((b, 1), self.edge, dtype=torch.float64)], 1)
        frac = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], dtype=torch.float64).repeat(b, 1)
        return DecodedCrystals(frac, torch.tensor([11, 17]).repeat(b), lengths,
                               torch.full((b, 3), 90.0, dtype=torch.float64), torch.full((b,), 2), decoder_calls=1)

    def predict_property(self, z):
        return (z ** 2).sum(-1)

    def latent_optimization(self) -> LatentOptimization:
        return self.search


def _edge_head(structures, edge: float = 5.0) -> torch.Tensor:
    """The double's head on written crystals: (a − edge)² + (b − edge)²."""
    return torch.tensor([(s.lattice.a - edge) ** 2 + (s.lattice.b - edge) ** 2 for s in structures])


def test_the_doubles_and_the_cdvae_wrapper_meet_the_contract(model_cfg):
    model, cfg = model_cfg
    assert isinstance(CubicCells(), CrystalModel) and not isinstance(CubicCells(), LatentCrystalModel)
    assert missing_latent_hooks(CubicCells()) == ["latent_dim", "parameters", "encode", "decode", "property_head",
                                                 "predict_property", "latent_optimization"]
    assert isinstance(EdgeCells(), LatentCrystalModel) and missing_latent_hooks(EdgeCells()) == []
    crystals = CDVAECrystals(model, cfg.sampling, config=cfg, latent="sample", constraint="ball")
    assert isinstance(crystals, LatentCrystalModel) and crystals.dataset == cfg.data.dataset == "perov_5"
    assert crystals.latent_optimization() == LatentOptimization("sample", "ball")
    assert crystals.property_head == "CDVAE property head"
    assert len(crystals.load_split("val", 2)) == 2
    with pytest.raises(ValueError, match="constraint 'box'"):
        LatentOptimization("mean", "box")


def test_optimisation_through_the_latent_hooks_improves_the_head(tmp_path):
    """Adam's first step moves each coordinate of z = μ by lr against the gradient's sign, so the first
    snapshot's edges are the truth's moved lr towards ``edge``; ‖z‖² then falls below every SR threshold, and
    the success rates are the per-crystal best of the written snapshots' properties."""
    crystals = EdgeCells()
    result = optimize_property(crystals, tmp_path, split="val", num=3, steps=40, decode_every=10, lr=0.1)
    assert [s["step"] for s in result["snapshots"]] == [0, 10, 20, 30, 39] and result["radius"] is None
    assert result["scored_by"] == "edge head" and result["model"] == "cubic cells"   # run_entries' manifest
    truth = [d.lengths[0, :2].double() for d in crystals.load_split("val", 3)]
    first = [s for _, s in read_structures(tmp_path / "snapshot_00000.extxyz")]
    for t, s in zip(truth, first):
        moved = t - 0.1 * torch.sign(t - 5.0)
        assert [s.lattice.a, s.lattice.b] == pytest.approx(moved.tolist(), abs=1e-6)
    props = []
    for snap in result["snapshots"]:
        path = tmp_path / f"snapshot_{snap['step']:05d}.extxyz"
        structures = [s for _, s in read_structures(path)]
        props.append(_edge_head(structures))
        assert snap["valid"] == 1.0 and snap["mean_property"] == pytest.approx(float(props[-1].mean()), abs=1e-6)
    assert result["snapshots"][-1]["mean_property"] < 0.1 < result["snapshots"][0]["mean_property"]
    best = torch.stack(props).min(0).values
    thresholds = sr_thresholds("perov_5")
    assert result["thresholds"] == thresholds
    assert all(result[k] == float((best <= v).double().mean()) == 1.0 for k, v in thresholds.items())


def test_the_ball_constraint_reads_the_hooks(tmp_path):
    """The ball's radius is the 0.99 quantile of ‖μ‖ over the first 2,000 training crystals, from the
    double's own encoder; a posterior start moves the first snapshot off the mean's path."""
    crystals = EdgeCells(search=LatentOptimization("sample", "ball"))
    result = optimize_property(crystals, tmp_path, split="val", num=2, steps=2, decode_every=5, lr=0.1)
    train = torch.cat([d.lengths[:, :2] for d in crystals.load_split("train", 2000)]).double()
    assert result["radius"] == pytest.approx(float(torch.quantile((train - 5.0).norm(dim=-1), 0.99)))
    assert all(s["mean_latent_norm"] <= result["radius"] + 1e-9 for s in result["snapshots"])
    truth = torch.cat([d.lengths[:, :2] for d in crystals.load_split("val", 2)]).double()
    mean_path = truth - 0.1 * torch.sign(truth - 5.0)
    first = torch.tensor([[s.lattice.a, s.lattice.b] for _, s in read_structures(tmp_path / "snapshot_00000.extxyz")])
    assert (first - mean_path).abs().max() > 1e-3


def test_targeted_sampling_through_the_latent_hooks_keeps_what_the_head_accepts(tmp_path):
    """Prior draws z ~ N(0, I) meet ‖z‖² < 0.5 with probability 1 − e^(−1/4): with 50 draws per crystal every
    crystal meets it; with 2 draws per crystal some do not, and the written crystals whose edges meet it on the
    double's head are exactly the ones the run counts, first in each batch."""
    aim = Aim(parse_target("heat_ref<0.5", "heat_ref"), max_draws=50, head="edge head")
    manifest = write_samples(EdgeCells(), 6, tmp_path / "a", batch_size=3, seed=0, aim=aim)
    head = _edge_head([s for _, s in read_structures(tmp_path / "a" / "samples.extxyz")])
    assert manifest["head_accepted"] == manifest["count"] == 6 and bool((head < 0.5).all())
    assert manifest["method"] == "rejection on the edge head over z ~ N(0, I)"
    few = Aim(parse_target("heat_ref<0.5"), max_draws=2)
    manifest = write_samples(EdgeCells(), 6, tmp_path / "b", batch_size=3, seed=0, aim=few)
    met = (_edge_head([s for _, s in read_structures(tmp_path / "b" / "samples.extxyz")]) < 0.5).tolist()
    assert manifest["count"] == 6 and manifest["draws"] == 12 and 0 < sum(met) == manifest["head_accepted"] < 6
    for batch in (met[:3], met[3:]):
        assert batch == sorted(batch, reverse=True)            # the accepted draws come first


def test_generation_through_the_contract_resumes(tmp_path):
    out = tmp_path / "s"
    first = write_samples(CubicCells(), 5, out, batch_size=2, seed=1)
    text = (out / "samples.extxyz").read_text()
    structures = [s for _, s in read_structures(out / "samples.extxyz")]
    assert first["count"] == 5 and len(structures) == 5
    assert all(s.lattice.a == pytest.approx(5.0) and s.composition.reduced_formula == "NaCl" for s in structures)
    (out / "batches" / "batch_00001" / "done.json").unlink()               # an interrupted run
    assert write_samples(CubicCells(), 5, out, batch_size=2, seed=1)["settings_hash"] == first["settings_hash"]
    assert (out / "samples.extxyz").read_text() == text


def test_reconstruction_and_csp_through_the_contract(tmp_path):
    items = list(load_dataset("perov_5", "val"))[:3]
    summary = write_reconstructions(CubicCells(), items, "val", tmp_path / "r", batch_size=2)
    preds, truth = (read_structures(tmp_path / "r" / name) for name in ("predictions.extxyz", "truth.extxyz"))
    assert summary["count"] == 3 and [i for i, _ in preds] == [i for i, _ in truth]
    assert [p.composition for _, p in preds] == [t.composition for _, t in truth]
    formula = parse_formula("SrTiO3", max_atoms=20)
    summary = write_candidates(CubicCells(), [formula], ["SrTiO3"], tmp_path / "c", samples=2,
                               extra={"formula": "SrTiO3"})
    candidates = [c for _, c in read_structures(tmp_path / "c" / "candidates.extxyz")]
    assert summary["count"] == 2 and summary["formula"] == "SrTiO3"
    assert all(c.composition.reduced_formula == "SrTiO3" for c in candidates)
    assert sorted(p.name for p in (tmp_path / "c" / "cif").iterdir()) == ["SrTiO3_000.cif", "SrTiO3_001.cif"]


def _cubic_checkpoint(path, edge: float = 4.0):
    save_checkpoint(path, {"family": "crystal", "config": {"edge": edge}, "state_dict": {},
                           "extra_state": {"task": "cubic", "elements": [8, 11, 17, 22, 38]}})
    return path


@pytest.fixture
def cubic_family(tmp_path, monkeypatch):
    """The double registered as the family of ``task: cubic`` checkpoints, and one such checkpoint."""
    monkeypatch.setitem(families.FAMILIES, "cubic", lambda payload, args: CubicCells(payload["config"]["edge"]))
    return _cubic_checkpoint(tmp_path / "cubic.pt")


@pytest.fixture
def edge_family(tmp_path, monkeypatch):
    """The latent double registered as the family of ``task: edge`` checkpoints, and one such checkpoint."""
    monkeypatch.setitem(families.FAMILIES, "edge", lambda payload, args: EdgeCells(payload["config"]["edge"]))
    path = tmp_path / "edge.pt"
    save_checkpoint(path, {"family": "crystal", "config": {"edge": 5.0}, "state_dict": {},
                           "extra_state": {"task": "edge"}})
    return path


def test_a_latent_family_optimizes_through_the_cli(tmp_path, edge_family, capsys):
    out = tmp_path / "o"
    args = ["optimize", "--checkpoint", str(edge_family), "--split", "val", "--num", "3", "--opt-steps", "40",
            "--decode-every", "10", "--lr", "0.1", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())
    assert (result["SR5"], result["SR10"], result["SR15"]) == (1.0, 1.0, 1.0) and result["scored_by"] == "edge head"
    assert result["snapshots"][-1]["mean_property"] < 0.1 < result["snapshots"][0]["mean_property"]
    assert "scored by edge head" in capsys.readouterr().out
    assert main(args + ["--constraint", "ball"]) == 2                          # CDVAE's flags stay CDVAE's
    assert main(args[:-2] + ["--split", "dev", "--out", str(out)]) == 2
    assert main(args + ["--property", "band_gap"]) == 2
    assert "'heat_ref'" in capsys.readouterr().err


def test_a_latent_family_aims_at_a_property_through_the_cli(tmp_path, edge_family):
    out = tmp_path / "s"
    args = ["sample", "--checkpoint", str(edge_family), "--num", "4", "--batch-size", "2", "--device", "cpu",
            "--target", "heat_ref<0.5", "--target-draws", "50", "--out", str(out)]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    head = _edge_head([s for _, s in read_structures(out / "samples.extxyz")])
    assert manifest["head_accepted"] == manifest["count"] == 4 and bool((head < 0.5).all())
    assert manifest["settings"]["target"] == "heat_ref<0.5" and manifest["checkpoint"] == str(edge_family)
    assert main(args + ["--target-source", "posterior", "--overwrite"]) == 0  # around the encoded training crystals
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "rejection on the edge head over the training crystals' posterior"
    assert manifest["head_accepted"] == 4
    assert main(args[:-4] + ["--target", "band_gap<1", "--out", str(out), "--overwrite"]) == 2


def test_a_latent_family_without_a_property_head_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(families.FAMILIES, "edge", lambda payload, args: EdgeCells(property_head=None))
    save_checkpoint(tmp_path / "e.pt", {"family": "crystal", "config": {}, "state_dict": {},
                                        "extra_state": {"task": "edge"}})
    assert main(["sample", "--checkpoint", str(tmp_path / "e.pt"), "--target", "heat_ref<0.5",
                 "--out", str(tmp_path / "s")]) == 2
    assert "--target needs a property head on the model's latent space" in capsys.readouterr().err


@pytest.mark.parametrize("argv, what", [
    (["optimize"], "optimize"),
    (["sample", "--target", "heat_ref<0.5"], "--target"),
])
def test_a_family_without_latent_hooks_is_refused_in_one_line(tmp_path, cubic_family, capsys, argv, what):
    assert main(argv + ["--checkpoint", str(cubic_family), "--device", "cpu", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{what} needs a crystal model with a latent space" in err
    assert "without the latent hooks latent_dim, parameters, encode, decode" in err and str(cubic_family) in err


def test_analyse_refuses_another_family_in_one_line(tmp_path, cubic_family, capsys):
    assert main(["analyse", "--checkpoint", str(cubic_family), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a 'cubic' model" in err and "needs a 'cdvae' model" in err


def test_a_registered_family_samples_through_the_cli(tmp_path, cubic_family):
    ckpt = cubic_family
    out = tmp_path / "s"
    args = ["sample", "--checkpoint", str(ckpt), "--num", "3", "--batch-size", "2", "--out", str(out)]
    assert main(args + ["--device", "cpu"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 3 and manifest["settings"]["model"] == "cubic cells 4.0"
    assert all(s.lattice.a == pytest.approx(4.0) for _, s in read_structures(out / "samples.extxyz"))
    assert main(args + ["--protocol", "cdvae", "--overwrite"]) == 2              # CDVAE's flags stay CDVAE's
    assert main(args + ["--target", "heat_ref<0.5", "--overwrite"]) == 2          # no latent hooks


def test_an_unknown_model_kind_is_a_one_line_error(tmp_path, capsys):
    ckpt = _cubic_checkpoint(tmp_path / "cubic.pt")
    assert main(["sample", "--checkpoint", str(ckpt), "--num", "1", "--out", str(tmp_path / "s")]) == 2
    assert "'cubic' model" in capsys.readouterr().err


def _ship_cubic(root, name: str = "cubic_4", extra: dict | None = None):
    """A shipped model folder ``root/name`` holding a cubic checkpoint listed under its kind."""
    folder = root / name
    folder.mkdir()
    ckpt = _cubic_checkpoint(folder / "cubic.pt")
    (folder / "manifest.json").write_text(json.dumps(
        {"files": {"cubic": {"file": "cubic.pt", "sha256": sha256_of(ckpt)}, **(extra or {})}}))
    return ckpt


def test_a_family_ships_through_the_pretrained_registry(tmp_path):
    ckpt = _ship_cubic(tmp_path)
    assert list(available_models(tmp_path)) == ["cubic_4"]
    assert resolve_model("cubic_4", "cubic", root=tmp_path) == ckpt
    assert resolve_model("cubic_4", ("cdvae", "cubic"), root=tmp_path) == ckpt    # the one family kind listed
    _ship_cubic(tmp_path, "two", {"cdvae": {"file": "cubic.pt", "sha256": ""}})
    with pytest.raises(CheckpointError, match="several model files"):
        resolve_model("two", ("cdvae", "cubic"), root=tmp_path)
    with pytest.raises(CheckpointError, match="lists no model file of the known model kinds cdvae"):
        resolve_model("cubic_4", ("cdvae",), root=tmp_path)


def test_model_name_resolves_the_file_of_its_family(tmp_path, cubic_family, monkeypatch, capsys):
    """``--model NAME`` takes the shipped file listed under the kind of a registered family, not ``cdvae``."""
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "shipped")
    (tmp_path / "shipped").mkdir()
    _ship_cubic(tmp_path / "shipped")
    out = tmp_path / "s"
    assert main(["sample", "--model", "cubic_4", "--num", "2", "--device", "cpu", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"] == str(tmp_path / "shipped" / "cubic_4" / "cubic.pt")
    assert main(["reconstruct", "--model", "cubic_4", "--split", "val", "--num", "2", "--device", "cpu",
                 "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["models"]) == 0
    assert capsys.readouterr().out.startswith("cubic_4: cubic None steps (None), files cubic; use --model cubic_4")


def test_a_registered_family_reconstructs_through_the_cli(tmp_path, cubic_family):
    out = tmp_path / "r"
    args = ["reconstruct", "--checkpoint", str(cubic_family), "--split", "val", "--num", "3", "--batch-size", "2",
            "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 3 and manifest["model"] == "cubic cells" and manifest["settings"]["edge"] == 4.0
    preds, truth = (read_structures(out / name) for name in ("predictions.extxyz", "truth.extxyz"))
    assert [i for i, _ in preds] == [i for i, _ in truth][:3]
    assert [p.composition for _, p in preds] == [t.composition for _, t in truth]
    assert all(p.lattice.a == pytest.approx(4.0) for _, p in preds)
    assert main(args + ["--latent", "sample", "--overwrite"]) == 2                # CDVAE's flags stay CDVAE's
    assert main([a if a != "val" else "dev" for a in args] + ["--overwrite"]) == 2


def test_a_registered_family_predicts_structures_through_the_cli(tmp_path, cubic_family, capsys):
    out = tmp_path / "c"
    args = ["csp", "--checkpoint", str(cubic_family), "--device", "cpu", "--out", str(out)]
    assert main(args + ["--formula", "SrTiO3", "--samples", "3"]) == 0
    candidates = [c for _, c in read_structures(out / "candidates.extxyz")]
    assert len(candidates) == 3 and all(c.composition.reduced_formula == "SrTiO3" for c in candidates)
    assert "ranked best first by the model's score" in capsys.readouterr().out
    assert main(args + ["--formula", "LiF", "--overwrite"]) == 2               # never seen in training: refused
    assert "never seen" in capsys.readouterr().err
    assert main(args + ["--split", "val", "--num", "2", "--overwrite"]) == 0
    assert json.loads((out / "manifest.json").read_text())["dataset"] == "perov_5"
    assert main(args + ["--formula", "SrTiO3", "--method", "prior", "--overwrite"]) == 2
