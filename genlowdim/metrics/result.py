"""``MetricResult``: a metric's value together with everything needed to reproduce it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class MetricResult:
    """One metric.

    name: CDVAE's key where one exists (``struct_valid``, ``cov_recall``, ...).
    value: the number (a fraction in [0, 1] for rates), or ``None`` when it could not be computed.
    params: thresholds, tolerances, counts, seed and library versions that produced ``value``.
    per_item: optional per-structure arrays (e.g. ``valid: (N,)``, ``reason: (N,)``).
    """

    name: str
    value: float | None
    params: dict[str, Any] = field(default_factory=dict)
    per_item: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self, include_items: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": self.value, "params": dict(self.params)}
        if include_items:
            out["per_item"] = {k: np.asarray(v).tolist() for k, v in self.per_item.items()}
        return out


def versions() -> dict[str, str]:
    """Library versions recorded with every result (cached: they do not change within a process)."""
    global _VERSIONS
    if _VERSIONS is None:
        from genlowdim.runtime import library_versions

        _VERSIONS = library_versions()
    return dict(_VERSIONS)


_VERSIONS: dict[str, str] | None = None


def as_float(x: Any) -> float | None:
    """Plain Python float for JSON, ``None`` for NaN/None."""
    if x is None:
        return None
    x = float(x)
    return None if np.isnan(x) else x
