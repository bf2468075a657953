"""Best-of-k reconstruction (CSP with several candidates per truth): known answers by construction."""
import pytest
from pymatgen.core import Lattice, Structure

from genlowdim.metrics.evaluate import evaluate_reconstruction_best_of


def _perovskite(a: float, swap: bool = False) -> Structure:
    a_site, b_site = ("Ti", "Sr") if swap else ("Sr", "Ti")
    return Structure(Lattice.cubic(a), [a_site, b_site, "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def test_a_truth_counts_when_any_candidate_matches():
    truths = [_perovskite(3.9), _perovskite(4.0)]
    wrong = _perovskite(3.9, swap=True)            # the A and B cations on each other's sites
    candidates = [[wrong, _perovskite(3.9)], [_perovskite(4.0), wrong], [wrong]]
    report = evaluate_reconstruction_best_of(candidates[:2], truths, workers=1)
    params = report["params"]["match_rate"]
    assert report["metrics"]["match_rate"] == 1.0 and report["metrics"]["rms_dist"] == pytest.approx(0, abs=1e-6)
    assert params["first_candidate_match_rate"] == 0.5
    assert params["candidates_per_truth"] == {"min": 2, "max": 2}
    none = evaluate_reconstruction_best_of([[wrong], [wrong]], truths, workers=1)
    assert none["metrics"]["match_rate"] == 0.0 and none["metrics"]["rms_dist"] is None
    with pytest.raises(ValueError, match="candidate lists"):
        evaluate_reconstruction_best_of(candidates, truths, workers=1)
