"""The labels a dataset's crystals carry, for the latent-structure analysis (the latents themselves:
:func:`genlowdim.crystal.latents.encode_means`).

Labels of a perovskite cell (perov_5: ABX₃ in a 5-atom cell), derived from the structure alone:

* **X sites**: the three most electronegative atoms (Pauling), which must be non-metals (N, O, F, S, …);
  the *anion* label is their composition (``"O3"``, ``"O2N"``, …), most electronegative element first.
* **B site**: of the two remaining cations, the one closer to the anions (nearest X image, periodic images
  included): in the ideal cubic cell B–X = a/2 and A–X = a/√2. The rule also requires the B atom's six
  nearest anion images to lie closer than its nearest A image (an octahedron, not a shared face).
  Cells that fail either test stay unlabelled (-1).
* **B-site group / block**: the periodic-table group (1–18) and block (s/p/d/f) of the B element.
* **space group**: the dataset's ``spacegroup.number`` column (when the dataset carries it).
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


def neighbour_table(frac_coords: np.ndarray, lattice: np.ndarray, reach: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Distances (N, M) in Å from each site to every periodic image of every site within ``reach`` cells,
    ascending per row, and the site index (N, M) of each image. The site itself (distance 0) is excluded."""
    frac = np.asarray(frac_coords, float)
    shifts = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)), float)
    images = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3) @ np.asarray(lattice, float)   # (S·N, 3)
    owner = np.tile(np.arange(len(frac)), len(shifts))
    cart = frac @ np.asarray(lattice, float)
    dist = np.linalg.norm(cart[:, None, :] - images[None, :, :], axis=-1)
    order = np.argsort(dist, axis=1)[:, 1:]   # drop the site itself
    return np.take_along_axis(dist, order, 1), owner[order]


ANION_ELEMENTS = frozenset({"H", "C", "N", "O", "F", "P", "S", "Cl", "Se", "Br", "Te", "I"})


def perovskite_sites(frac_coords, lattice, atom_types) -> dict | None:
    """{"A": Z, "B": Z, "X": [Z, Z, Z]} of an ABX₃ cell by the rule of the module docstring, or None."""
    from pymatgen.core import Element

    types = np.asarray(atom_types)
    if len(types) != 5:
        return None
    elements = [Element.from_Z(int(z)) for z in types]
    order = sorted(range(5), key=lambda i: -(elements[i].X if elements[i].X == elements[i].X else 0.0))
    x_sites, cations = order[:3], order[3:]
    if any(elements[i].symbol not in ANION_ELEMENTS for i in x_sites) or \
            any(elements[i].symbol in ANION_ELEMENTS for i in cations):
        return None
    dist, owner = neighbour_table(frac_coords, lattice)
    to_x = [dist[c][np.isin(owner[c], x_sites)] for c in cations]
    b_pos = int(np.argmin([d[0] for d in to_x]))
    b, a = cations[b_pos], cations[1 - b_pos]
    nearest_a = dist[b][owner[b] == a][0]
    if not to_x[b_pos][5] < nearest_a:
        return None
    return {"A": int(types[a]), "B": int(types[b]), "X": [int(types[i]) for i in x_sites]}


def anion_label(x_types) -> str:
    """Composition of the X sites, most electronegative element first: [8, 8, 7] -> "O2N"."""
    from pymatgen.core import Element

    counts = Counter(Element.from_Z(z).symbol for z in x_types)
    order = sorted(counts, key=lambda s: (-(Element(s).X or 0.0), s))
    return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order)


@dataclass
class CrystalLabels:
    """Integer labels (N,) per name (-1 = unlabelled) and the class names behind each integer."""
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, values: list, note: str) -> None:
        """Store string/number labels (None = unlabelled) as integers ordered by class frequency."""
        counts = Counter(v for v in values if v is not None)
        names = [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]
        index = {k: i for i, k in enumerate(names)}
        self.labels[name] = np.array([index.get(v, -1) if v is not None else -1 for v in values])
        self.classes[name] = [str(k) for k in names]
        self.notes[name] = note

    def summary(self) -> dict:
        """Per label: how many crystals it labels and the class counts."""
        return {name: {"labelled": int((lab >= 0).sum()), "total": int(len(lab)), "rule": self.notes[name],
                       "classes": {c: int((lab == i).sum()) for i, c in enumerate(self.classes[name])}}
                for name, lab in self.labels.items()}


def crystal_labels(records) -> CrystalLabels:
    """Space group, B-site group and block and anion of dataset records
    (:class:`genlowdim.structures.datasets.CrystalRecord`)."""
    from pymatgen.core import Element

    sites = [perovskite_sites(r.frac_coords, r.lattice, r.atom_types) for r in records]
    out = CrystalLabels()
    sg = [r.properties.get("spacegroup.number") for r in records]
    out.add("spacegroup", [int(v) if v is not None and np.isfinite(v) else None for v in sg],
            "dataset column spacegroup.number")
    out.add("b_group", [Element.from_Z(s["B"]).group if s else None for s in sites],
            "periodic-table group of the B element (octahedral site rule)")
    out.add("b_block", [Element.from_Z(s["B"]).block if s else None for s in sites],
            "block (s/p/d/f) of the B element (octahedral site rule)")
    out.add("anion", [anion_label(s["X"]) if s else None for s in sites],
            "composition of the three X sites (octahedral site rule)")
    return out
