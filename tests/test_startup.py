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
