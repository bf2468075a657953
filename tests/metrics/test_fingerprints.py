"""Fingerprints: CDVAE's definitions, failure handling, de-duplication and the on-disk cache."""
from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Structure

from genlowdim.metrics import fingerprints as fp
from tests.metrics._data import perov_structures


@pytest.fixture(scope="module")
def three():
    return list(perov_structures(3))


def test_fingerprints_are_finite_and_of_cdvae_length(three, small_structures):
    res = fp.compute_fingerprints(three + [small_structures["NaCl"]], workers=1, show_progress=False)
    assert res.struct.shape == (4, 61) and res.comp_raw.shape == (4, 132)
    assert np.isfinite(res.struct).all() and np.isfinite(res.comp).all() and res.ok.all()
    # rock salt: every site is octahedral, so the CN_6 octahedral parameter is ~1 and CN_6 weight is 1
    labels = fp._featurizers()[0].feature_labels()
    assert res.struct[3, labels.index("wt CN_6")] == pytest.approx(1.0)
    assert res.struct[3, labels.index("octahedral CN_6")] == pytest.approx(1.0, abs=1e-6)


def test_composition_scaler_uses_cdvae_constants_and_zeroes_nan():
    means, stds = fp._scaler()
    assert means.shape == stds.shape == (132,)
    assert means[0] == pytest.approx(21.194441759304013) and stds[-1] == pytest.approx(85.980205895116)
    raw = means + 2 * stds
    raw[5] = np.nan
    out = fp.normalise_composition(raw[None])[0]
    assert out[5] == 0.0 and np.allclose(np.delete(out, 5), 2.0)


def test_failures_are_counted_not_raised_and_duplicates_computed_once(three, monkeypatch):
    calls = []
    real = fp._one
    monkeypatch.setattr(fp, "_one", lambda s: calls.append(s) or real(s))
    permuted = Structure.from_sites([three[0][i] for i in (4, 2, 0, 1, 3)])
    res = fp.compute_fingerprints([three[0], None, three[0].copy(), permuted, three[1]], workers=1,
                                  show_progress=False, method="reference")
    assert len(calls) == 3  # three[0] (and its copy and permutation), None, three[1]
    assert list(res.ok) == [True, False, True, True, True] and res.errors[1] == "no structure"
    assert np.isnan(res.struct[1]).all()
    np.testing.assert_array_equal(res.struct[0], res.struct[3])
    direct = fp.structure_fingerprint(permuted)  # the permutation itself gives the same mean
    np.testing.assert_allclose(direct, res.struct[0], atol=1e-12)


def test_process_pool_gives_the_same_values(three):
    serial = fp.compute_fingerprints(three, workers=1, show_progress=False, method="reference")
    pooled = fp.compute_fingerprints(three, workers=2, chunk_size=1, show_progress=False, method="reference")
    np.testing.assert_array_equal(serial.struct, pooled.struct)


def test_cache_is_keyed_on_content(three, tmp_path):
    first, info1 = fp.cached_fingerprints(three[:2], directory=tmp_path, workers=1, show_progress=False)
    second, info2 = fp.cached_fingerprints(three[:2], directory=tmp_path, workers=1, show_progress=False)
    assert not info1["cache_hit"] and info2["cache_hit"] and info1["cache_file"] == info2["cache_file"]
    np.testing.assert_array_equal(first.struct, second.struct)
    moved = three[1].copy()
    moved.translate_sites([0], [0.01, 0, 0])
    _, info3 = fp.cached_fingerprints([three[0], moved], directory=tmp_path, workers=1, show_progress=False)
    assert not info3["cache_hit"] and info3["cache_file"] != info1["cache_file"]
