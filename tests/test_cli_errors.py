"""What the user sees when something is wrong: one line on stderr naming the problem and its fix, no
traceback, and the documented exit code (docs/cli.md): 1 for a check that found problems, 2 for usage or
input errors, 130 for Ctrl-C. One table, one row per case; the cases that must fail before any data is
loaded run with the dataset loader replaced by a tripwire."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from genlowdim.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "crystal" / "tiny.yaml")
PHASE = str(ROOT / "configs" / "lowrank" / "phase_transition.yaml")
MOLRG = str(ROOT / "configs" / "lowrank" / "molrg.yaml")
CIRCLE = str(ROOT / "configs" / "likelihood" / "circle_r10.yaml")


def _crystal_checkpoint(path: Path, *overrides: str) -> Path:
    """An untrained tiny CDVAE saved like a trained one (no data needed: the errors come before use)."""
    import torch

    from genlowdim.config import to_dict
    from genlowdim.crystal.cdvae.training import build_model
    from genlowdim.crystal.cdvae.config import load_crystal_config
    from genlowdim.runtime import save_checkpoint

    cfg = load_crystal_config(TINY, list(overrides))
    torch.manual_seed(0)
    model = build_model(cfg, 5)
    save_checkpoint(path, {"family": "crystal", "config": to_dict(cfg), "state_dict": model.state_dict(),
                           "extra_state": {"max_atoms": 5, "task": cfg.task}})
    return path


def _overwrite_a_tensor(path: Path) -> bytes:
    """The checkpoint's bytes with 400 bytes of its largest tensor set to 0xFF (as the issue's probe did to
    bytes 60000-60400 of a full-size last.pt): torch.load does not check the zip's CRC, so this loads."""
    import zipfile

    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        largest = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        start = data.find(archive.read(largest))
    damaged = bytearray(data)
    damaged[start:start + 400] = b"\xff" * 400
    return bytes(damaged)


def _bad_inputs(d: Path, cif: str) -> None:
    """``cifs/``: one good CIF among a binary one, one with an unknown element and one with a NaN coordinate;
    ``bad_cifs/``: only bad ones; ``nan.extxyz``: one frame whose positions hold a NaN."""
    from pymatgen.core import Lattice, Structure

    from genlowdim.structures.io import write_extxyz

    for folder in ("cifs", "bad_cifs"):
        (d / folder).mkdir()
        (d / folder / "binary.cif").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)
        (d / folder / "unknown.cif").write_text(cif.replace("Sr ", "Xx ").replace("Sr0", "Xx0"))
    (d / "cifs" / "good.cif").write_text(cif)
    lines = cif.splitlines()
    site = next(k for k, line in enumerate(lines) if line.strip().startswith("Ti"))
    words = lines[site].split()   # label, symbol, multiplicity, x, y, z, occupancy
    lines[site] = "  ".join(words[:3] + ["nan"] + words[4:])
    (d / "cifs" / "nan.cif").write_text("\n".join(lines) + "\n")
    write_extxyz([Structure(Lattice.cubic(3.9), ["Sr", "Ti"], [[0, 0, 0], [.5, .5, .5]])], d / "nan.extxyz")
    text = (d / "nan.extxyz").read_text().splitlines()
    text[-1] = " ".join(word if k != 1 else "nan" for k, word in enumerate(text[-1].split()))
    (d / "nan.extxyz").write_text("\n".join(text) + "\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every input the table needs, made once: checkpoints (good, headless, foreign, truncated), CSVs."""
    import csv

    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    from genlowdim.runtime import save_checkpoint

    d = tmp_path_factory.mktemp("cli_errors")
    good = _crystal_checkpoint(d / "cdvae.pt")
    _crystal_checkpoint(d / "headless.pt", "model.predict_property=false")
    save_checkpoint(d / "lowrank.pt", {"family": "lowrank", "config": {}, "state_dict": {}})
    data = good.read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    (d / "run").mkdir()
    (d / "run" / "last.pt").write_bytes(data)
    damaged = _overwrite_a_tensor(good)
    (d / "damaged.pt").write_bytes(damaged)
    (d / "damaged_run").mkdir()
    (d / "damaged_run" / "last.pt").write_bytes(damaged)
    (d / "damaged_run" / "best.pt").write_bytes(data)
    (d / "busy").mkdir()   # a folder another (live) process is writing into
    (d / "busy" / ".genlowdim.lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    cif = str(CifWriter(Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                                  [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])))
    with open(d / "mixed.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerows([["material_id", "cif"], ["ok", cif], ["bad", "not a CIF"]])
    with open(d / "unusable.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["material_id", "cif"], ["bad", "not a CIF"]])
    (d / "header_only.csv").write_text("material_id,cif\n")
    (d / "zero_bytes.csv").write_text("")
    _bad_inputs(d, cif)
    return d


# (id, argv with {d} for the fixture folder, exit code, words the one line must contain, data may load)
CASES = [
    ("data check: rows skipped", ["data", "check", "{d}/mixed.csv", "--no-cache", "--workers", "1"], 1,
     ["1 of 2 rows skipped", "mixed.csv"], True),
    ("data check: nothing loads", ["data", "check", "{d}/unusable.csv", "--no-cache", "--workers", "1"], 1,
     ["nothing loads", "unusable.csv"], True),
    ("data check: empty CSV", ["data", "check", "{d}/header_only.csv", "--no-cache", "--workers", "1"], 1,
     ["header_only.csv is empty"], True),
    ("data check: empty file", ["data", "check", "{d}/zero_bytes.csv"], 1, ["zero_bytes.csv is empty"], True),
    ("data check: missing file", ["data", "check", "{d}/nowhere.csv"], 2, ["nowhere.csv", "no such file"],
     True),
    ("train --out an existing run", ["train", "--config", TINY, "--out", "{d}/run"], 2,
     ["already holds a run", "--resume"], False),
    ("reconstruct --split tset", ["reconstruct", "--checkpoint", "{d}/cdvae.pt", "--split", "tset",
                                  "--out", "{d}/r"], 2, ["--split 'tset'", "use train, val or test"], False),
    ("sample --batch-size 0", ["sample", "--checkpoint", "{d}/cdvae.pt", "--batch-size", "0", "--out", "{d}/s"],
     2, ["--batch-size 0", "at least 1"], False),
    ("sample --num 0", ["sample", "--checkpoint", "{d}/cdvae.pt", "--num", "0", "--out", "{d}/s"], 2,
     ["--num 0"], False),
    ("optimize without a property head", ["optimize", "--checkpoint", "{d}/headless.pt", "--out", "{d}/o"], 2,
     ["headless.pt", "no property head", "predict_property=true"], False),
    ("optimize --property of another dataset", ["optimize", "--checkpoint", "{d}/cdvae.pt", "--property",
                                                "band_gap", "--out", "{d}/o"], 2,
     ["--property 'band_gap'", "'heat_ref'"], False),
    pytest.param("lowrank sweep: unknown solver",
                 ["lowrank", "sweep", "--config", PHASE, "--out", "{d}/sweep", "--set", "solvers=[spectral, simplex]",
                  "--set", "subspace_dims=[2]", "--set", "per_subspace=[1]", "--set", "seeds=1",
                  "--set", "random_start_points=[]"], 2, ["simplex"], True,
                 id="lowrank sweep: unknown solver"),
    ("checkpoint of another family", ["reconstruct", "--checkpoint", "{d}/lowrank.pt", "--out", "{d}/r"], 2,
     ["lowrank.pt", "'lowrank' family", "expected 'crystal'"], False),
    ("truncated checkpoint", ["sample", "--checkpoint", "{d}/truncated.pt", "--out", "{d}/s"], 2,
     ["truncated.pt", "truncated or corrupt"], False),
    ("missing checkpoint", ["sample", "--checkpoint", "{d}/none.pt", "--out", "{d}/s"], 2,
     ["checkpoint not found", "none.pt"], False),
    ("argparse: unknown choice", ["reconstruct", "--checkpoint", "{d}/cdvae.pt", "--type-update", "nearest",
                                  "--out", "{d}/r"], 2, ["--type-update", "invalid choice", "--help"], False),
    ("argparse: unknown command", ["frobnicate"], 2, ["invalid choice: 'frobnicate'"], False),
    ("csp --formula with an unknown element", ["csp", "--checkpoint", "{d}/cdvae.pt", "--formula", "CsPbXx3",
                                               "--out", "{d}/c"], 2, ["--formula 'CsPbXx3'"], False),
    ("csp --formula with too many atoms", ["csp", "--checkpoint", "{d}/cdvae.pt", "--formula", "Cs2PbI3",
                                           "--out", "{d}/c"], 2, ["6 atoms", "at most 5 atoms"], False),
    ("csp --formula with elements never seen in training", ["csp", "--model", "perov_5", "--formula", "CsPbI3",
                                                             "--out", "{d}/c"], 2,
     ["--formula 'CsPbI3'", "element I never seen", "--allow-unseen-elements"], False),
    ("csp --formula with --num", ["csp", "--checkpoint", "{d}/cdvae.pt", "--formula", "CsPbI3", "--num", "3",
                                  "--out", "{d}/c"], 2, ["--num counts compositions", "--samples"], False),
    ("sample --target of another property", ["sample", "--checkpoint", "{d}/cdvae.pt", "--target", "band_gap<1",
                                             "--out", "{d}/s"], 2, ["predicts 'heat_ref', not 'band_gap'"], False),
    # config values, checked before any work (item 9 of the newcomer's issue)
    ("train --set train.batch_size=0", ["train", "--config", TINY, "--out", "{d}/t1", "--set", "train.batch_size=0"],
     2, ["train.batch_size", "must be at least 1, got 0"], False),
    ("train --set model.latent_dim=-1", ["train", "--config", TINY, "--out", "{d}/t2", "--set",
                                         "model.latent_dim=-1"], 2, ["model.latent_dim", "at least 1, got -1"], False),
    ("train --set train.lr=-0.01", ["train", "--config", TINY, "--out", "{d}/t3", "--set", "train.lr=-0.01"], 2,
     ["train.lr", "must be > 0, got -0.01"], False),
    ("train --set an unparsable value", ["train", "--config", TINY, "--out", "{d}/t4", "--set", "train.lr=[1,"],
     2, ["train.lr", "not valid YAML"], False),
    ("lowrank train --set train.batch_size=0", ["train", "--config", MOLRG, "--out", "{d}/l1", "--set",
                                                "train.batch_size=0"], 2, ["train.batch_size", "at least 1"], False),
    ("likelihood train --set fit.lr=-1", ["train", "--config", CIRCLE, "--out", "{d}/k1", "--set", "fit.lr=-1"], 2,
     ["fit.lr", "must be > 0, got -1"], False),
    ("train --resume with another model", ["train", "--config", TINY, "--out", "{d}/run", "--resume", "--set",
                                           "model.latent_dim=16"], 2,
     ["--resume", "last.pt", "model.latent_dim: ", "-> 16"], False),
    # damaged checkpoints (item 10)
    ("checkpoint with overwritten bytes", ["sample", "--checkpoint", "{d}/damaged.pt", "--out", "{d}/s"], 2,
     ["damaged.pt", "corrupt"], False),
    ("train --resume from a damaged last.pt", ["train", "--config", TINY, "--out", "{d}/damaged_run", "--resume"],
     2, ["damaged_run/last.pt", "corrupt", "damaged_run/best.pt is intact", "copy it to"], False),
    ("sample into a folder in use", ["sample", "--checkpoint", "{d}/cdvae.pt", "--num", "2", "--batch-size", "2",
                                     "--out", "{d}/busy"], 2, ["busy", "in use by another run", "another --out"],
     False),
    # bad input files (item 10): named with their reason; one bad file never stops a folder
    ("data check: NaN positions in an extxyz", ["data", "check", "{d}/nan.extxyz", "--no-cache", "--workers", "1"],
     1, ["nothing loads", "nan.extxyz"], True),
    ("data check: a folder with bad files", ["data", "check", "{d}/cifs", "--no-cache", "--workers", "1"], 1,
     ["3 of 4 rows skipped", "cifs"], True),
    ("evaluate: a folder of bad files only", ["evaluate", "{d}/bad_cifs", "--reference", "{d}/cifs/good.cif",
                                              "--out", "{d}/e"], 2,
     ["bad_cifs: holds no usable structures (2 unusable", "binary.cif"], True),
    ("sample --target unparsable", ["sample", "--checkpoint", "{d}/cdvae.pt", "--target", "heat_ref=1",
                                    "--out", "{d}/s"], 2, ["--target 'heat_ref=1'", "NAME<VALUE"], False),
]




@pytest.mark.parametrize("name, argv, code, words, may_load_data",
                         [pytest.param(*c, id=c[0]) if type(c) is tuple else c for c in CASES])
def test_error_case(name, argv, code, words, may_load_data, files, monkeypatch, capsys):
    import genlowdim.crystal.cdvae.training as training

    monkeypatch.setenv("GENLOWDIM_QUIET", "1")
    if not may_load_data:   # checked first: the dataset is never read
        monkeypatch.setattr(training, "load_dataset", lambda *a, **k: pytest.fail(f"{name}: data loaded"))
    try:
        got = main([a.format(d=files) for a in argv])
    except SystemExit as exc:   # argparse's own checks
        got = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    assert "weights_only" not in err


def test_a_clean_check_exits_zero(files, capsys):
    import csv

    with open(files / "mixed.csv", newline="") as src, open(files / "clean.csv", "w", newline="") as dst:
        csv.writer(dst).writerows(list(csv.reader(src))[:2])   # header + the one good row
    assert main(["data", "check", str(files / "clean.csv"), "--no-cache", "--workers", "1"]) == 0
    assert capsys.readouterr().err.count("skipped") == 0


def test_ctrl_c_is_one_line_and_exit_130(files, monkeypatch, capsys):
    from genlowdim.crystal import data_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_cli, "_cmd_check", interrupted)
    assert main(["data", "check", str(files / "mixed.csv")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err


@pytest.mark.parametrize("module", ["genlowdim", "genlowdim.cli"])
def test_python_dash_m_reports_usage_errors_like_the_console_script(module, files):
    """``torchrun -m genlowdim`` / ``python -m genlowdim.cli``: the handlers' UsageError is caught there too."""
    run = subprocess.run([sys.executable, "-m", module, "sample", "--checkpoint", str(files / "cdvae.pt"),
                          "--batch-size", "0", "--out", str(files / "s")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 2, run.stderr
    assert run.stderr == "genlowdim: error: --batch-size 0: must be at least 1\n"


@pytest.mark.parametrize("override", ["train.batch_size=0", "model.latent_dim=-1", "train.lr=-0.01", "train.lr=[1,"])
def test_a_rejected_config_leaves_no_run_folder(override, tmp_path, capsys):
    """The values are checked before anything is written: no config.yaml (nor folder) is left in --out."""
    out = tmp_path / "run"
    assert main(["train", "--config", TINY, "--out", str(out), "--set", override]) == 2
    assert not out.exists()
    assert capsys.readouterr().err.count("\n") == 1


def test_data_check_names_every_bad_file_of_a_folder(files, capsys):
    assert main(["data", "check", str(files / "cifs"), "--no-cache", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "1 of 4 rows loaded" in out
    for name, reason in (("binary.cif", "unreadable file"), ("unknown.cif", "unknown element 'Xx"),
                         ("nan.cif", "non-finite coordinates")):
        assert any(name in line and reason in line for line in out.splitlines()), (name, out)


def test_data_check_rejects_nan_positions_by_name(files, capsys):
    main(["data", "check", str(files / "nan.extxyz"), "--no-cache", "--workers", "1"])
    assert "nan.extxyz:0: frame 0: site 1 has non-finite coordinates" in capsys.readouterr().out
