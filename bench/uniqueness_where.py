"""Where the screened uniqueness path's time goes, in one process: reduction, lattice screens, fits that
match, fits that fail (CPU seconds of each, counted around the calls). With --compare, the same path is run
again with pymatgen's ``StructureMatcher.fit`` in place of ``fastfit.fit`` and the two duplicate_of arrays are
compared.

    python bench/uniqueness_where.py --carbon 2000 --compare
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTS = ("reduce", "screen", "fit, match", "fit, no match")


def instrumented(dedup, fit) -> tuple[dict, dict]:
    """Wraps dedup's reduction, screen and fit (``fit(matcher, crystal, crystal)``) with CPU timers."""
    seconds, calls = dict.fromkeys(PARTS, 0.0), dict.fromkeys(PARTS, 0)

    def timed(part, fn):
        def wrapper(*args):
            start = time.process_time()
            out = fn(*args)
            name = part if part != "fit" else ("fit, match" if out else "fit, no match")
            seconds[name] += time.process_time() - start
            calls[name] += 1
            return out
        return wrapper

    dedup._reduce_chunk = timed("reduce", dedup._reduce_chunk)
    dedup.may_match = timed("screen", dedup.may_match)
    dedup.fit = timed("fit", fit)
    return seconds, calls


def run(structures: list, fit, label: str) -> np.ndarray:
    from genlowdim.metrics import dedup
    from genlowdim.metrics.matching import uniqueness

    saved = dedup._reduce_chunk, dedup.may_match, dedup.fit
    seconds, calls = instrumented(dedup, fit)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        dup = uniqueness(structures, workers=1).per_item["duplicate_of"]
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        dedup._reduce_chunk, dedup.may_match, dedup.fit = saved
    print(f"{label}: wall {wall:.1f} s, CPU {cpu:.1f} s, {int((dup < 0).sum())} distinct")
    for part in PARTS:
        each = f", {calls[part]} calls, {1e3 * seconds[part] / calls[part]:.2f} ms each" if calls[part] else ""
        print(f"  {part}: {seconds[part]:.1f} s ({100 * seconds[part] / cpu:.0f}%){each}")
    return dup


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--carbon", type=int, default=2000, help="first N carbon_24 val crystals")
    p.add_argument("--compare", action="store_true", help="also run the path with pymatgen's fit")
    args = p.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    from genlowdim.metrics.fastfit import fit
    from genlowdim.structures.datasets import load_structures

    structures = load_structures("carbon_24:val")[1][:args.carbon]
    new = run(structures, fit, "screened path, fastfit.fit")
    if args.compare:
        def pymatgen_fit(m, c1, c2):
            return bool(m.fit(c1.structure, c2.structure, skip_structure_reduction=True))

        old = run(structures, pymatgen_fit, "screened path, pymatgen's fit")
        print("duplicate_of identical:", bool(np.array_equal(new, old)))
    print(f"load average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
