"""End to end through the CLI, in-process: train the tiny config, sample, reconstruct, resume, bad input."""
import csv
import json

import numpy as np
import pytest

from genlowdim.cli import main

TINY = "configs/crystal/tiny.yaml"


def _losses(run_dir):
    with open(run_dir / "log.csv") as fh:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(fh)]


@pytest.fixture(scope="module", autouse=True)
def one_thread(module_one_thread):
    """Every test of this module runs with one intra-op thread."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("tiny_run")
    assert main(["train", "--config", TINY, "--out", str(out), "--set", "train.max_steps=6",
                 "--set", "train.log_every=1", "--device", "cpu"]) == 0
    return out


def test_train_sample_and_reconstruct(trained, tmp_path):
    import torch

    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.structures.io import read_structures

    assert (trained / "last.pt").is_file() and (trained / "best.pt").is_file()
    steps = [s for s, _ in _losses(trained)]
    assert steps == [1, 2, 3, 4, 5, 6]
    out = tmp_path / "samples"
    assert main(["sample", "--checkpoint", str(trained / "last.pt"), "--num", "2", "--batch-size", "1",
                 "--seed", "3", "--out", str(out), "--device", "cpu"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 2 and manifest["batches"] == [0, 1]
    assert sorted(p.name for p in (out / "cif").iterdir()) == ["gen_000000.cif", "gen_000001.cif"]
    structures = read_structures(out / "samples.extxyz")

    # batch k draws z ~ N(0, I) first from a generator seeded seed·1000003 + k; the atom count is the
    # number-of-atoms head's argmax and the cell is the lattice head's, both read from the same z here
    model, _ = load_model(trained / "last.pt")
    with torch.no_grad():
        for k, (sid, s) in enumerate(structures):
            z = torch.randn((1, 8), generator=torch.Generator().manual_seed(3 * 1_000_003 + k))
            natom_logits, lengths, angles, _ = model.decode_stats(z)
            assert sid == f"gen_{k:06d}" and len(s) == max(1, int(natom_logits.argmax()))
            np.testing.assert_allclose(s.lattice.abc, lengths[0].numpy(), rtol=1e-5)
            np.testing.assert_allclose(s.lattice.angles, angles[0].numpy(), rtol=1e-5)

    # a lost batch is regenerated on a rerun, identically (per-batch seeds)
    first = (out / "batches" / "batch_00001" / "samples.extxyz").read_text()
    (out / "batches" / "batch_00001" / "done.json").unlink()
    assert main(["sample", "--checkpoint", str(trained / "last.pt"), "--num", "2", "--batch-size", "1",
                 "--seed", "3", "--out", str(out), "--device", "cpu"]) == 0
    assert (out / "batches" / "batch_00001" / "samples.extxyz").read_text() == first


def test_reconstruct_writes_the_split_and_decodes_its_latent_means(trained, tmp_path):
    import gzip

    import torch
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure
    from torch_geometric.data import Batch

    from genlowdim.crystal.cdvae.checkpoints import load_model
    from genlowdim.crystal.cdvae.training import load_split
    from genlowdim.structures.datasets import repo_datasets_dir
    from genlowdim.structures.io import read_structures
    from genlowdim.crystal.cdvae.sampling import sample_composition

    rec = tmp_path / "rec"
    assert main(["reconstruct", "--checkpoint", str(trained / "best.pt"), "--split", "test", "--num", "2",
                 "--type-update", "fixed", "--out", str(rec), "--device", "cpu"]) == 0
    preds, truths = read_structures(rec / "predictions.extxyz"), read_structures(rec / "truth.extxyz")

    # the truth file holds the split's first two crystals: the same ids, and the same crystals as the CSV's
    with gzip.open(repo_datasets_dir() / "perov_5" / "test.csv.gz", "rt") as fh:
        rows = [row for _, row in zip(range(2), csv.DictReader(fh))]
    assert [i for i, _ in truths] == [r["material_id"] for r in rows] == [i for i, _ in preds]
    matcher = StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10)
    for (_, truth), row in zip(truths, rows):
        original = Structure.from_str(row["cif"], fmt="cif")
        assert matcher.fit(truth, original)
        assert sorted(truth.atomic_numbers) == sorted(original.atomic_numbers)

    # each prediction decodes z = μ(truth): its atom count and cell come from the heads at μ, and with
    # --type-update fixed its elements are the composition head's draw from the batch's seed (0·1000003 + 0)
    model, cfg = load_model(trained / "best.pt")
    with torch.no_grad():
        mu = model.encode(Batch.from_data_list(load_split(cfg, "test", 2)), sample=False)[0]
        natom_logits, lengths, angles, comp_logits = model.decode_stats(mu)
    num_atoms = natom_logits.argmax(-1).clamp_min(1)
    types = sample_composition(torch.softmax(comp_logits, -1), num_atoms, torch.Generator().manual_seed(0))
    start = 0
    for b, (_, pred) in enumerate(preds):
        n = int(num_atoms[b])
        assert len(pred) == n
        assert sorted(pred.atomic_numbers) == sorted(types[start:start + n].tolist())
        np.testing.assert_allclose(pred.lattice.abc, lengths[b].numpy(), rtol=1e-5)
        np.testing.assert_allclose(pred.lattice.angles, angles[b].numpy(), rtol=1e-5)
        start += n


def test_sampling_flags_override_the_checkpoints_settings(trained, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", "--checkpoint", str(trained / "last.pt"), "--num", "1", "--sampler", "ald_fast",
                 "--step-lr", "3e-5", "--type-update", "composition", "--out", str(out), "--device", "cpu"]) == 0
    used = json.loads((out / "manifest.json").read_text())["sampling_config"]
    assert used["samplers"]["ald_fast"]["step_lr"] == 3e-5 and used["type_update"] == "composition"
    # a step_lr means nothing to the predictor-corrector sampler: refused, naming the flag
    assert main(["sample", "--checkpoint", str(trained / "last.pt"), "--num", "1", "--sampler", "pc",
                 "--step-lr", "3e-5", "--out", str(tmp_path / "x"), "--device", "cpu"]) == 2
    assert "--step-lr" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:   # argparse's own check of the choices
        main(["reconstruct", "--checkpoint", str(trained / "last.pt"), "--num", "1", "--type-update",
              "nearest", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "--type-update" in capsys.readouterr().err


def test_resume_follows_the_uninterrupted_trajectory(trained, tmp_path):
    part = tmp_path / "part"
    assert main(["train", "--config", TINY, "--out", str(part), "--set", "train.max_steps=3",
                 "--set", "train.log_every=1", "--device", "cpu"]) == 0
    assert main(["train", "--config", TINY, "--out", str(part), "--set", "train.max_steps=6", "--resume",
                 "--set", "train.log_every=1", "--device", "cpu"]) == 0
    whole, resumed = _losses(trained), _losses(part)
    assert [s for s, _ in resumed] == [1, 2, 3, 4, 5, 6]
    for (s1, l1), (s2, l2) in zip(whole, resumed):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-5, abs=1e-6)


def test_wrong_checkpoint_and_bad_config_are_clear_errors(tmp_path, capsys):
    import torch

    from genlowdim.runtime import save_checkpoint

    other = tmp_path / "other.pt"
    save_checkpoint(other, {"family": "lowrank", "config": {}, "state_dict": {}})
    assert main(["reconstruct", "--checkpoint", str(other), "--num", "1", "--out", str(tmp_path / "r")]) == 2
    assert "'lowrank' family, expected 'crystal'" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(other), "--type-update", "fixed", "--out", str(tmp_path / "s")]) == 2
    assert "crystal checkpoints" in capsys.readouterr().err
    torch.save({"x": 1}, tmp_path / "junk.pt")
    assert main(["sample", "--checkpoint", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "s")]) == 2
    assert "not a genlowdim checkpoint" in capsys.readouterr().err
    assert main(["train", "--config", TINY, "--out", str(tmp_path / "t"), "--set", "model.latent_size=3"]) == 2
    assert "latent_size" in capsys.readouterr().err


def test_crystals_over_max_atoms_are_skipped_and_an_empty_set_is_an_error(tmp_path):
    import gzip

    from genlowdim.crystal.cdvae.training import load_split
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.structures.datasets import repo_datasets_dir

    # a three-row CDVAE CSV cut from perov_5 (5 atoms per cell)
    text = gzip.open(repo_datasets_dir() / "perov_5" / "val.csv.gz", "rt").read()
    import pandas as pd
    from io import StringIO

    pd.read_csv(StringIO(text), nrows=3).to_csv(tmp_path / "val.csv", index=False)
    ok = load_crystal_config(TINY, [f"data.dataset={tmp_path}", "data.max_atoms=5"])
    assert len(load_split(ok, "val")) == 3
    too_small = load_crystal_config(TINY, [f"data.dataset={tmp_path}", "data.max_atoms=4"])
    with pytest.raises(ValueError, match="no usable crystals"):
        load_split(too_small, "val")
    from genlowdim.crystal.data import load_dataset

    assert load_dataset(tmp_path / "val.csv", max_atoms=4).report.num_skipped == 3
    with pytest.raises(FileNotFoundError, match="train.csv"):
        load_split(ok, "train")


def test_sample_weights_flag_picks_ema_or_raw_weights(tmp_path):
    # a run that keeps an EMA decodes the same seed differently with its two weight sets
    run = tmp_path / "run"
    assert main(["train", "--config", TINY, "--out", str(run), "--set", "train.max_steps=4",
                 "--set", "train.ema_decay=0.5", "--device", "cpu"]) == 0
    texts = {}
    for weights in ("ema", "raw"):
        out = tmp_path / weights
        assert main(["sample", "--checkpoint", str(run / "last.pt"), "--num", "1", "--seed", "0",
                     "--weights", weights, "--out", str(out), "--device", "cpu"]) == 0
        texts[weights] = (out / "samples.extxyz").read_text()
    assert texts["ema"] != texts["raw"]
