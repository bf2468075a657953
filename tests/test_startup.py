"""``genlowdim --version``, ``--help`` and argument errors answer at once: building the command line imports
no numerical library (torch alone takes 1-2 s to import, 15 s on a loaded machine). Checked on the modules a
fresh interpreter has loaded, not on a timing, so the test does not flake under load."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "scipy", "pymatgen", "ase", "matplotlib", "torch_geometric", "e3nn", "pandas")

PROBE = """
import contextlib, io, json, sys
from genlowdim.cli import main
argv = json.loads(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""


@pytest.mark.parametrize("argv, code", [
    (["--version"], 0),
    (["--help"], 0),
    (["sample", "--help"], 0),
    (["sample"], 2),                       # a required argument missing
    (["frobnicate"], 2),                   # an unknown command
    (["evaluate", "x", "--mode", "nope"], 2),
])
def test_the_command_line_answers_without_numerical_libraries(argv, code):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GENLOWDIM_QUIET": "1"}
    run = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["code"] == code
    assert result["heavy"] == [], f"genlowdim {' '.join(argv)} imported {result['heavy']}"


# Every command that works for seconds says what it is about to do before it imports a numerical library.
# The probe stops the command at its first heavy import (os._exit: unflushed output is lost, so the line must
# also be flushed) and returns what reached stdout by then.
FIRST_LINE_PROBE = """
import importlib.abc, json, os, sys
heavy = set(json.loads(sys.argv[2]))

class Tripwire(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in heavy:
            os.write(2, ("HEAVY " + name + "\\n").encode())
            os._exit(0)
        return None

sys.meta_path.insert(0, Tripwire())
from genlowdim.cli import main
sys.exit(main(json.loads(sys.argv[1])))
"""


def _commands(d: Path) -> list[list[str]]:
    tiny, phase = str(ROOT / "configs/crystal/tiny.yaml"), str(ROOT / "configs/lowrank/phase_transition.yaml")
    test_split = str(ROOT / "datasets/perov_5/test.csv.gz")
    shipped = ["--model", "perov_5"]
    return [
        ["train", "--config", tiny, "--out", str(d / "t")],
        ["sample", *shipped, "--num", "2", "--out", str(d / "s")],
        ["reconstruct", *shipped, "--num", "2", "--out", str(d / "r")],
        ["optimize", *shipped, "--num", "1", "--out", str(d / "o")],
        ["csp", *shipped, "--formula", "SrTiO3", "--out", str(d / "c")],
        ["csp", *shipped, "--split", "test", "--num", "2", "--out", str(d / "cb")],
        ["analyse", *shipped, "--quick", "--out", str(d / "a")],
        ["analyse-memorisation", "--config", tiny, "--steps", "1", "--out", str(d / "m")],
        ["demo", "--out", str(d / "demo")],
        ["evaluate", test_split, "--reference", "perov_5:test", "--out", str(d / "e")],
        ["relax", test_split, "--out", str(d / "x")],
        ["data", "info", "perov_5"],
        ["data", "check", test_split],
        ["data", "import", test_split, "--name", "mine", "--out", str(d / "data")],
        ["lowrank", "sweep", "--config", phase, "--out", str(d / "l")],
        ["likelihood", "sweep", "--config", str(ROOT / "configs/likelihood/sweep.yaml"), "--out", str(d / "k")],
    ]


def test_every_working_command_prints_its_first_line_before_numerical_libraries_load(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GENLOWDIM_QUIET": "1"}
    env.pop("PYTHONUNBUFFERED", None)   # a line printed but not flushed is then lost, as on a user's pipe
    for argv in _commands(tmp_path):
        run = subprocess.run([sys.executable, "-c", FIRST_LINE_PROBE, json.dumps(argv), json.dumps(HEAVY)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
        assert "HEAVY" in run.stderr, f"genlowdim {' '.join(argv)} ran without a numerical library: {run.stderr}"
        lines = [line for line in run.stdout.splitlines() if line.strip()]
        assert lines and lines[0].startswith(f"genlowdim {argv[0]}: "), \
            f"genlowdim {' '.join(argv)}: nothing printed before {run.stderr.split()[-1]} was imported"


def test_a_json_answer_gets_no_start_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GENLOWDIM_QUIET": "1"}
    argv = ["data", "info", "perov_5:test", "--json"]
    run = subprocess.run([sys.executable, "-c", FIRST_LINE_PROBE, json.dumps(argv), json.dumps(HEAVY)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=env)
    assert "HEAVY" in run.stderr and run.stdout == ""     # stdout stays one JSON document
