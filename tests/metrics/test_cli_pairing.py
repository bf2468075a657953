"""Pairing predictions with truths in ``genlowdim evaluate --mode reconstruction``."""
import pytest

from genlowdim.errors import UsageError
from genlowdim.metrics.cli import pair_by_id


def test_a_prediction_lost_to_an_unreadable_frame_pairs_by_id_as_a_miss():
    truths = ["t0", "t1", "t2"]
    preds, ids = pair_by_id(["b", "c"], ["P1", "P2"], ["a", "b", "c"], truths)
    assert preds == [None, "P1", "P2"] and ids == ["a", "b", "c"]


def test_ids_that_name_no_truth_pair_by_order_or_fail():
    assert pair_by_id(["x", "y"], ["P0", "P1"], ["a", "b"], ["t0", "t1"])[0] == ["P0", "P1"]
    with pytest.raises(UsageError, match="2 predictions but 3 truths"):
        pair_by_id(["x", "y"], ["P0", "P1"], ["a", "b", "c"], ["t0", "t1", "t2"])


def test_full_id_match_reorders():
    assert pair_by_id(["b", "a"], ["Pb", "Pa"], ["a", "b"], ["ta", "tb"])[0] == ["Pa", "Pb"]
