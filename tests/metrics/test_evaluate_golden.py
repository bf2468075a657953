"""``evaluate_generation`` reproduces, field by field, the metrics.json and structures.csv recorded by
tests/metrics/data/record_evaluate_golden.py with the pairwise uniqueness/novelty code (perov_5 crystals
with equivalent copies; 200 carbon_24 val crystals against 200 test crystals, many true duplicates).

Counts, flags, names and indices must be identical; floating-point values identical up to the last bits
(relative 1e-12), which another CPU or numpy build can round differently (e.g. the order of a sum)."""
from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path

import pytest

from tests.metrics.data.record_evaluate_golden import OUT, cases

# parameters added since the recording: they describe how the numbers were computed, not the numbers
NEW_PARAMS = {"unique": {"method", "workers", "scale"}, "novel": {"method", "workers", "scale"}}


@pytest.fixture(scope="module")
def golden() -> dict:
    with gzip.open(OUT, "rt") as fh:
        return json.load(fh)


def _portable(value):
    """Cache files are named by a key that includes library versions: only their presence is compared."""
    if isinstance(value, dict):
        return {k: "<cache file>" if k == "cache_file" else _portable(v) for k, v in value.items()}
    return value


def _params_without_new(params: dict) -> dict:
    return {name: _portable({k: v for k, v in p.items() if k not in NEW_PARAMS.get(name, ())})
            if isinstance(p, dict) else p for name, p in params.items() if name != "versions"}


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def assert_same(now, then, where: str = "") -> None:
    """Equal structure and non-float values; floats (also as CSV text) within relative 1e-12."""
    if isinstance(then, dict):
        assert isinstance(now, dict) and set(now) == set(then), where
        for k in then:
            assert_same(now[k], then[k], f"{where}.{k}")
    elif isinstance(then, list):
        assert isinstance(now, list) and len(now) == len(then), where
        for i, (a, b) in enumerate(zip(now, then)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(then, float) or (isinstance(then, str) and "." in then and _number(then) is not None):
        a, b = _number(now), _number(then)
        assert a is not None and (a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)), \
            f"{where}: {now!r} != {then!r}"
    else:
        assert now == then, f"{where}: {now!r} != {then!r}"


@pytest.mark.parametrize("case", ["perov_5_copies", "carbon_24_val_200"])
def test_metrics_json_and_rows_identical_to_the_recording(case, golden, tmp_path):
    from genlowdim.metrics.evaluate import evaluate_generation

    gen, ref, train, dataset = cases()[case]
    evaluate_generation(gen, ref, dataset=dataset, train_structures=train, out_dir=tmp_path,
                        cache_dir=tmp_path / "cache", show_progress=False, num_property_samples=100, workers=2)
    now = json.loads((tmp_path / "metrics.json").read_text())
    then = golden[case]["metrics_json"]
    assert now["mode"] == then["mode"]
    assert_same(now["metrics"], then["metrics"], "metrics")
    now_p, then_p = _params_without_new(now["params"]), _params_without_new(then["params"])
    for name in then_p:
        assert_same(now_p[name], then_p[name], name)
    rows = list(csv.DictReader(Path(tmp_path / "structures.csv").open()))
    assert_same(rows, golden[case]["rows"], "rows")
