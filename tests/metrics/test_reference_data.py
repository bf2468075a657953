"""The reference data shipped for perov_5's test split: what its manifest says, equal to a fresh computation,
and used only for the structures and libraries it was made from (a stale or damaged file is reported on
stderr and everything is recomputed)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from genlowdim.metrics.fingerprints import compute_fingerprints
from genlowdim.metrics.properties import crystal_quantities
from genlowdim.metrics.reference_data import (DATA_DIR, load_shipped, read_manifest, reference_data,
                                              write_shipped)

NAME = "perov_5:test"


@pytest.fixture(scope="module")
def perov_5_test():
    from genlowdim.structures.datasets import load_structures

    return load_structures(NAME)[1]


def test_the_shipped_file_is_small_and_what_its_manifest_says():
    entry = read_manifest()[NAME]
    data = (DATA_DIR / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert entry["count"] == 3785 and entry["method"] == "fast"
    assert len(data) < 2_000_000
    assert entry["regenerate"] == "python -m genlowdim.metrics.reference_data perov_5:test"


def test_the_shipped_values_equal_a_fresh_computation_on_a_subset(perov_5_test):
    from genlowdim.structures.datasets import load_structures

    shipped = load_shipped(perov_5_test, NAME)
    assert shipped is not None, "the shipped file no longer matches this installation: regenerate it"
    parsed_now = load_structures(NAME, cache=False)[1]       # a fresh clone's first read, no parse cache
    assert load_shipped(parsed_now, NAME) is not None
    rows = np.sort(np.random.default_rng(0).choice(len(perov_5_test), 24, replace=False))
    subset = [perov_5_test[i] for i in rows]
    fresh = compute_fingerprints(subset, workers=1, show_progress=False)
    # CrystalNN order parameters: the same bits on the CPU that made the file; another CPU's vectorised
    # numpy paths move the last bits of a few (measured: at most 1.8e-11 over 24 crystals' 1,464 values)
    np.testing.assert_allclose(shipped.fingerprints.struct[rows], fresh.struct, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(shipped.fingerprints.comp_raw[rows], fresh.comp_raw)
    assert [shipped.fingerprints.errors[i] for i in rows] == fresh.errors
    for name, values in crystal_quantities(subset).items():
        np.testing.assert_array_equal(shipped.quantities[name][rows], values)
    assert shipped.info["shipped"] == NAME and shipped.info["cache_hit"]


@pytest.fixture
def toy(tmp_path, small_structures):
    """Three small crystals written as a shipped set ``toy:test`` into tmp_path."""
    structures = list(small_structures.values())
    entry = write_shipped("toy:test", structures, tmp_path, workers=1)
    return structures, entry, tmp_path


def test_a_shipped_set_serves_exactly_its_own_structures(toy, capsys):
    structures, entry, where = toy
    hit = load_shipped(structures, "toy:test", directory=where)
    fresh = compute_fingerprints(structures, workers=1, show_progress=False)
    np.testing.assert_array_equal(hit.fingerprints.struct, fresh.struct)
    assert load_shipped(structures, "other:test", directory=where) is None   # not a shipped name: silent
    assert load_shipped(structures, "toy:test", method="reference", directory=where) is None
    assert capsys.readouterr().err == ""


def _stale_cases(structures, monkeypatch):
    moved = [s.copy() for s in structures]
    moved[1].scale_lattice(moved[1].volume * 1.01)
    yield moved, "the structures differ from those it was made from"
    yield structures[:2], "it holds 3 crystals, given 2"
    import genlowdim.metrics.result as result

    real = result.versions()
    monkeypatch.setattr(result, "versions", lambda: {**real, "pymatgen": "0.0.1"})
    yield structures, "this installation has {'pymatgen': '0.0.1'"


def test_a_stale_set_is_reported_and_recomputed(toy, monkeypatch, capsys):
    structures, _, where = toy
    for given, reason in _stale_cases(structures, monkeypatch):
        assert load_shipped(given, "toy:test", directory=where) is None
        err = capsys.readouterr().err
        assert "shipped reference data of toy:test not used" in err and reason in err, err


def test_a_damaged_file_is_never_used(toy, tmp_path, capsys):
    structures, entry, where = toy
    path = where / entry["file"]
    import io

    with np.load(path) as arrays:   # plausible values, rewritten: only the checksum can tell
        altered = {k: arrays[k] for k in arrays.files}
    altered["struct"] = altered["struct"] + 0.5
    buf = io.BytesIO()
    np.savez_compressed(buf, **altered)
    path.write_bytes(buf.getvalue())
    got = reference_data(structures, "toy:test", tmp_path / "cache", workers=1, show_progress=False,
                         shipped_dir=where)
    assert "bytes changed" in capsys.readouterr().err
    fresh = compute_fingerprints(structures, workers=1, show_progress=False)
    np.testing.assert_array_equal(got.fingerprints.struct, fresh.struct)
    assert not got.info["cache_hit"] and "shipped" not in got.info
    assert json.loads((where / "manifest.json").read_text())["toy:test"]["sha256"] == entry["sha256"]
