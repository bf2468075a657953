"""Singular toy distributions: uniform measures on low-dimensional sets, embedded isometrically in R^D.

Each toy lives first in its natural coordinates R^e (circle e=2, sphere e=3, flat torus e=4, ring
torus e=3, swiss roll e=3) and is mapped to R^D (D ≥ e) by ``x ↦ Q[:, :e] x`` with ``Q`` a seeded random
orthogonal D×D matrix. The map is an isometry, so distances to the support split exactly into the
in-span part (natural coordinates) and the orthogonal residual:
``dist(x)² = dist_e(Qₑᵀ x)² + ‖x − Qₑ Qₑᵀ x‖²``.

Every toy offers ``sample(num, generator) -> (num, D)``, ``distance_to_support(x: (N, D)) -> (N,)`` and
``intrinsic_dim``. ``make_manifold(name, D, ...)`` builds one by name; the mixture of low-rank Gaussians
(MoLRG, Wang et al. 2024) comes from ``genlowdim.lowrank``.
"""
from __future__ import annotations

import math

import torch

MANIFOLDS = ("circle", "sphere", "torus", "torus3d", "swiss_roll", "molrg")


def random_orthogonal(dim: int, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Haar-random orthogonal ``(dim, dim)`` matrix: QR of a Gaussian matrix with sign-fixed diagonal."""
    a = torch.randn(dim, dim, generator=generator, dtype=dtype)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r))[None, :]


class EmbeddedManifold:
    """Base class: a set in natural coordinates R^e, embedded in R^D by ``basis: (D, e)`` (orthonormal)."""

    name = "manifold"
    natural_dim = 0
    intrinsic_dim = 0

    def __init__(self, ambient_dim: int, seed: int = 0, dtype: torch.dtype = torch.float32):
        if ambient_dim < self.natural_dim:
            raise ValueError(f"{self.name}: ambient dimension D={ambient_dim} is smaller than the "
                             f"{self.natural_dim} dimensions needed to embed it")
        self.ambient_dim = ambient_dim
        self.dtype = dtype
        gen = torch.Generator().manual_seed(seed)
        self.basis = random_orthogonal(ambient_dim, gen)[:, :self.natural_dim]  # (D, e), float64

    # natural-coordinate pieces, overridden by each toy
    def _sample_natural(self, num: int, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def _distance_natural(self, p: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` points from the uniform (surface-area) measure on the set: ``(num, D)``."""
        if num < 1:
            raise ValueError(f"{self.name}: number of samples must be positive, got {num}")
        return (self._sample_natural(num, generator) @ self.basis.T).to(self.dtype)

    def distance_to_support(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean distance of each row of ``x: (N, D)`` to the set: ``(N,)`` (same dtype as x)."""
        if x.ndim != 2 or x.shape[1] != self.ambient_dim:
            raise ValueError(f"{self.name}: expected points of shape (N, {self.ambient_dim}), "
                             f"got {tuple(x.shape)}")
        x64 = x.detach().to(torch.float64).cpu()
        p = x64 @ self.basis
        residual = (x64 - p @ self.basis.T).square().sum(1)
        return (self._distance_natural(p).square() + residual).sqrt().to(x.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(D={self.ambient_dim}, intrinsic_dim={self.intrinsic_dim})"


class Circle(EmbeddedManifold):
    """Circle of radius ``radius`` in a random 2-plane; intrinsic dimension 1."""

    name, natural_dim, intrinsic_dim = "circle", 2, 1

    def __init__(self, ambient_dim: int, seed: int = 0, radius: float = 1.0, **kw):
        super().__init__(ambient_dim, seed, **kw)
        self.radius = radius

    def _sample_natural(self, num, generator):
        theta = 2 * math.pi * torch.rand(num, generator=generator, dtype=torch.float64)
        return self.radius * torch.stack([theta.cos(), theta.sin()], 1)

    def _distance_natural(self, p):
        return (p.norm(dim=1) - self.radius).abs()


class Sphere(EmbeddedManifold):
    """Unit-radius sphere S² (scaled by ``radius``) in a random 3-space; intrinsic dimension 2."""

    name, natural_dim, intrinsic_dim = "sphere", 3, 2

    def __init__(self, ambient_dim: int, seed: int = 0, radius: float = 1.0, **kw):
        super().__init__(ambient_dim, seed, **kw)
        self.radius = radius

    def _sample_natural(self, num, generator):
        g = torch.randn(num, 3, generator=generator, dtype=torch.float64)
        return self.radius * g / g.norm(dim=1, keepdim=True)

    def _distance_natural(self, p):
        return (p.norm(dim=1) - self.radius).abs()


class FlatTorus(EmbeddedManifold):
    """Flat torus S¹(r₁) × S¹(r₂) ⊂ R⁴ (the Clifford torus for r₁ = r₂); intrinsic dimension 2.

    Uniform angles give the uniform area measure because the embedding is flat.
    """

    name, natural_dim, intrinsic_dim = "torus", 4, 2

    def __init__(self, ambient_dim: int, seed: int = 0, radii: tuple[float, float] = (1.0, 0.5), **kw):
        super().__init__(ambient_dim, seed, **kw)
        self.radii = tuple(float(r) for r in radii)

    def _sample_natural(self, num, generator):
        a, b = (2 * math.pi * torch.rand(2, num, generator=generator, dtype=torch.float64))
        r1, r2 = self.radii
        return torch.stack([r1 * a.cos(), r1 * a.sin(), r2 * b.cos(), r2 * b.sin()], 1)

    def _distance_natural(self, p):
        r1, r2 = self.radii
        return ((p[:, :2].norm(dim=1) - r1).square() + (p[:, 2:].norm(dim=1) - r2).square()).sqrt()


class RingTorus(EmbeddedManifold):
    """Ring torus in R³ (tube radius r around a circle of radius R); intrinsic dimension 2.

    Area element ∝ (R + r cos v), so the tube angle v is drawn by rejection sampling.
    """

    name, natural_dim, intrinsic_dim = "torus3d", 3, 2

    def __init__(self, ambient_dim: int, seed: int = 0, major: float = 1.0, minor: float = 0.4, **kw):
        super().__init__(ambient_dim, seed, **kw)
        if not 0 < minor < major:
            raise ValueError(f"torus3d: need 0 < minor < major, got minor={minor}, major={major}")
        self.major, self.minor = major, minor

    def _sample_natural(self, num, generator):
        big, small = self.major, self.minor
        v = _rejection_sample(lambda t: (big + small * torch.cos(t)) / (big + small),
                              0.0, 2 * math.pi, num, generator)
        u = 2 * math.pi * torch.rand(num, generator=generator, dtype=torch.float64)
        ring = big + small * v.cos()
        return torch.stack([ring * u.cos(), ring * u.sin(), small * v.sin()], 1)

    def _distance_natural(self, p):
        rho = p[:, :2].norm(dim=1)
        return (((rho - self.major).square() + p[:, 2].square()).sqrt() - self.minor).abs()


class SwissRoll(EmbeddedManifold):
    """Swiss roll: spiral c(t) = (t cos t, t sin t)/scale, t ∈ [t₀, t₁], times a height interval.

    Natural coordinates (c₁(t), h, c₂(t)), h ∈ [0, height]; intrinsic dimension 2. Uniform in area: t has
    density ∝ |c'(t)| ∝ √(1 + t²) (rejection sampling). The set is a product (curve × interval) in
    orthogonal coordinates, so dist² = dist_curve² + dist_interval²; the curve part is a dense grid search
    refined by Gauss-Newton steps on t.
    """

    name, natural_dim, intrinsic_dim = "swiss_roll", 3, 2

    def __init__(self, ambient_dim: int, seed: int = 0, t_range: tuple[float, float] = (1.5 * math.pi,
                 4.5 * math.pi), height: float = 1.0, scale: float = 10.0, grid: int = 20000, **kw):
        super().__init__(ambient_dim, seed, **kw)
        self.t0, self.t1 = (float(t) for t in t_range)
        self.height, self.scale = height, scale
        self._grid_t = torch.linspace(self.t0, self.t1, grid, dtype=torch.float64)

    def _curve(self, t):
        return torch.stack([t * t.cos(), t * t.sin()], -1) / self.scale

    def _sample_natural(self, num, generator):
        t0, t1 = self.t0, self.t1
        t = _rejection_sample(lambda s: torch.sqrt(1 + s * s) / math.sqrt(1 + t1 * t1), t0, t1, num, generator)
        h = self.height * torch.rand(num, generator=generator, dtype=torch.float64)
        c = self._curve(t)
        return torch.stack([c[:, 0], h, c[:, 1]], 1)

    def _distance_natural(self, p):
        q = p[:, [0, 2]]
        grid = self._curve(self._grid_t)
        t = torch.cat([self._grid_t[torch.cdist(q[i:i + 1024], grid).argmin(1)] for i in range(0, len(q), 1024)])
        for _ in range(3):  # Gauss-Newton refinement of the foot point, clamped to [t0, t1]
            tangent = torch.stack([t.cos() - t * t.sin(), t.sin() + t * t.cos()], -1) / self.scale
            step = ((q - self._curve(t)) * tangent).sum(1) / tangent.square().sum(1)
            t = (t + step).clamp(self.t0, self.t1)
        d_curve = (q - self._curve(t)).norm(dim=1)
        h = p[:, 1]
        d_height = (h.clamp(0.0, self.height) - h).abs()
        return (d_curve.square() + d_height.square()).sqrt()


def _rejection_sample(density_ratio, lo: float, hi: float, num: int, generator) -> torch.Tensor:
    """Draw ``num`` values on [lo, hi] with density ∝ ``density_ratio`` (which must lie in [0, 1])."""
    out, have = [], 0
    while have < num:
        cand = lo + (hi - lo) * torch.rand(2 * num, generator=generator, dtype=torch.float64)
        keep = torch.rand(2 * num, generator=generator, dtype=torch.float64) < density_ratio(cand)
        out.append(cand[keep])
        have += int(keep.sum())
    return torch.cat(out)[:num]


class LowRankMixtureToy:
    """Mixture of K low-rank Gaussians in R^D (data model of ``genlowdim.lowrank``), noiseless.

    Support = union of the K subspaces span(U_k); ``distance_to_support(x) = min_k ‖x − U_k U_kᵀ x‖``.
    """

    name = "molrg"

    def __init__(self, ambient_dim: int, seed: int = 0, num_components: int = 2, subspace_dim: int = 2,
                 dtype: torch.dtype = torch.float32):
        from genlowdim.lowrank.mixture import LowRankMixture, random_bases

        if num_components * subspace_dim > ambient_dim:
            raise ValueError(f"molrg: K·d = {num_components * subspace_dim} orthogonal directions do not "
                             f"fit in D={ambient_dim}")
        gen = torch.Generator().manual_seed(seed)
        bases = random_bases(num_components, ambient_dim, subspace_dim, generator=gen)
        self.bases = torch.as_tensor(bases, dtype=torch.float64)  # (K, D, d)
        weights = torch.full((num_components,), 1.0 / num_components, dtype=torch.float64)
        self.mixture = LowRankMixture(self.bases, weights, 0.0)
        self.ambient_dim, self.intrinsic_dim, self.dtype = ambient_dim, subspace_dim, dtype

    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if num < 1:
            raise ValueError(f"molrg: number of samples must be positive, got {num}")
        return self.mixture.sample(num, generator).to(self.dtype)

    def distance_to_support(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, D)`` -> ``(N,)`` distance to the union of the K subspaces."""
        if x.ndim != 2 or x.shape[1] != self.ambient_dim:
            raise ValueError(f"molrg: expected points of shape (N, {self.ambient_dim}), got {tuple(x.shape)}")
        x64 = x.detach().to(torch.float64).cpu()
        proj = torch.einsum("kDd,nD->nkd", self.bases, x64)
        residual = x64.square().sum(1, keepdim=True) - proj.square().sum(2)
        return residual.clamp_min(0).min(1).values.sqrt().to(x.dtype)


_TOYS = {"circle": Circle, "sphere": Sphere, "torus": FlatTorus, "torus3d": RingTorus,
         "swiss_roll": SwissRoll, "molrg": LowRankMixtureToy}


def make_manifold(name: str, ambient_dim: int, seed: int = 0, **kwargs):
    """Build toy ``name`` (one of ``MANIFOLDS``) in R^``ambient_dim`` with embedding seed ``seed``."""
    if name not in _TOYS:
        raise ValueError(f"unknown manifold {name!r}; expected one of {list(MANIFOLDS)}")
    if not isinstance(ambient_dim, int) or ambient_dim < 1:
        raise ValueError(f"{name}: ambient dimension must be a positive integer, got {ambient_dim!r}")
    return _TOYS[name](ambient_dim, seed=seed, **kwargs)


def local_pca_rank(x: torch.Tensor, num_neighbours: int = 20, num_centres: int = 20,
                   energy: float = 0.95) -> list[int]:
    """Estimated intrinsic dimension at ``num_centres`` points of ``x: (N, D)`` (first rows).

    Local PCA: centre the ``num_neighbours`` nearest neighbours of a point, and return the smallest r
    whose top-r squared singular values hold ``energy`` of the total (one value per centre).
    """
    x = x.to(torch.float64)
    centres = x[:num_centres]
    idx = torch.cdist(centres, x).topk(num_neighbours, dim=1, largest=False).indices  # (C, k)
    nb = x[idx]
    nb = nb - nb.mean(1, keepdim=True)
    s2 = torch.linalg.svdvals(nb).square()  # (C, min(k, D))
    cum = s2.cumsum(1) / s2.sum(1, keepdim=True)
    return ((cum < energy).sum(1) + 1).tolist()
