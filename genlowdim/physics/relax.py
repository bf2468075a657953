"""Relax many crystals at once: ASE optimisers in lockstep over one batched potential call per step.

Each structure gets its own ASE optimiser (FIRE or BFGS) on a ``FrechetCellFilter`` (cell and positions
relax together; the filter turns the stress into forces on the cell). Instead of letting each optimiser
call the potential for itself, :func:`relax_structures` evaluates every still-running structure in one
batched CHGNet call, hands each its result (an ASE ``SinglePointCalculator``) and then lets each optimiser
take its step. Every structure so follows the trajectory a one-at-a-time ``optimizer.run(fmax, steps)``
would (same convergence test before each step, same step cap), while the potential's cost per step is
shared by the batch.

Convergence: the largest force on the filter's degrees of freedom (atoms and cell, eV/Å) ≤ ``fmax``.

Symmetry (``RelaxSettings.symmetry``): each structure's ``Atoms`` carries ASE's ``FixSymmetry`` constraint,
which first refines the structure to the space group spglib finds at ``symprec`` (atoms and cell move by
less than ``symprec``) and then symmetrises forces, stress and every step, so the space group is kept.
The constraint lives on the ``Atoms``, not in the calculator: the batched results handed over as
``SinglePointCalculator``s are symmetrised on their way into the filter exactly as a calculator's would
be, so the lockstep batch honours it (``tests/physics/test_symmetry.py`` compares it with ASE's
one-at-a-time path).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Callable, Sequence

from genlowdim.config import check_fields
from genlowdim.structures.symmetry import SYMPREC

__all__ = ["RelaxSettings", "RelaxResult", "relax_structures", "rmsd_to_relaxed", "space_group_number",
           "constraint_description", "OPTIMIZERS"]

OPTIMIZERS = ("FIRE", "BFGS")
# a cell whose volume grows or shrinks beyond this factor has left physics: stop and record it
MAX_VOLUME_RATIO = 8.0


@dataclass(frozen=True)
class RelaxSettings:
    """optimizer: 'FIRE' or 'BFGS' (ASE); fmax: convergence threshold, eV/Å; steps: at most this many
    optimiser steps; batch_size: structures relaxed in lockstep; stol/ltol/angle_tol: StructureMatcher
    tolerances of the RMSD to the relaxed structure (angle_tol in degrees); workers: processes (one torch
    thread each) that share the batches, split where needed so that each has one; symmetry: keep each
    structure's space group with ASE's ``FixSymmetry``; symprec: Å, the tolerance of that space group
    (and of the space groups recorded before and after relaxation, with or without ``symmetry``); pressure:
    GPa, the hydrostatic pressure the cell relaxes under (``FrechetCellFilter``'s ``scalar_pressure``: the
    minimum of the enthalpy E + PV; 0, the default, is the plain energy minimum)."""

    optimizer: str = "FIRE"
    fmax: float = 0.05
    steps: int = 500
    batch_size: int = 64
    workers: int = 1
    stol: float = 0.5
    ltol: float = 0.3
    angle_tol: float = 10.0
    symmetry: bool = False
    symprec: float = SYMPREC
    pressure: float = 0.0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}: expected one of {OPTIMIZERS}")
        if not math.isfinite(self.pressure):
            raise ValueError(f"pressure {self.pressure!r}: expected a finite number of GPa")
        if not isinstance(self.symmetry, bool):
            raise ValueError(f"symmetry {self.symmetry!r}: expected true or false")
        check_fields(self, fmax="positive", steps="non_negative", batch_size="positive", workers="positive",
                     stol="positive", ltol="positive", angle_tol="positive", symprec="positive")

    def to_dict(self) -> dict:
        """The record of the settings (what decides the result; ``batch_size`` and ``workers`` only change
        speed)."""
        out = asdict(self)
        out.pop("batch_size")
        out.pop("workers")
        if out.pop("pressure"):   # absent means 0 GPa, so records and caches made at zero pressure stay valid
            out.update(pressure=self.pressure, pressure_unit="GPa")
        out.update(cell_filter="ase.filters.FrechetCellFilter", fmax_unit="eV/Å", symprec_unit="Å",
                   constraint=constraint_description(self), rmsd=rmsd_description(self))
        return out


def constraint_description(settings: RelaxSettings) -> str | None:
    """What holds the structures during relaxation: None (free cell and positions) or the constraint."""
    if not settings.symmetry:
        return None
    return (f"ase.constraints.FixSymmetry(symprec={settings.symprec}): the start refined to the space group "
            f"spglib finds within {settings.symprec} Å, then forces, stress and steps symmetrised")


@dataclass
class RelaxResult:
    """One structure's relaxation. Energies in eV/atom; ``rmsd``: Å (None when the matcher finds no
    mapping); ``volume_change``: relaxed / initial volume - 1; ``error``: why it failed (None if not)."""

    relaxed: Any = None
    energy_initial: float | None = None
    energy_final: float | None = None
    rmsd: float | None = None
    volume_change: float | None = None
    steps: int = 0
    converged: bool = False
    error: str | None = None
    extra: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        """JSON-ready record (without the structure)."""
        return {"energy_per_atom_initial": self.energy_initial, "energy_per_atom_final": self.energy_final,
                "rmsd_angstrom": self.rmsd, "volume_change": self.volume_change, "steps": self.steps,
                "converged": self.converged, "error": self.error, **self.extra}


def make_filter(atoms, reuse_log: bool = True, scalar_pressure: float = 0.0):
    """``FrechetCellFilter`` on ``atoms`` whose forces are computed once per potential result and whose
    positions reuse the forces' matrix logarithm.

    An optimiser asks for the filter's forces twice per step (the convergence test, then the step), and
    each time the filter takes a matrix logarithm of the deformation gradient F and nine Fréchet derivatives
    of the matrix exponential. The second answer is the first one, reused while the calculator, positions
    and cell are unchanged: the same numbers, bit for bit, for half the filter's work.

    The positions (asked once per step) carry log(N F) with N the number of atoms, which ASE takes as a
    second, slow logarithm of a matrix far from the identity. N is a positive scalar, so
    log(N F) = log(N) I + log(F) exactly, and log(F) is the one the forces of the same state took: with
    ``reuse_log`` the positions use it (equal to ASE's to float rounding, not bit for bit; without
    ``reuse_log`` they are ASE's own). ``scalar_pressure``: eV/Å³, as ASE's filter takes it."""
    return _once_filter_class()(atoms, reuse_log=reuse_log, scalar_pressure=scalar_pressure)


@lru_cache(maxsize=1)
def _once_filter_class():
    import numpy as np
    from ase.filters import FrechetCellFilter
    from scipy.linalg import logm

    class OnceFrechetCellFilter(FrechetCellFilter):
        _last: tuple | None = None
        _log: tuple | None = None      # (deformation gradient, its logarithm)

        def __init__(self, atoms, reuse_log: bool = True, scalar_pressure: float = 0.0):
            super().__init__(atoms, scalar_pressure=scalar_pressure)
            self.reuse_log = reuse_log
            self._utility.logm = self._logm    # the forces' log(F) goes through the cache

        def _logm(self, matrix):
            if self._log is None or not np.array_equal(self._log[0], matrix):
                self._log = (np.array(matrix, copy=True), logm(matrix))
            return self._log[1].copy()

        def _same_state(self, kwargs: dict) -> bool:
            if self._last is None:
                return False
            calc, positions, cell, asked = self._last[0]
            return (calc is self.atoms.calc and asked == kwargs and np.array_equal(positions, self.atoms.positions)
                    and np.array_equal(cell, self.atoms.cell.array))

        def get_forces(self, **kwargs):
            if not self._same_state(kwargs):
                state = (self.atoms.calc, self.atoms.positions.copy(), self.atoms.cell.array.copy(), kwargs)
                self._last = (state, super().get_forces(**kwargs))
            return self._last[1].copy()

        def get_positions(self):
            if not self.reuse_log:
                return super().get_positions()
            n = len(self.atoms)
            out = self._utility.get_positions_unitcellfilter(self.atoms.get_positions(), self.atoms.get_cell(),
                                                             cell_factor=float(n))
            log_f = self._logm(self._utility.deform_grad(self.atoms.get_cell()))
            out[n:] = (log_f + np.log(float(n)) * np.eye(3)) * self.exp_cell_factor
            return out

    return OnceFrechetCellFilter


class _Run:
    """One structure's optimiser state inside the lockstep loop."""

    def __init__(self, structure, settings: RelaxSettings):
        from pymatgen.io.ase import AseAtomsAdaptor

        import ase.optimize

        self.structure, self.result = structure, RelaxResult()
        self.atoms = AseAtomsAdaptor.get_atoms(structure)
        self.atoms.info = {}
        if settings.symmetry:
            from ase.constraints import FixSymmetry

            self.atoms.set_constraint(FixSymmetry(self.atoms, symprec=settings.symprec))
        self.volume0 = float(self.atoms.get_volume())
        from genlowdim.physics.potential import GPA_TO_EV_PER_A3

        self.pressure = settings.pressure * GPA_TO_EV_PER_A3       # eV/Å³
        self.filter = make_filter(self.atoms, scalar_pressure=self.pressure)
        self.optimizer = getattr(ase.optimize, settings.optimizer)(self.filter, logfile=None)
        self.optimizer.fmax = settings.fmax
        self.done = False

    def set_calc(self, values: dict) -> None:
        from ase.calculators.singlepoint import SinglePointCalculator

        self.atoms.calc = SinglePointCalculator(self.atoms, energy=values["energy"], free_energy=values["energy"],
                                                forces=values["forces"], stress=values["stress"])
        if self.result.energy_initial is None:
            self.result.energy_initial = values["energy_per_atom"]
        self.result.energy_final = values["energy_per_atom"]

    def fail(self, reason: str) -> None:
        self.result.error, self.done = reason, True

    def advance(self, max_steps: int) -> None:
        """Convergence test on the current forces, then one optimiser step unless done."""
        gradient = self.optimizer.optimizable.get_gradient()
        if self.optimizer.optimizable.converged(gradient, self.optimizer.fmax):
            self.result.converged, self.done = True, True
        elif self.optimizer.nsteps >= max_steps:
            self.done = True
        else:
            self.optimizer.step()
            self.optimizer.nsteps += 1
            ratio = self.atoms.get_volume() / self.volume0
            if not (1 / MAX_VOLUME_RATIO < ratio < MAX_VOLUME_RATIO):
                self.fail(f"cell volume changed by a factor {ratio:.3g} (limit {MAX_VOLUME_RATIO:g}): "
                          f"relaxation diverged")


def _step_all(runs: list[_Run], potential, max_steps: int) -> None:
    """One lockstep step: a batched potential call for every running structure, then each optimiser."""
    from genlowdim.physics.potential import atoms_to_structure

    active = [r for r in runs if not r.done]
    values = potential.evaluate([atoms_to_structure(r.atoms) for r in active])
    for run, value in zip(active, values):
        if isinstance(value, Exception):
            run.fail(f"potential failed at step {run.optimizer.nsteps}: {type(value).__name__}: {value}")
            continue
        run.set_calc(value)
        try:
            run.advance(max_steps)
        except Exception as err:  # noqa: BLE001 - one structure's numerical failure is its own
            run.fail(f"optimiser failed at step {run.optimizer.nsteps}: {type(err).__name__}: {err}")


def _finish(run: _Run, settings: RelaxSettings) -> RelaxResult:
    from genlowdim.physics.potential import atoms_to_structure

    result = run.result
    result.steps = int(run.optimizer.nsteps)
    result.extra["space_group_initial"] = space_group_number(run.structure, settings.symprec)
    if result.error is None:
        result.relaxed = atoms_to_structure(run.atoms)
        result.volume_change = float(run.atoms.get_volume() / run.volume0 - 1.0)
        if run.pressure:   # what the relaxation minimised: E + PV, per atom
            result.extra["enthalpy_per_atom_final"] = float(
                result.energy_final + run.pressure * run.atoms.get_volume() / len(run.atoms))
        result.rmsd = rmsd_to_relaxed(run.structure, result.relaxed, settings)
        result.extra["space_group_final"] = space_group_number(result.relaxed, settings.symprec)
    return result


def space_group_number(structure, symprec: float) -> int | None:
    """International space-group number spglib finds at ``symprec`` (Å); None when it finds none."""
    from genlowdim.structures.symmetry import cell_summary

    return cell_summary(structure, symprec)["space_group_number"]


def relax_structures(structures: Sequence, settings: RelaxSettings | None = None, potential=None,
                     on_batch: Callable[[int], None] | None = None) -> list[RelaxResult]:
    """Relax cell and positions of each structure (pymatgen ``Structure``s), ``settings.batch_size`` at a
    time in lockstep. A structure that fails (unbuildable graph, non-finite output, diverging cell) gets
    its ``error`` and never stops the others. ``on_batch(n)`` is called after each batch of n structures.
    ``settings.workers`` > 1: the batches (made smaller where needed, so that each worker has one) are
    shared by that many forked processes of one torch thread each (:mod:`genlowdim.physics.workers`); the
    results are the same structure by structure."""
    from genlowdim.physics.potential import load_potential
    from genlowdim.physics.workers import map_in_workers

    settings = settings or RelaxSettings()
    potential = potential or load_potential()
    size, workers = settings.batch_size, settings.workers
    if workers > 1:
        size = max(1, min(size, -(-len(structures) // workers)))
    starts = list(range(0, len(structures), size))
    parts: dict[int, list[RelaxResult]] = {}
    for start, part in map_in_workers(lambda a: _relax_batch(structures[a:a + size], settings, potential),
                                      starts, workers):
        parts[start] = part
        if on_batch is not None:
            on_batch(len(part))
    return [r for start in starts for r in parts[start]]


def _relax_batch(chunk: Sequence, settings: RelaxSettings, potential) -> list[RelaxResult]:
    """One lockstep batch: every structure's optimiser steps on one batched potential call per step."""
    runs = []
    for s in chunk:
        try:
            runs.append(_Run(s, settings))
        except Exception as err:  # noqa: BLE001
            runs.append(RelaxResult(error=f"cannot set up the optimiser: {type(err).__name__}: {err}"))
    live = [r for r in runs if isinstance(r, _Run)]
    while any(not r.done for r in live):
        _step_all(live, potential, settings.steps)
    return [_finish(r, settings) if isinstance(r, _Run) else r for r in runs]


def rmsd_description(settings: RelaxSettings) -> str:
    return (f"pymatgen StructureMatcher(stol={settings.stol}, ltol={settings.ltol}, "
            f"angle_tol={settings.angle_tol}, scale=False).get_rms_dist(relaxed, initial)[0] times "
            f"(mean volume per atom)^(1/3): RMS atomic displacement in Å, in the two cells' average lattice "
            f"(a uniform strain of the cell adds nothing; see volume_change)")


def rmsd_to_relaxed(initial, relaxed, settings: RelaxSettings | None = None) -> float | None:
    """RMS displacement (Å) between a structure and its relaxed form after the best mapping of
    pymatgen's StructureMatcher (no volume scaling); None when no mapping is found within tolerances.

    pymatgen normalises its RMS by (volume per site)^(1/3) of the two cells' average lattice; this
    multiplies that back with the mean of the two volumes per atom."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    settings = settings or RelaxSettings()
    matcher = StructureMatcher(stol=settings.stol, ltol=settings.ltol, angle_tol=settings.angle_tol,
                               scale=False)
    try:
        rms = matcher.get_rms_dist(relaxed, initial)
    except Exception:  # noqa: BLE001 - a matcher failure is "no mapping"
        return None
    if rms is None:
        return None
    per_atom = 0.5 * (initial.volume / len(initial) + relaxed.volume / len(relaxed))
    return float(rms[0] * per_atom ** (1.0 / 3.0))
