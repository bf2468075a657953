"""The contract between the crystal tasks and a model family is enough: a test double that implements it
(and nothing of CDVAE) runs through generation, reconstruction and CSP, resumably, through ``genlowdim
sample``, ``reconstruct`` and ``csp`` once its family is registered, and ships like the pretrained models;
the CDVAE wrapper meets the contract with its latent hooks."""
import json

import pytest
import torch

from genlowdim.cli import main
from genlowdim.crystal import families
from genlowdim.crystal.pretrained import available_models, resolve_model, sha256_of
from genlowdim.runtime import save_checkpoint

from genlowdim.crystal.cdvae.contract import CDVAECrystals
from genlowdim.crystal.contract import CrystalModel, LatentCrystalModel
from genlowdim.crystal.data import load_dataset
from genlowdim.crystal.decoded import DecodedCrystals, batch_to_decoded
from genlowdim.crystal.tasks.csp import parse_formula, write_candidates
from genlowdim.crystal.tasks.generate import write_reconstructions, write_samples
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


def test_the_double_and_the_cdvae_wrapper_meet_the_contract(model_cfg):
    model, cfg = model_cfg
    assert isinstance(CubicCells(), CrystalModel) and not isinstance(CubicCells(), LatentCrystalModel)
    crystals = CDVAECrystals(model, cfg.sampling, config=cfg)
    assert isinstance(crystals, LatentCrystalModel) and crystals.dataset == cfg.data.dataset == "perov_5"
    assert len(crystals.load_split("val", 2)) == 2


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


def test_a_registered_family_samples_through_the_cli(tmp_path, cubic_family):
    ckpt = cubic_family
    out = tmp_path / "s"
    args = ["sample", "--checkpoint", str(ckpt), "--num", "3", "--batch-size", "2", "--out", str(out)]
    assert main(args + ["--device", "cpu"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 3 and manifest["settings"]["model"] == "cubic cells 4.0"
    assert all(s.lattice.a == pytest.approx(4.0) for _, s in read_structures(out / "samples.extxyz"))
    assert main(args + ["--target", "heat_ref<0.5", "--overwrite"]) == 2          # CDVAE's flags stay CDVAE's


def test_an_unknown_model_kind_is_a_one_line_error(tmp_path, capsys):
    ckpt = _cubic_checkpoint(tmp_path / "cubic.pt")
    assert main(["sample", "--checkpoint", str(ckpt), "--num", "1", "--out", str(tmp_path / "s")]) == 2
    assert "'cubic' model" in capsys.readouterr().err


def test_a_family_ships_through_the_pretrained_registry(tmp_path):
    folder = tmp_path / "cubic_4"
    folder.mkdir()
    ckpt = _cubic_checkpoint(folder / "cubic.pt")
    (folder / "manifest.json").write_text(json.dumps(
        {"files": {"cubic": {"file": "cubic.pt", "sha256": sha256_of(ckpt)}}}))
    assert list(available_models(tmp_path)) == ["cubic_4"]
    assert resolve_model("cubic_4", "cubic", root=tmp_path) == ckpt


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
