"""Writes evaluate_golden.json.gz: ``evaluate_generation``'s metrics.json and structures.csv for two fixed
inputs (perov_5 with equivalent copies; carbon_24 val against test), recorded with the pairwise
uniqueness/novelty code that preceded the reduce-once, pruned matching. tests/metrics/test_evaluate_golden.py
checks that today's code reproduces every field.

    python tests/metrics/data/record_evaluate_golden.py     # minutes (the old path is quadratic)
"""
from __future__ import annotations

import csv
import gzip
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).with_name("evaluate_golden.json.gz")


def cases() -> dict:
    """name -> (generated, reference, train, dataset)."""
    from tests.metrics._data import carbon_structures, perov_structures, perov_with_copies

    return {"perov_5_copies": (perov_with_copies(150, 60, seed=0), list(perov_structures(100, skip=150)),
                               list(perov_structures(100)), "perov_5"),
            "carbon_24_val_200": (list(carbon_structures("val", 200)), list(carbon_structures("test", 200)),
                                  list(carbon_structures("test", 200)), "carbon_24")}


def run_case(gen, ref, train, dataset) -> dict:
    from genlowdim.metrics.evaluate import evaluate_generation

    with tempfile.TemporaryDirectory() as tmp:
        report = evaluate_generation(gen, ref, dataset=dataset, train_structures=train, out_dir=tmp,
                                     cache_dir=Path(tmp) / "cache", show_progress=False, num_property_samples=100)
        rows = list(csv.DictReader((Path(tmp) / "structures.csv").open()))
        metrics_json = json.loads((Path(tmp) / "metrics.json").read_text())
    return {"metrics_json": metrics_json, "rows": rows, "report_metrics": report["metrics"]}


if __name__ == "__main__":
    golden = {name: run_case(*args) for name, args in cases().items()}
    with gzip.open(OUT, "wt") as fh:
        json.dump(golden, fh)
    print(f"wrote {OUT}")
