"""Seeded small runs of the shipped model give byte-identical outputs.

The guard of the crystal layer / CDVAE family restructure: moving code must not move a number. The first sets
were recorded on the code before the move (b4f2a13) and held through it. When the shipped perov_5 weights
changed (the warm-restarted model), the sets were recorded again with the new weights on the code of that
commit, which moved no code, and the guard carries on from there. The digests depend on the machine's
floating-point paths (CPU, library builds): on a machine where they differ, add a set recorded there only
from a checkout that has not moved code since the last recording. A run passes when all five digests equal
one recorded set. Only the files that hold structures and numbers are hashed (no timestamps, wall times or
absolute paths); the settings hashes are recorded too, so that output folders written before a move still
resume.
"""
import hashlib
import json

import pytest

from genlowdim.cli import main

COMMON = ["--model", "perov_5", "--device", "cpu", "--seed", "3", "--sampler", "ald_fast", "--steps", "2"]
RUNS = {
    "sample": ["sample", "--num", "3", "--batch-size", "3"],
    "reconstruct": ["reconstruct", "--num", "2", "--batch-size", "2"],
    "csp": ["csp", "--formula", "SrTiO3", "--samples", "2", "--draws", "8", "--opt-steps", "3",
            "--pool-size", "20"],
    "optimize": ["optimize", "--num", "2", "--opt-steps", "4", "--decode-every", "2"],
    "target": ["sample", "--num", "2", "--batch-size", "2", "--target", "heat_ref<0.5", "--target-draws", "50"],
}
# one set per environment, recorded with the shipped weights of the time (see the module docstring)
RECORDED = {
    "Intel Xeon (AMX), torch 2.13.0 CPU, numpy 2.4.6, scipy 1.17.1, pymatgen 2026.10.24, spglib 2.8.0; "
    "warm-restarted perov_5 weights (cdvae.pt sha256 016e147a...)": {
        "sample": "bfa5e7d088b90527dcd4f8175eacc77068621c09085e579e9545070dfc73b5b4",
        "reconstruct": "690feaed8c0ce3b61481f555f8ba704ed523fc81e9ffe45c593f934b04356e32",
        "csp": "919c2ae1f293a3188380c36a01114a2b2402497abc1f37d519947621f2232243",
        "optimize": "3d6e08557c467708b8783f68461387ba56de1ea08638e477fb55d26d5b8aee4c",
        "target": "70f43d66bc7b369a7ae91196e2017ac69542b00485ce45b626008d02e138c5bf",
    },
}
OPTIMIZE_NUMBERS = ("SR5", "SR10", "SR15", "num", "radius", "thresholds", "snapshots")


def _digest(out) -> str:
    """sha256 over the structure files (extxyz, CIFs) and the numbers of results.json / settings hash."""
    h = hashlib.sha256()
    # symmetrised CIFs (cif_symmetrized/) were added later; they derive from the P1 ones checked here
    for path in sorted(p for p in out.rglob("*")
                       if p.suffix in (".extxyz", ".cif") and "cif_symmetrized" not in p.parts):
        h.update(str(path.relative_to(out)).encode())
        h.update(path.read_bytes())
    if (out / "results.json").exists():
        results = json.loads((out / "results.json").read_text())
        h.update(json.dumps({k: results[k] for k in OPTIMIZE_NUMBERS}, sort_keys=True).encode())
    if (out / "manifest.json").exists():
        h.update(json.loads((out / "manifest.json").read_text())["settings_hash"].encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def digests(tmp_path_factory, module_one_thread):
    root = tmp_path_factory.mktemp("outputs")
    found = {}
    for name, args in RUNS.items():
        out = root / name
        assert main(args + COMMON + ["--out", str(out)]) == 0
        found[name] = _digest(out)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_outputs_match_the_recorded_hashes(digests, name):
    # the environment is the recorded set that agrees with most of this run's five digests
    env = max(RECORDED.values(), key=lambda rec: sum(digests[n] == rec[n] for n in RUNS))
    assert digests[name] == env[name], f"{name}: outputs changed ({digests[name]})"
