"""Vectorised local structure order parameters of the CrystalNN "ops" fingerprint.

Each function takes a batch of neighbour sets of one coordination number, ``u``: (B, n, 3) unit vectors
from the centre to its n neighbours, and returns ``(values, fragile)``: (B,) order-parameter values
(``None`` results as 0, as matminer stores them) and a (B,) bool mask of the sets whose value hangs on a
floating-point tie (an angle within ``EPS`` of a threshold, an ill-defined azimuth axis). Fragile sets
must be recomputed by the reference implementation.

The definitions are those of pymatgen's ``LocalStructOrderParams.get_order_parameters`` as matminer calls
it: one instance per order parameter (so the "south pole" term of the bipyramidal / octahedral family
belongs to that parameter), neighbour j on the north pole, neighbour k fixing the prime meridian, every
third neighbour m contributing through its polar angle theta_m and azimuth phi_m; "_max" types take the
largest normalised (j, k) term, the others the ratio of sums. Parameter values come from pymatgen's
tables (``DEFAULT_OP_PARAMS``, ``CN_OPT_PARAMS``) at run time, so they follow the installed release.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

EPS = 1e-9              # guard band on angles (radians) around every threshold
ORDER_TOL = 1e-12       # largest change of the bcc value accepted from an unknown neighbour order
VERY_SMALL = 1e-12      # pymatgen's "vector is (almost) zero" threshold for the azimuth axes
AXIS_BAND = (1e-13, 1e-7)  # an axis norm in this band is either near the flag or ill-conditioned
SOUTH_POLE_TYPES = {"tri_bipyr", "sq_bipyr", "pent_bipyr", "hex_bipyr", "oct_max", "sq_plan_max",
                    "hex_plan_max", "see_saw_rect"}
EP_TYPES = {"T", "tri_pyr", "sq_pyr", "pent_pyr", "hex_pyr"}


@lru_cache(maxsize=1)
def ops_layout() -> list[tuple[int, list[tuple[str, dict | None]]]]:
    """[(cn, [(op type or 'wt', parameters), ...]), ...] for cn = 1..24 in matminer's feature order."""
    try:
        from pymatgen.core.local_env import CN_OPT_PARAMS, DEFAULT_OP_PARAMS
    except ImportError:  # older pymatgen
        from pymatgen.analysis.local_env import CN_OPT_PARAMS, DEFAULT_OP_PARAMS
    from matminer.featurizers.site.fingerprint import load_cn_target_motif_op

    motifs = load_cn_target_motif_op()
    layout = []
    for cn in range(1, 25):
        entries: list[tuple[str, dict | None]] = [("wt", None)]
        for motif in motifs.get(cn, []):
            typ, params = motif, None
            if cn in CN_OPT_PARAMS and motif in CN_OPT_PARAMS[cn]:
                spec = CN_OPT_PARAMS[cn][motif]
                typ = spec[0]
                params = spec[1] if len(spec) > 1 else None
            if params is None:
                params = DEFAULT_OP_PARAMS[typ]
            entries.append((typ, dict(params) if params is not None else None))
        layout.append((cn, entries))
    return layout


def _near(x: np.ndarray, threshold: float) -> np.ndarray:
    return np.abs(x - threshold) < EPS


def _gauss(t: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * t * t)


class Geometry:
    """Angles shared by all order parameters of one batch: theta[b, j, k] (angle between neighbours j and
    k), the azimuth phi[b, j, k, m] of m about j measured from k, and the masks pymatgen applies."""

    def __init__(self, u: np.ndarray):
        self.u = u
        b, n, _ = u.shape
        self.n = n
        dots = np.einsum("bjd,bkd->bjk", u, u)
        self.theta = np.arccos(np.clip(dots, -1.0, 1.0))
        uu = np.einsum("bjd,bjd->bj", u, u)
        # Gram-Schmidt: part of u_k orthogonal to u_j (pymatgen's gramschmidt(u_k, u_j))
        x = u[:, None, :, :] - (dots / uu[:, :, None])[..., None] * u[:, :, None, :]
        xn = np.sqrt(np.einsum("bjkd,bjkd->bjk", x, x))
        eye = np.eye(n, dtype=bool)[None]
        self.pair = ~eye                                   # j != k
        self.flag = (xn < VERY_SMALL) & self.pair          # axis undefined (k on the pole axis of j)
        self.fragile = ((xn >= AXIS_BAND[0]) & (xn < AXIS_BAND[1]) & self.pair).any(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            xh = np.where(self.flag[..., None] | eye[..., None], 0.0, x / xn[..., None])
        self.phi = np.arccos(np.clip(np.einsum("bjmd,bjkd->bjkm", xh, xh), -1.0, 1.0))
        jj, kk, mm = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
        triple = (jj != kk) & (mm != jj) & (mm != kk)
        # m terms exist for pairs (j, k) with a defined axis; type terms also need m's own axis
        self.m_any = triple[None] & ~self.flag[:, :, :, None]
        self.m_full = self.m_any & ~self.flag[:, :, None, :]
        self.theta_k = self.theta[:, :, :, None]           # (B, j, k, 1)
        self.theta_m = self.theta[:, :, None, :]           # (B, j, 1, m)


def _finish_max(q: np.ndarray, w: np.ndarray, pair: np.ndarray, n: int) -> np.ndarray:
    """_max types: max over (j, k) of q/w (0 where w <= 1e-12); None (0) with one neighbour."""
    if n < 2:
        return np.zeros(q.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(w > 1e-12, q / np.where(w > 1e-12, w, 1.0), 0.0)
    r = np.where(pair, r, -np.inf)
    return r.max(axis=(1, 2))


def order_parameter(typ: str, p: dict | None, g: Geometry,
                    uncertain: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(values (B,), fragile (B,)) of one single-type order parameter on the batch geometry ``g``.
    ``uncertain`` (B, n, n) marks neighbour pairs whose order is not known (see ``_bcc``); every other
    parameter is symmetric in the neighbour order."""
    n, th, tk, tm, phi = g.n, g.theta, g.theta_k, g.theta_m, g.phi
    bsz = th.shape[0]
    fragile = np.zeros(bsz, dtype=bool)
    ipi = 1.0 / math.pi
    pair = g.pair
    if typ == "sgl_bd":
        return np.ones(bsz) if n == 1 else np.zeros(bsz), fragile
    if typ in ("q2", "q4", "q6"):
        return _steinhardt(int(typ[1]), g)
    if typ == "bent":
        t = _gauss(p["IGW_TA"] * (th * ipi - p["TA"]))
        if n < 2:
            return np.zeros(bsz), fragile
        return np.where(pair, t, 0.0).sum(axis=(1, 2)) / float(n * (n - 1)), fragile
    q = np.zeros_like(th)
    w = np.zeros_like(th)
    mq = np.zeros(phi.shape)
    mw = np.zeros(phi.shape)
    if typ in ("tri_plan_max", "tet_max"):
        q += _gauss(p["IGW_TA"] * (th * ipi - p["TA"]))
        w += 1.0
        mq += _gauss(p["IGW_TA"] * (tm * ipi - p["TA"])) * np.cos(p["fac_AA"] * phi) ** p["exp_cos_AA"]
        mw += 1.0
        mask = g.m_full
    elif typ in EP_TYPES:
        q += _gauss(p["IGW_EP"] * (th * ipi - 0.5))
        w += 1.0
        mq += np.cos(p["fac_AA"] * phi) ** p["exp_cos_AA"] * _gauss(p["IGW_EP"] * (tm * ipi - 0.5))
        mw += 1.0
        mask = g.m_full
    elif typ in SOUTH_POLE_TYPES:
        spp = p["min_SPP"]
        fragile |= (_near(th, spp) & pair).any(axis=(1, 2))
        below_k = th < spp
        if typ == "hex_plan_max":
            kt = p["IGW_TA"] * (np.abs(th * ipi - 0.5) - p["TA"])
            mt = p["IGW_TA"] * (np.abs(tm * ipi - 0.5) - p["TA"])
        else:
            kt = p["IGW_EP"] * (th * ipi - 0.5)
            mt = p["IGW_EP"] * (tm * ipi - 0.5)
        q += np.where(below_k, _gauss(kt), 0.0)
        w += below_k
        # south-pole term of m: needs only the (j, k) axis
        south = g.m_any & (tm >= spp)
        sq = np.where(south, _gauss(p["IGW_SPP"] * (tm * ipi - 1.0)), 0.0)
        q += sq.sum(axis=3)
        w += south.sum(axis=3)
        cond = g.m_full & (tm < spp) & (tk < spp)
        if typ == "see_saw_rect":
            fragile |= (cond & _near(phi, 0.75 * math.pi)).any(axis=(1, 2, 3))
            cond = cond & (phi < 0.75 * math.pi)
        mq += np.cos(p["fac_AA"] * phi) ** p["exp_cos_AA"] * _gauss(mt)
        mw += 1.0
        mask = cond
    elif typ == "pent_plan_max":
        ta = p["TA"] * math.pi
        fragile |= (_near(th, ta) & pair).any(axis=(1, 2))
        q += _gauss(p["IGW_TA"] * (th * ipi - np.where(th <= ta, 0.4, 0.8)))
        w += 1.0
        mq += _gauss(p["IGW_TA"] * (tm * ipi - np.where(tm <= ta, 0.4, 0.8))) * np.cos(phi) ** 2
        mw += 1.0
        mask = g.m_full
    elif typ == "cuboct_max":
        spp, hi, lo = p["min_SPP"], p[2], p[4]
        for thr in (spp, hi, lo):
            fragile |= (_near(th, thr) & pair).any(axis=(1, 2))
        above = th >= spp
        q += np.where(above, p["w_SPP"] * _gauss(p["IGW_SPP"] * (th * ipi - 1.0)), 0.0)
        w += np.where(above, p["w_SPP"], 0.0)
        base = g.m_full & (tm < spp) & (lo < tk) & (tk < hi)
        mid = (lo < tm) & (tm < hi)
        low, high = tm < lo, tm > hi
        az = _gauss(0.0556 * (np.cos(phi - 0.5 * math.pi) - 0.81649658))
        mq += np.where(mid, np.cos(phi) ** 2 * _gauss(p[5] * (tm * ipi - 0.5)), 0.0)
        mq += np.where(low, az * _gauss(p[6] * (tm * ipi - 1.0 / 3.0)), 0.0)
        mq += np.where(high, az * _gauss(p[6] * (tm * ipi - 2.0 / 3.0)), 0.0)
        mw += (mid | low | high)
        mask = base
    elif typ == "bcc":
        vals, fragile, unknown = _bcc(p, g, uncertain)
        return vals, fragile | unknown
    else:
        raise ValueError(f"order parameter {typ!r} is not vectorised")
    q += np.where(mask, mq, 0.0).sum(axis=3)
    w += np.where(mask, mw, 0.0).sum(axis=3)
    return _finish_max(q, w, pair, n), fragile | g.fragile


def _bcc_pairs(p: dict, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """bcc terms of every ordered pair (j as the pole, k fixing the meridian): (B, n, n) values, and a
    (B, n, n) mask of the pairs whose term hangs on a floating-point tie."""
    th, tk, tm, phi = g.theta, g.theta_k, g.theta_m, g.phi
    ipi = 1.0 / math.pi
    spp = p["min_SPP"]
    fragile = _near(th, spp) & g.pair
    pairs = np.where((th >= spp) & g.pair, p["w_SPP"] * _gauss(p["IGW_SPP"] * (th * ipi - 1.0)), 0.0)
    cond = g.m_full & (tk < spp)
    # the sign flips at theta_k = pi/2 exactly: a tie there must go to the reference
    fragile |= (cond & _near(tk, 0.5 * math.pi)).any(axis=3)
    fac = np.where(tk > 0.5 * math.pi, 1.0, -1.0)
    t = (tm - 0.5 * math.pi) / math.asin(1.0 / 3.0)
    term = fac * np.cos(3.0 * phi) * (1.0 / math.exp(-0.5)) * t * np.exp(-0.5 * t * t)
    return pairs + np.where(cond, term, 0.0).sum(axis=3), fragile


def _bcc(p: dict, g: Geometry, uncertain: np.ndarray | None = None):
    """(values, fragile, order unknown), each (B,). The sums run over pairs j < k in the neighbour order.
    Pairs marked in ``uncertain`` (B, n, n) may come in either order in the reference: the order is
    unknown unless swapping them cannot move the value by more than ORDER_TOL (e.g. tied neighbours that
    are symmetric images of each other)."""
    n = g.n
    terms, tie = _bcc_pairs(p, g)
    upper = np.triu(np.ones((n, n), dtype=bool), 1)[None]          # j < k
    swap = np.zeros_like(upper) if uncertain is None else uncertain
    fragile = (tie & (upper | swap)).any(axis=(1, 2)) | g.fragile
    total = np.where(upper, terms, 0.0).sum(axis=(1, 2))
    if n <= 3:
        return np.zeros(terms.shape[0]), fragile, np.zeros(terms.shape[0], dtype=bool)
    norm = float(0.5 * float(n * (6 + (n - 2) * (n - 3))))
    spread = np.where(upper & swap, np.abs(terms - np.swapaxes(terms, 1, 2)), 0.0).sum(axis=(1, 2))
    return total / norm, fragile, spread / norm > ORDER_TOL


def bcc_order_unknown(p: dict, u: np.ndarray, uncertain: np.ndarray) -> np.ndarray:
    """(B,) whether the bcc value of the neighbour sets ``u`` (B, n, 3) could change with the order of
    the pairs marked in ``uncertain`` (B, n, n)."""
    return _bcc(p, Geometry(u), uncertain)[2]


def _legendre(l: int, x: np.ndarray) -> np.ndarray:
    x2 = x * x
    if l == 2:
        return 0.5 * (3.0 * x2 - 1.0)
    if l == 4:
        return (35.0 * x2 * x2 - 30.0 * x2 + 3.0) / 8.0
    return (231.0 * x2 * x2 * x2 - 315.0 * x2 * x2 + 105.0 * x2 - 5.0) / 16.0


def _steinhardt(l: int, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """q_l = sqrt(sum_jk P_l(cos gamma_jk)) / n (addition theorem of the spherical harmonics).

    pymatgen sets the azimuth of a neighbour with |z| >= 1 - 1e-12 to 0; where such a neighbour is not
    exactly on the z axis the two differ slightly, so those sets are marked fragile."""
    u = g.u
    cos = np.clip(np.einsum("bjd,bkd->bjk", u, u), -1.0, 1.0)
    s = _legendre(l, cos).sum(axis=(1, 2))
    val = np.sqrt(np.maximum(s, 0.0)) / g.n
    polar = np.abs(u[..., 2]) > 1.0 - 1e-9
    off_axis = (u[..., 0] != 0.0) | (u[..., 1] != 0.0)
    return val, (polar & off_axis).any(axis=1)
