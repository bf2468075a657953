"""CHGNet as a batched potential: energies, forces and stresses of many structures in one call.

CHGNet 0.4's wheel carries its pretrained weights (``chgnet/pretrained/0.3.0``), so loading reads a file
inside the installed package and never touches the network. Units follow ASE: energy in eV (total, per
structure), forces in eV/Å, stress in eV/Å³ (3×3, ASE's sign: positive = tensile). CHGNet itself returns
energy per atom and stress in GPa; :func:`Potential.evaluate` converts.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

__all__ = ["Potential", "load_potential", "atoms_to_structure", "DEFAULT_MODEL", "GPA_TO_EV_PER_A3"]

DEFAULT_MODEL = "0.3.0"
GPA_TO_EV_PER_A3 = 1.0 / 160.21766208   # ase.units.GPa
CPU_PASS = 8                            # structures per CHGNet pass on CPU


def atoms_to_structure(atoms) -> Any:
    """pymatgen ``Structure`` of an ASE ``Atoms`` (cell, species, Cartesian positions in Å; nothing else).

    Lighter than ``AseAtomsAdaptor.get_structure``, which also copies every array and info entry."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(np.asarray(atoms.cell[:], dtype=float)), atoms.get_atomic_numbers().tolist(),
                     atoms.positions, coords_are_cartesian=True)


@dataclass
class Potential:
    """A loaded CHGNet model. ``name``: 'CHGNet'; ``version``: its weights ('0.3.0');
    ``batch_size``: structures per forward pass (``load_potential`` sets it by device)."""

    model: Any
    name: str = "CHGNet"
    version: str = DEFAULT_MODEL
    batch_size: int = 256

    def to_dict(self) -> dict:
        """What a result records about the potential."""
        from importlib import metadata

        return {"potential": self.name, "weights": self.version, "package": f"chgnet {metadata.version('chgnet')}",
                "energy": "CHGNet total energy, eV (eV/atom where stated)"}

    def _graphs(self, structures: Sequence) -> tuple[list, list]:
        """CHGNet graphs of the structures; a failure is kept as the exception at its index."""
        graphs, failures = [], []
        for s in structures:
            try:
                graphs.append(self.model.graph_converter(s))
                failures.append(None)
            except Exception as err:  # noqa: BLE001 - a structure that cannot be graphed fails alone
                graphs.append(None)
                failures.append(err)
        return graphs, failures

    def evaluate(self, structures: Sequence) -> list[dict | Exception]:
        """Per structure ``{"energy": eV, "energy_per_atom": eV/atom, "forces": (n, 3) eV/Å,
        "stress": (3, 3) eV/Å³}``, or the exception that made it fail (bad graph, non-finite output)."""
        graphs, failures = self._graphs(structures)
        ok = [k for k, g in enumerate(graphs) if g is not None]
        out: list[dict | Exception] = list(failures)
        predictions = self._predict([graphs[k] for k in ok]) if ok else []
        for k, pred in zip(ok, predictions):
            out[k] = pred if isinstance(pred, Exception) else _convert(pred, len(structures[k]))
        return out

    def _predict(self, graphs: list) -> list:
        """Batched passes of ``batch_size`` graphs; if one fails, each of its graphs alone so that only the
        culprit fails."""
        out = []
        for start in range(0, len(graphs), self.batch_size):
            chunk = graphs[start:start + self.batch_size]
            try:
                out += energy_forces_stress(self.model, chunk)
                continue
            except Exception:  # noqa: BLE001
                if len(chunk) == 1:
                    raise
            for g in chunk:
                try:
                    out += energy_forces_stress(self.model, [g])
                except Exception as err:  # noqa: BLE001
                    out.append(err)
        return out


def energy_forces_stress(model, graphs: list) -> list[dict]:
    """CHGNet's ``predict_graph(graphs, task="efs")`` in one forward and one backward pass: per graph
    ``{"e": eV/atom, "f": (n, 3) eV/Å, "s": (3, 3) GPa}`` as numpy.

    CHGNet's own call takes two backward passes (forces, then stress) and keeps both gradient graphs
    (``create_graph=True``) for training on forces; relaxation needs neither, and one
    ``torch.autograd.grad`` over positions and strains together does the same sums once."""
    import torch
    from chgnet.model.model import BatchedGraph

    batch = BatchedGraph.from_graphs(graphs, bond_basis_expansion=model.bond_basis_expansion,
                                     angle_basis_expansion=model.angle_basis_expansion, compute_stress=True)
    pred = model._compute(batch)          # energy only: eV/atom when the model is intensive
    per_atom = pred["e"]
    sizes = pred["atoms_per_graph"]
    total = per_atom * sizes if model.is_intensive else per_atom
    grads = torch.autograd.grad(total.sum(), [*batch.atom_positions, *batch.strains])
    n = len(graphs)
    energy = (per_atom if model.is_intensive else per_atom / sizes).detach()
    if model.composition_model is not None:
        energy = energy + model.composition_model(graphs).detach()
    return [{"e": energy[k].numpy(), "f": -grads[k].numpy(),
             "s": (grads[n + k] * (160.21766208 / batch.volumes[k])).numpy()} for k in range(n)]


def _as_list(prediction) -> list:
    return prediction if isinstance(prediction, list) else [prediction]


def _convert(pred: dict, num_atoms: int) -> dict | Exception:
    e, f, s = float(pred["e"]), np.asarray(pred["f"], float), np.asarray(pred["s"], float)
    if not (np.isfinite(e) and np.isfinite(f).all() and np.isfinite(s).all()):
        return FloatingPointError("the potential returned a non-finite energy, force or stress")
    return {"energy": e * num_atoms, "energy_per_atom": e, "forces": f, "stress": s * GPA_TO_EV_PER_A3}


@lru_cache(maxsize=2)
def load_potential(version: str = DEFAULT_MODEL, device: str = "cpu") -> Potential:
    """CHGNet with the weights shipped in its wheel (no download), on ``device``; cached per process."""
    try:
        from chgnet.model import CHGNet
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ImportError("genlowdim.physics needs chgnet (pip install chgnet)") from err
    with contextlib.redirect_stdout(io.StringIO()):   # CHGNet prints its parameter count and device
        model = CHGNet.load(model_name=version, use_device=device, verbose=False)
    model.eval()
    # an atom with no neighbour within the 6 Å graph cutoff makes the output meaningless: fail it
    model.graph_converter.on_isolated_atoms = "error"
    # on CPU a structure costs least in passes of about 8 (5-atom cells: ~15 ms each against ~20 ms alone and
    # 20-45 ms in passes of 64-128, which also hold far more memory; bench/relax.py --pass-cost)
    return Potential(model=model, version=version, batch_size=CPU_PASS if device == "cpu" else 256)
