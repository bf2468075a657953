"""Property predictor: standardised target, invariance, training through the CLI, clear task errors."""
import numpy as np
import pytest
import torch

from genlowdim.cli import main
from genlowdim.crystal.cdvae.config import GraphNetConfig, ModelConfig
from genlowdim.crystal.cdvae.property import PropertyPredictor
from genlowdim.testing import check_invariance, random_crystals

TINY = GraphNetConfig(num_layers=1, num_scalars=8, num_vectors=4, cutoff=5.0, max_neighbors=None,
                      num_basis=4, radial_hidden=8)


def test_prediction_is_invariant_and_in_data_units():
    torch.manual_seed(0)
    model = PropertyPredictor(ModelConfig(head_hidden=8, encoder=TINY)).double()
    model.property_scaler.mean.fill_(2.0)
    model.property_scaler.std.fill_(0.5)
    b = random_crystals([3, 4], generator=torch.Generator().manual_seed(0))
    scaled = model.predict_scaled(b)
    assert torch.allclose(model.predict(b), 2.0 + 0.5 * scaled)
    dev = check_invariance(model.predict, b, generator=torch.Generator().manual_seed(1))
    assert max(dev.values()) < 1e-9, dev
    # the loss is the MSE in standardised units: a target equal to the prediction gives zero
    b.y = model.predict(b).detach()
    loss, parts = model(b)
    assert float(loss) < 1e-20 and float(parts["mae"]) < 1e-12


def test_property_config_trains_and_its_checkpoint_is_rejected_by_sample(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "prop"
    assert main(["train", "--config", "configs/crystal/tiny.yaml", "--out", str(out), "--set", "task=property",
                 "--set", "train.max_steps=4", "--device", "cpu"]) == 0
    from genlowdim.crystal.cdvae.checkpoints import load_model

    model, cfg = load_model(out / "last.pt", task="property")
    assert cfg.task == "property" and isinstance(model, PropertyPredictor)
    # the scaler was fitted on the training crystals: the tiny config's first 64 rows of perov_5's train
    # file, read here straight from the CSV (mean and the population standard deviation, as CDVAE's scaler)
    heat = _first_rows("train", 64, "heat_ref")
    assert float(model.property_scaler.mean) == pytest.approx(np.mean(heat), rel=1e-5)
    assert float(model.property_scaler.std) == pytest.approx(np.std(heat, ddof=0), rel=1e-5)
    assert main(["sample", "--checkpoint", str(out / "last.pt"), "--num", "1", "--out", str(tmp_path / "s")]) == 2
    assert "holds a 'property' model" in capsys.readouterr().err
    from genlowdim.runtime import CheckpointError

    with pytest.raises(CheckpointError, match="holds a 'property' model, this command needs a 'cdvae' model"):
        load_model(out / "last.pt", task="cdvae")


def _first_rows(split: str, n: int, column: str) -> np.ndarray:
    import csv
    import gzip

    from genlowdim.structures.datasets import repo_datasets_dir

    with gzip.open(repo_datasets_dir() / "perov_5" / f"{split}.csv.gz", "rt") as fh:
        rows = csv.DictReader(fh)
        return np.array([float(next(rows)[column]) for _ in range(n)])


def test_evaluate_scores_properties_with_a_property_model_checkpoint(tmp_path, monkeypatch, capsys):
    import json

    from genlowdim.structures.io import write_extxyz
    from tests.metrics._data import perov_structures

    torch.set_num_threads(1)
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    out = tmp_path / "prop"
    assert main(["train", "--config", "configs/crystal/tiny.yaml", "--out", str(out), "--set", "task=property",
                 "--set", "train.max_steps=2", "--device", "cpu"]) == 0
    monkeypatch.setenv("GENLOWDIM_CACHE_DIR", str(tmp_path / "cache"))   # fingerprint cache of this test only
    write_extxyz(list(perov_structures(4)), tmp_path / "ref.extxyz")
    args = ["evaluate", str(tmp_path / "ref.extxyz"), "--reference", str(tmp_path / "ref.extxyz"),
            "--dataset", "perov_5", "--no-unique", "--workers", "1", "--out", str(tmp_path / "ev")]
    assert main(args + ["--property-model", str(out / "last.pt")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    # the same crystals scored by the same model on both sides: identical property distributions
    assert metrics["wdist_prop"] == pytest.approx(0.0, abs=1e-12)
    assert main(args + ["--property-model", str(tmp_path / "none.pt")]) == 2
    assert "--property-model" in capsys.readouterr().err
    assert main(args + ["--mode", "reconstruction", "--property-model", str(out / "last.pt")]) == 2
    assert "--mode generation" in capsys.readouterr().err
