"""The baselines of bench/kernels.py compute the same score as molrg_score (small sizes, float64)."""
import importlib.util
from pathlib import Path

import torch

from genlowdim.core import molrg_score

from .helpers import random_bases

BENCH = Path(__file__).resolve().parents[2] / "bench" / "kernels.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loop_and_dense_baselines_agree_with_ours():
    bench = load_bench()
    bases = random_bases(12, 3, 2, seed=13)
    log_weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64).log()
    x = 2 * torch.randn(7, 12, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    ours = molrg_score(x, bases, log_weights, 0.5)
    torch.testing.assert_close(bench.score_loop(x, bases, log_weights, 0.5), ours)
    torch.testing.assert_close(bench.score_dense(x, bases, log_weights, 0.5), ours)
    rows = [dict(method=m, batch=8, device="cpu", seconds=t, points_per_s=8 / t, peak_mib=1.0, rel_err=0.0,
                 gb_per_s=None) for m, t in (("ours", 0.1), ("dense", 1.0))]
    assert "10.0x" in bench.table(rows)
