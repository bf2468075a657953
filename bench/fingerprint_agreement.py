"""Agreement of the fast CrystalNN "ops" fingerprint with matminer, per structure set.

Sets: perov_5 val and test (CIF), perturbed perov_5 crystals (Gaussian noise 0.05–0.5 Å on the
Cartesian coordinates, seeded), carbon_24 val and test, random skewed cells (1–20 atoms, mixed elements,
angles 55–125°, seeded), and random 20-atom cells both sparse (the same generator) and at mp_20-like
densities (10–25 Å³ per atom; ``--num-random`` / 3 each). For each set: max |fast − matminer| over the 61 site-averaged values, the share
of sites matminer computed on the fast path (fallback) and of sites whose faces came from pymatgen's
Voronoi step (replayed), whether the two paths fail on the same structures, and the time per structure
of both (one process each, the same structures, measured in the same run, after a warm-up call of
both on two structures so that imports are not timed).

    .venv/bin/python bench/fingerprint_agreement.py --limit 100          # minutes
    .venv/bin/python bench/fingerprint_agreement.py                      # every structure (hours)
    .venv/bin/python bench/fingerprint_agreement.py --write-fixture tests/metrics/data/crystalnn_ops_fixture.json.gz
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = [ROOT / "datasets", ROOT.parent / "shared" / "datasets", Path("/work/shared/datasets")]
ELEMENTS = ["H", "Li", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Ti",
            "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "Se", "Br", "Sr", "Y", "Zr", "Nb",
            "Mo", "Ag", "Sn", "Sb", "Te", "I", "Cs", "Ba", "La", "Hf", "Ta", "W", "Pt", "Au", "Pb", "Bi"]


def read_split(name: str, split: str, limit: int | None = None) -> list:
    import pandas as pd
    from pymatgen.core import Structure

    for base in DATA:
        path = base / name / f"{split}.csv.gz"
        if path.is_file():
            frame = pd.read_csv(path, nrows=limit)
            return [Structure.from_str(c, fmt="cif") for c in frame["cif"]]
    raise FileNotFoundError(f"{name}/{split}.csv.gz not found in {DATA}")


def perturbed(structures: list, num: int, seed: int) -> list:
    """``num`` crystals drawn from ``structures``, Cartesian noise with sigma uniform in [0.05, 0.5] Å."""
    from pymatgen.core import Structure

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        s = structures[int(rng.integers(len(structures)))]
        sigma = rng.uniform(0.05, 0.5)
        cart = s.cart_coords + rng.normal(0, sigma, (len(s), 3))
        out.append(Structure(s.lattice, s.species, cart, coords_are_cartesian=True))
    return out


def random_cells(num: int, seed: int, num_atoms: int | None = None, dense: bool = False) -> list:
    """Skewed triclinic cells with 1–20 atoms (or ``num_atoms``) of 1–4 elements, no two atoms closer
    than 1.2 Å. By default the lengths are drawn (2.5–7 Å, scaled with the atom count), which gives
    sparse cells (often > 40 Å³ per atom); ``dense`` draws the volume per atom in 10–25 Å³ (mp_20-like)
    instead and places the atoms one by one, each at least 1.2 Å from the others."""
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    out = []
    while len(out) < num:
        n = num_atoms or int(rng.integers(1, 21))
        els = list(rng.choice(ELEMENTS, size=int(rng.integers(1, 5)), replace=False))
        species = [els[int(rng.integers(len(els)))] for _ in range(n)]
        a, b, c = rng.uniform(2.5, 7.0, 3) * max(1.0, (n / 4) ** (1 / 3))
        al, be, ga = rng.uniform(55, 125, 3)
        try:
            lat = Lattice.from_parameters(a, b, c, al, be, ga)
        except Exception:  # noqa: BLE001 - impossible angle triple
            continue
        if dense:
            if lat.volume < 1e-6 * a * b * c:  # a (numerically) flat angle triple
                continue
            lat = Lattice(lat.matrix * (n * rng.uniform(10.0, 25.0) / lat.volume) ** (1 / 3))
            frac = _placed(lat, n, rng)
            if frac is None:
                continue
        else:
            if lat.volume < 8.0 * n:
                continue
            frac = rng.random((n, 3))
        s = Structure(lat, species, frac)
        if n > 1 and np.min(s.distance_matrix[np.triu_indices(n, 1)]) < 1.2:
            continue
        out.append(s)
    return out


def _placed(lattice, n: int, rng, min_dist: float = 1.2, tries: int = 200):
    """n fractional positions, each drawn until it is ``min_dist`` from the ones before (None if a
    position cannot be found in ``tries`` draws)."""
    frac = np.zeros((0, 3))
    for _ in range(n):
        for _ in range(tries):
            f = rng.random(3)
            if not len(frac) or lattice.get_all_distances(f[None], frac).min() >= min_dist:
                frac = np.vstack([frac, f])
                break
        else:
            return None
    return frac


def reference_fingerprints(structures: list) -> tuple[list, float]:
    from genlowdim.metrics.crystalnn import reference_site

    start, out = time.perf_counter(), []
    for s in structures:
        try:
            out.append(np.mean([reference_site(s, i) for i in range(len(s))], axis=0))
        except Exception as err:  # noqa: BLE001
            out.append(err)
    return out, (time.perf_counter() - start) / max(1, len(structures))


def fast_fingerprints(structures: list):
    from genlowdim.metrics.crystalnn import FastStats, fast_structure_fingerprints

    stats = FastStats()
    start = time.perf_counter()
    out = fast_structure_fingerprints(structures, stats)
    return out, (time.perf_counter() - start) / max(1, len(structures)), stats


def compare(name: str, structures: list) -> dict:
    fast, t_fast, stats = fast_fingerprints(structures)
    ref, t_ref = reference_fingerprints(structures)
    fail_f = [isinstance(x, Exception) for x in fast]
    fail_r = [isinstance(x, Exception) for x in ref]
    diffs = [float(np.abs(a - b).max()) for a, b, f, r in zip(fast, ref, fail_f, fail_r) if not (f or r)]
    return {"set": name, "structures": len(structures), "sites": stats.sites,
            "max_abs_diff": max(diffs) if diffs else float("nan"),
            "fallback_rate": stats.fallback_sites / max(1, stats.sites),
            "replayed_rate": stats.replayed_sites / max(1, stats.sites),
            "failures_fast": int(sum(fail_f)), "failures_ref": int(sum(fail_r)),
            "same_failures": fail_f == fail_r, "ms_fast": 1e3 * t_fast, "ms_ref": 1e3 * t_ref,
            "reasons": dict(stats.reasons)}


def build_sets(limit: int | None, num_perturbed: int, num_random: int, seed: int,
               carbon_limit: int | None = None, only: list[str] | None = None) -> dict[str, list]:
    """The sets by name, built lazily: only those whose name contains one of ``only`` (all by default)."""
    carbon_limit = limit if carbon_limit is None else carbon_limit
    perov = {}

    def perov_split(split):
        if split not in perov:
            perov[split] = read_split("perov_5", split, limit)
        return perov[split]

    makers = {
        "perov_5 val": lambda: perov_split("val"),
        "perov_5 test": lambda: perov_split("test"),
        "perov_5 perturbed 0.05-0.5 Å": lambda: perturbed(perov_split("val") + perov_split("test"),
                                                          num_perturbed, seed),
        "carbon_24 val": lambda: read_split("carbon_24", "val", carbon_limit),
        "carbon_24 test": lambda: read_split("carbon_24", "test", carbon_limit),
        "random skewed 1-20 atoms": lambda: random_cells(num_random, seed),
        "random 20 atoms, sparse": lambda: random_cells(num_random // 3, seed + 3, num_atoms=20),
        "random 20 atoms, 10-25 Å³/atom": lambda: random_cells(num_random // 3, seed + 4, num_atoms=20,
                                                              dense=True)}
    return {name: make() for name, make in makers.items() if not only or any(o in name for o in only)}


def write_fixture(path: Path, seed: int) -> None:
    """~200 structures (perov_5 test, perturbed perov_5, carbon_24 val, random cells) with matminer's
    site-averaged fingerprints and the library versions that produced them."""
    from genlowdim.metrics.result import versions

    perov = read_split("perov_5", "test", 400)
    sets = {"perov_5 test": perov[300:370], "perov_5 perturbed": perturbed(perov[:300], 40, seed + 1),
            "carbon_24 val": read_split("carbon_24", "val", 40),
            "random skewed": random_cells(50, seed + 2)}
    items = []
    for name, structures in sets.items():
        ref, _ = reference_fingerprints(structures)
        for s, fp in zip(structures, ref):
            items.append({"set": name, "lattice": s.lattice.matrix.tolist(),
                          "species": [site.specie.symbol for site in s],
                          "frac_coords": s.frac_coords.tolist(),
                          "fingerprint": None if isinstance(fp, Exception) else fp.tolist(),
                          "error": type(fp).__name__ if isinstance(fp, Exception) else ""})
    v = versions()
    doc = {"description": "matminer CrystalNNFingerprint.from_preset('ops'), site mean",
           "versions": {k: v.get(k) for k in ("pymatgen", "matminer", "numpy", "scipy")}, "items": items}
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        json.dump(doc, fh)
    print(f"wrote {len(items)} structures to {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=None, help="rows per dataset split (default: all)")
    p.add_argument("--num-perturbed", type=int, default=2000)
    p.add_argument("--num-random", type=int, default=500, help="random 1-20-atom cells; a third of this for "
                   "each 20-atom set")
    p.add_argument("--carbon-limit", type=int, default=None, help="rows per carbon_24 split (default: --limit)")
    p.add_argument("--only", nargs="+", default=None, help="sets whose name contains one of these words")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-fixture", default=None, metavar="PATH")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_fingerprint_agreement.json"))
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.write_fixture:
        write_fixture(Path(args.write_fixture), args.seed)
        return 0
    rows = []
    print(f"{'set':<30} {'n':>6} {'sites':>7} {'max |Δ|':>9} {'fallback':>9} {'replayed':>9} "
          f"{'fail f/r':>9} {'same':>5} {'ms fast':>8} {'ms ref':>8} {'ratio':>6}")
    sets = build_sets(args.limit, args.num_perturbed, args.num_random, args.seed, args.carbon_limit, args.only)
    warm = next(iter(sets.values()))[:2]  # imports and caches of both paths, outside the timings
    fast_fingerprints(warm)
    reference_fingerprints(warm)
    for name, structures in sets.items():
        r = compare(name, structures)
        rows.append(r)
        print(f"{name:<30} {r['structures']:>6} {r['sites']:>7} {r['max_abs_diff']:>9.1e} "
              f"{r['fallback_rate']:>9.2%} {r['replayed_rate']:>9.2%} "
              f"{r['failures_fast']:>4}/{r['failures_ref']:<4} {str(r['same_failures']):>5} "
              f"{r['ms_fast']:>8.1f} {r['ms_ref']:>8.1f} {r['ms_ref'] / r['ms_fast']:>6.1f}", flush=True)
    from genlowdim.runtime import write_json

    write_json(args.out, {"args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
