"""CDVAE fingerprints: CrystalNN "ops" structure fingerprints and normalised Magpie composition ones.

- Structure: matminer ``CrystalNNFingerprint.from_preset("ops")`` on every site, averaged over sites
  -> (61,) per crystal (CDVAE ``Crystal.get_fingerprints``). A crystal whose fingerprint raises is
  counted as failed (its row is NaN) and, as in CDVAE, counts as invalid in generation metrics.
- Composition: matminer ``ElementProperty.from_preset("magpie")`` -> (132,), normalised with CDVAE's
  fixed ``CompScalerMeans``/``CompScalerStds`` (``data/cdvae_comp_scaler.json``); NaN -> 0 after scaling,
  as CDVAE's ``StandardScaler(replace_nan_token=0)`` does.

Two implementations of the structure fingerprint (``method``): ``"fast"`` (default,
``genlowdim.metrics.crystalnn``: vectorised, equal to matminer within 1e-6, matminer itself for the sites a
floating-point tie could change) and ``"reference"`` (matminer on every site). Magpie vectors are computed
once per distinct reduced composition (they depend on the fractions only).

Speed without changing values: structures that are identical after rounding (lattice, species, wrapped
fractional coordinates to 1e-8, site order ignored) are computed once; chunks of structures go to a
process pool (``workers``, spawn start method: no process holding torch threads is forked); a whole
set's fingerprints can be cached on disk keyed on its content, the fingerprint settings and the method
(``cached_fingerprints``).
"""
from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from genlowdim.runtime import cache_dir, usable_cpus

STRUCT_DIM = 61
COMP_DIM = 132
SCALER_FILE = Path(__file__).parent / "data" / "cdvae_comp_scaler.json"
CACHE_FORMAT = 1
METHODS = ("fast", "reference")
SETTINGS = "CrystalNNFingerprint.from_preset('ops') site mean | ElementProperty.from_preset('magpie')"


@dataclass
class Fingerprints:
    """Fingerprints of N crystals. struct: (N, 61), comp_raw: (N, 132) un-normalised Magpie values;
    rows of failed crystals are NaN; ``errors[i]`` holds the failure message ('' when fine)."""

    struct: np.ndarray
    comp_raw: np.ndarray
    errors: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        """(N,) bool: both fingerprints exist."""
        return np.array([e == "" for e in self.errors], dtype=bool)

    @property
    def comp(self) -> np.ndarray:
        """(N, 132) Magpie fingerprints normalised with CDVAE's fixed scaler."""
        return normalise_composition(self.comp_raw)


@lru_cache(maxsize=1)
def _scaler() -> tuple[np.ndarray, np.ndarray]:
    raw = json.loads(SCALER_FILE.read_text())
    return np.asarray(raw["means"], dtype=float), np.asarray(raw["stds"], dtype=float)


def normalise_composition(comp_raw: np.ndarray) -> np.ndarray:
    """CDVAE ``CompScaler.transform``: (x - mean) / std with the published constants, NaN -> 0."""
    means, stds = _scaler()
    scaled = (np.asarray(comp_raw, dtype=float) - means) / stds
    return np.where(np.isnan(scaled), 0.0, scaled)


@lru_cache(maxsize=1)
def _featurizers():
    from matminer.featurizers.composition.composite import ElementProperty
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops"), ElementProperty.from_preset("magpie")


def structure_fingerprint(structure) -> np.ndarray:
    """(61,) site-averaged CrystalNN "ops" fingerprint of one crystal (raises on failure)."""
    crystal_nn, _ = _featurizers()
    sites = [crystal_nn.featurize(structure, i) for i in range(len(structure))]
    return np.asarray(sites, dtype=float).mean(axis=0)


def composition_fingerprint(structure) -> np.ndarray:
    """(132,) raw Magpie features of the crystal's composition (fractions, so unreduced counts are fine)."""
    _, magpie = _featurizers()
    return np.asarray(magpie.featurize(structure.composition), dtype=float)


@lru_cache(maxsize=None)
def _magpie_row(element) -> np.ndarray:
    """(22,) the Magpie values of one element, as matminer's data source returns them."""
    _, magpie = _featurizers()
    return np.array([magpie.data_source.get_elemental_property(element, attr) for attr in magpie.features],
                    dtype=float)


def fast_composition_fingerprint(structure) -> np.ndarray:
    """:func:`composition_fingerprint` with the 22 properties' statistics computed together.

    ``ElementProperty.featurize`` loops over 22 properties × 6 statistics in Python (≈ 5 ms a
    composition, more than the fast structure fingerprint). Here the elements' values come from the same
    data source (cached per element) and each statistic is matminer's own numpy expression applied to all
    properties at once: the sums run over the same (≤ a few) elements in the same order, so the values are
    the same bits (checked against matminer in the tests)."""
    _, magpie = _featurizers()
    if list(magpie.stats) != ["minimum", "maximum", "range", "mean", "avg_dev", "mode"]:
        return composition_fingerprint(structure)    # a matminer release with other statistics
    elements, fractions = zip(*structure.composition.element_composition.items())
    x = np.stack([_magpie_row(e) for e in elements])              # (n_elements, 22)
    w = np.asarray(fractions, dtype=float)
    nan = np.isnan(x).any(axis=0)
    low = np.where(nan, np.nan, x.min(axis=0))
    high = np.where(nan, np.nan, x.max(axis=0))
    scl = w.sum()
    mean = np.multiply(x, w[:, None]).sum(axis=0) / scl                          # np.average
    avg_dev = np.multiply(np.abs(np.subtract(x, mean)), w[:, None]).sum(axis=0) / scl
    mode = x[np.isclose(w, w.max())].min(axis=0)
    return np.stack([low, high, high - low, mean, avg_dev, mode], axis=1).reshape(-1)


def _one(structure) -> tuple[np.ndarray, np.ndarray, str]:
    nan_s, nan_c = np.full(STRUCT_DIM, np.nan), np.full(COMP_DIM, np.nan)
    if structure is None:
        return nan_s, nan_c, "no structure"
    try:
        comp = composition_fingerprint(structure)
        struct = structure_fingerprint(structure)
    except Exception as err:  # noqa: BLE001 - CDVAE counts any fingerprint failure, never crashes
        return nan_s, nan_c, f"{type(err).__name__}: {err}"[:300] or "failed"
    if struct.shape != (STRUCT_DIM,) or not np.isfinite(struct).all():
        return nan_s, nan_c, "non-finite structure fingerprint"
    return struct, comp, ""


def _chunk_worker(structures: list) -> list[tuple[np.ndarray, np.ndarray, str]]:
    import warnings

    with warnings.catch_warnings():
        # CrystalNN warns on every site of a structure without oxidation states (CDVAE's case too)
        warnings.simplefilter("ignore")
        return [_one(s) for s in structures]


def _magpie_key(structure) -> tuple:
    """Exact key of the Magpie input: the reduced composition (amounts as stored, in stored order)."""
    return tuple((str(el), float(amt)) for el, amt in structure.composition.reduced_composition.items())


def _fast_chunk(structures: list) -> tuple[list[tuple[np.ndarray, np.ndarray, str]], dict]:
    """The fast path on a chunk: (rows as ``_one`` returns them, fallback counts)."""
    import warnings

    from genlowdim.metrics.crystalnn import FastStats, fast_structure_fingerprints

    stats = FastStats()
    nan_s, nan_c = np.full(STRUCT_DIM, np.nan), np.full(COMP_DIM, np.nan)
    rows: list = [None] * len(structures)
    todo = [i for i, s in enumerate(structures) if s is not None]
    for i, s in enumerate(structures):
        if s is None:
            rows[i] = (nan_s, nan_c, "no structure")
    comps: dict[tuple, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structs = fast_structure_fingerprints([structures[i] for i in todo], stats)
        for i, struct in zip(todo, structs):
            s = structures[i]
            try:
                key = _magpie_key(s)
                if key not in comps:
                    try:
                        comps[key] = fast_composition_fingerprint(s)
                    except Exception as err:  # noqa: BLE001
                        comps[key] = err
                comp = comps[key]
                if isinstance(comp, Exception):
                    raise comp
                if isinstance(struct, Exception):
                    raise struct
            except Exception as err:  # noqa: BLE001 - counted like the reference path does
                rows[i] = (nan_s, nan_c, f"{type(err).__name__}: {err}"[:300] or "failed")
                continue
            if struct.shape != (STRUCT_DIM,) or not np.isfinite(struct).all():
                rows[i] = (nan_s, nan_c, "non-finite structure fingerprint")
            else:
                rows[i] = (struct, comp, "")
    info = {"sites": stats.sites, "fallback_sites": stats.fallback_sites,
            "replayed_voronoi_sites": stats.replayed_sites, "fallback_reasons": dict(stats.reasons)}
    return rows, info


def structure_key(structure) -> str:
    """Content key for de-duplication: lattice, species and wrapped fractional coordinates rounded to
    1e-8, with sites sorted, so a permuted or bit-identical copy maps to the same key."""
    if structure is None:
        return "none"
    frac = np.round(np.mod(structure.frac_coords, 1.0), 8) % 1.0
    rows = sorted((site.species_string, *map(float, f)) for site, f in zip(structure, frac))
    data = np.round(structure.lattice.matrix, 8).tobytes() + repr(rows).encode()
    return hashlib.sha1(data).hexdigest()


def compute_fingerprints(structures: Sequence, workers: int | None = None, chunk_size: int | None = None,
                         show_progress: bool = True, desc: str = "fingerprints",
                         method: str = "fast") -> Fingerprints:
    """Fingerprints of ``structures`` (``None`` entries fail), de-duplicated and spread over processes.

    workers: process count (``None`` = all usable cores; 1 = in this process).
    chunk_size: crystals per task (default: about 8 tasks per worker, at most 32 crystals with the
    reference method, 400 with the fast one, whose order parameters are batched over a chunk).
    method: ``"fast"`` (vectorised, matminer for the fragile sites) or ``"reference"`` (matminer).
    The result's ``info`` holds the method and, for the fast one, how many sites matminer computed.
    """
    from genlowdim.runtime import progress

    if method not in METHODS:
        raise ValueError(f"fingerprint method {method!r}: expected one of {METHODS}")

    keys = [structure_key(s) for s in structures]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    unique_idx = list(first.values())
    todo = [structures[i] for i in unique_idx]
    workers = usable_cpus() if workers is None else max(1, int(workers))
    cap = 400 if method == "fast" else 32
    chunk_size = chunk_size or max(1, min(cap, len(todo) // (8 * workers)))
    if method == "fast" and workers > 1 and len(todo) < 200 * workers:
        workers = 1  # starting spawned workers costs more than the work
    chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
    results: list = [None] * len(chunks)
    task = _fast_chunk if method == "fast" else _chunk_worker
    bar = progress(total=len(todo), desc=desc, **({} if show_progress else {"disable": True}))
    if workers == 1 or len(chunks) <= 1:
        for c, chunk in enumerate(chunks):
            results[c] = task(chunk)
            bar.update(len(chunk))
    else:
        results = _run_pool(chunks, workers, bar, task)
    bar.close()
    info: dict = {"method": method, "workers": workers}
    if method == "fast":
        info.update(sites=0, fallback_sites=0, replayed_voronoi_sites=0, fallback_reasons={})
        for _, part in results:
            for k in ("sites", "fallback_sites", "replayed_voronoi_sites"):
                info[k] += part[k]
            for k, v in part["fallback_reasons"].items():
                info["fallback_reasons"][k] = info["fallback_reasons"].get(k, 0) + v
        results = [rows for rows, _ in results]
    flat = [r for chunk in results for r in chunk]
    by_key = {keys[i]: flat[j] for j, i in enumerate(unique_idx)}
    rows = [by_key[k] for k in keys]
    struct = np.array([r[0] for r in rows]).reshape(len(rows), STRUCT_DIM)
    comp = np.array([r[1] for r in rows]).reshape(len(rows), COMP_DIM)
    return Fingerprints(struct, comp, [r[2] for r in rows], info)


def _run_pool(chunks: list, workers: int, bar, task=_chunk_worker) -> list:
    import multiprocessing as mp

    results: list = [None] * len(chunks)
    # spawn: the calling process may hold torch's thread pools, which a forked child would inherit in an
    # undefined state; spawned workers import only numpy/scipy/pymatgen/matminer.
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)),
                             mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(task, chunk): c for c, chunk in enumerate(chunks)}
        for fut in as_completed(futures):
            c = futures[fut]
            results[c] = fut.result()
            bar.update(len(chunks[c]))
    return results


def content_key(structures: Sequence, extra: str = "") -> str:
    """SHA-256 over every structure's lattice, species and coordinates (exact bytes, in order) and the
    fingerprint settings and library versions."""
    from genlowdim.metrics.result import versions

    v = versions()
    h = hashlib.sha256(f"{CACHE_FORMAT}|{SETTINGS}|{v.get('matminer')}|{v.get('pymatgen')}|{extra}".encode())
    for s in structures:
        if s is None:
            h.update(b"none;")
            continue
        h.update(np.asarray(s.lattice.matrix, dtype=np.float64).tobytes())
        h.update(",".join(site.species_string for site in s).encode())
        h.update(np.asarray(s.frac_coords, dtype=np.float64).tobytes())
    return h.hexdigest()


def cached_fingerprints(structures: Sequence, cache_key: str | None = None, directory: str | Path | None
                        = None, **kwargs) -> tuple[Fingerprints, dict]:
    """``compute_fingerprints`` through an on-disk cache (written atomically).

    Returns the fingerprints and ``{"cache_file", "cache_hit"}``. ``cache_key`` is combined with the
    content hash, so a stale name can never return another set's fingerprints.
    """
    from genlowdim.runtime import atomic_write_bytes

    method = kwargs.get("method", "fast")
    key = content_key(structures, extra=f"{cache_key or ''}|{method}")
    path = Path(directory or cache_dir()) / "fingerprints" / f"{key[:32]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                fps = Fingerprints(data["struct"], data["comp_raw"], [str(e) for e in data["errors"]],
                                   json.loads(str(data["info"])) if "info" in data else {})
            if len(fps.errors) == len(structures):
                return fps, {"cache_file": str(path), "cache_hit": True}
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: recompute and overwrite
    fps = compute_fingerprints(structures, **kwargs)
    buf = io.BytesIO()
    np.savez(buf, struct=fps.struct, comp_raw=fps.comp_raw, errors=np.array(fps.errors, dtype=str),
             info=np.array(json.dumps(fps.info)))
    atomic_write_bytes(path, buf.getvalue())
    return fps, {"cache_file": str(path), "cache_hit": False}
