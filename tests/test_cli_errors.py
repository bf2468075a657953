"""What the user sees when something is wrong: one line on stderr naming the problem and its fix, no
traceback, and the documented exit code (docs/cli.md): 1 for a check that found problems, 2 for usage or
input errors, 130 for Ctrl-C. One table, one row per case; the cases that must fail before any data is
loaded run with the dataset loader replaced by a tripwire."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genlowdim.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "crystal" / "tiny.yaml")
PHASE = str(ROOT / "configs" / "lowrank" / "phase_transition.yaml")


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
    cif = str(CifWriter(Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                                  [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])))
    with open(d / "mixed.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerows([["material_id", "cif"], ["ok", cif], ["bad", "not a CIF"]])
    with open(d / "unusable.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["material_id", "cif"], ["bad", "not a CIF"]])
    (d / "header_only.csv").write_text("material_id,cif\n")
    (d / "zero_bytes.csv").write_text("")
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
    ("csp --formula with --num", ["csp", "--checkpoint", "{d}/cdvae.pt", "--formula", "CsPbI3", "--num", "3",
                                  "--out", "{d}/c"], 2, ["--num counts compositions", "--samples"], False),
    ("sample --target of another property", ["sample", "--checkpoint", "{d}/cdvae.pt", "--target", "band_gap<1",
                                             "--out", "{d}/s"], 2, ["predicts 'heat_ref', not 'band_gap'"], False),
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
