"""``evaluate_generation`` reproduces, field by field, the metrics.json and structures.csv recorded by
tests/metrics/data/record_evaluate_golden.py with the pairwise uniqueness/novelty code (perov_5 crystals
with equivalent copies; 200 carbon_24 val crystals against 200 test crystals, many true duplicates)."""
from __future__ import annotations

import csv
import gzip
import json
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
    """Cache files are compared by name (the folder is a temporary one)."""
    if isinstance(value, dict):
        return {k: Path(v).name if k == "cache_file" else _portable(v) for k, v in value.items()}
    return value


def _params_without_new(params: dict) -> dict:
    return {name: _portable({k: v for k, v in p.items() if k not in NEW_PARAMS.get(name, ())})
            if isinstance(p, dict) else p for name, p in params.items() if name != "versions"}


@pytest.mark.parametrize("case", ["perov_5_copies", "carbon_24_val_200"])
def test_metrics_json_and_rows_identical_to_the_recording(case, golden, tmp_path):
    from genlowdim.metrics.evaluate import evaluate_generation

    gen, ref, train, dataset = cases()[case]
    evaluate_generation(gen, ref, dataset=dataset, train_structures=train, out_dir=tmp_path,
                        cache_dir=tmp_path / "cache", show_progress=False, num_property_samples=100, workers=2)
    now = json.loads((tmp_path / "metrics.json").read_text())
    then = golden[case]["metrics_json"]
    assert now["mode"] == then["mode"]
    assert now["metrics"] == then["metrics"]   # exact: same floats
    now_p, then_p = _params_without_new(now["params"]), _params_without_new(then["params"])
    for name in then_p:
        assert now_p[name] == then_p[name], name
    rows = list(csv.DictReader(Path(tmp_path / "structures.csv").open()))
    assert rows == golden[case]["rows"]
