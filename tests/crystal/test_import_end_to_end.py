"""A user's own crystals end to end through the CLI, in-process: a folder of CIFs (with broken files) ->
``data import`` -> ``train`` the tiny config for a few steps -> ``sample`` -> ``evaluate`` (docs/data.md)."""
import json

import pytest
import torch

from genlowdim.cli import main
from tests.structures._import_data import BROKEN, write_source_folder

TINY = "configs/crystal/tiny.yaml"


@pytest.mark.slow
def test_import_train_sample_evaluate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    good = write_source_folder(tmp_path / "cifs", num_perov=12, num_carbon=6)
    data = tmp_path / "data"
    assert main(["data", "import", str(tmp_path / "cifs"), "--name", "mine", "--out", str(data),
                 "--split", "0.6,0.2,0.2", "--seed", "0"]) == 0
    report = json.loads((data / "mine" / "import_report.json").read_text())
    assert report["written"] == len(good) and len(report["dropped_rows"]) == len(BROKEN)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # no max_atoms and no property head: both come from the data, which has no property column
        assert main(["train", "--config", TINY, "--out", str(tmp_path / "run"), "--data-dir", str(data),
                     "--set", "data.dataset=mine", "--set", "data.max_atoms=null",
                     "--set", "model.predict_property=false", "--set", "train.max_steps=3",
                     "--device", "cpu"]) == 0
        checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
        assert checkpoint["extra_state"]["max_atoms"] == report["max_atoms_in_data"] > 5
        assert 6 in checkpoint["extra_state"]["elements"]   # the training elements are recorded (carbon)
        assert main(["sample", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--num", "3",
                     "--out", str(tmp_path / "samples"), "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(before)
    assert main(["evaluate", str(tmp_path / "samples"), "--reference", str(data / "mine" / "test.csv.gz"),
                 "--out", str(tmp_path / "eval"), "--cutoffs", "0.4", "10", "--workers", "1"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "cov_recall" in json.dumps(metrics)


def test_a_property_head_without_a_property_is_a_clear_error(tmp_path, capsys):
    write_source_folder(tmp_path / "cifs", num_perov=4, num_carbon=0)
    assert main(["data", "import", str(tmp_path / "cifs"), "--name", "mine", "--out", str(tmp_path)]) == 0
    assert main(["train", "--config", TINY, "--out", str(tmp_path / "run"), "--data-dir", str(tmp_path),
                 "--set", "data.dataset=mine", "--set", "data.max_atoms=null"]) == 2
    assert "--property COLUMN" in capsys.readouterr().err
