r"""Optimal bias-free decoding of centred disks (Newson et al., Prop. 2 and App. B).

A bias-free decoder is positively homogeneous (Prop. 1), so when it uses one sign of
its scalar code its output for a disk of radius ``r`` is separable (Eq. 5)

.. math:: D(E(\mathbb 1_{B_r}))(t) = h(r)\, f(t).

For a fixed profile ``f`` the best amplitude is (Eq. 8)

.. math:: \hat h(r) = \langle f, \mathbb 1_{B_r}\rangle / \lVert f \rVert_2^2,

and the best radial profile maximises the decoding energy (Eq. 7 / 10)

.. math:: J(f) = \int_0^R \Big(\int_0^r f(\rho)\,\rho\, d\rho\Big)^2 dr
          \quad\text{subject to}\quad \lVert f\rVert^2 = \int f(\rho)^2 \rho\, d\rho = 1 .

Its Euler-Lagrange equation (derived in :mod:`theory.derivations`) is the Airy-type
equation ``y'' = -k t y`` with ``y'(0) = 0`` and ``y(R) = 0``; normalised to ``y(0) = 1``,

.. math:: y(t) = \pi\,[\,\mathrm{Bi}'(0)\,\mathrm{Ai}(-k^{1/3} t) - \mathrm{Ai}'(0)\,\mathrm{Bi}(-k^{1/3} t)\,],

(``pi`` is 1 / the Wronskian of Ai and Bi) with ``k = (s_0 / R)^3``, where ``s_0 ~ 1.98635``
is the first positive zero of ``pi [Bi'(0) Ai(-s) - Ai'(0) Bi(-s)]``: the first zero of
the profile sits at the largest training radius ``R`` and the profile is zero beyond it.

All functions are pure numpy/scipy. Radii ``t``, ``rho``, ``R`` are in pixels.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import integrate, linalg, optimize, special

from theory._checks import finite_array, positive_scalar

__all__ = [
    "AIRY_ZERO",
    "airy_k",
    "airy_profile",
    "airy_profile_derivative",
    "decoding_energy",
    "optimal_profile",
    "optimal_amplitude",
    "optimal_energy",
    "radial_image",
]

# Ai'(0) and Bi'(0)
_AIP0 = special.airy(0.0)[1]
_BIP0 = special.airy(0.0)[3]


def _unit_profile(s: np.ndarray) -> np.ndarray:
    """y(s) for k = 1: pi [Bi'(0) Ai(-s) - Ai'(0) Bi(-s)], with y(0) = 1, y'(0) = 0."""
    ai, _, bi, _ = special.airy(-np.asarray(s, dtype=float))
    return np.pi * (_BIP0 * ai - _AIP0 * bi)


def _unit_profile_prime(s: np.ndarray) -> np.ndarray:
    """dy/ds of :func:`_unit_profile` (chain rule on Ai(-s), Bi(-s))."""
    _, aip, _, bip = special.airy(-np.asarray(s, dtype=float))
    return -np.pi * (_BIP0 * aip - _AIP0 * bip)


@lru_cache(maxsize=1)
def _first_zero() -> float:
    # y(s) = 1 at s=0 and is negative at s=3 (checked by brentq's sign requirement).
    return float(optimize.brentq(_unit_profile, 0.5, 3.0, xtol=1e-15, rtol=4 * np.finfo(float).eps))


AIRY_ZERO: float = _first_zero()
"""First positive zero ``s_0`` of the unit profile ``y'' = -s y, y(0)=1, y'(0)=0``."""


def airy_k(R: float) -> float:
    r"""The constant ``k`` of ``y'' = -k t y`` whose solution's first zero is at ``R`` (App. B).

    ``k = (s_0 / R)^3`` with ``s_0 = AIRY_ZERO``. Raises ``ValueError`` if ``R <= 0`` or not finite.
    """
    R = positive_scalar("R", R)
    return (AIRY_ZERO / R) ** 3


def airy_profile(t, R: float) -> np.ndarray:
    r"""Optimal radial profile ``f(t)`` of a bias-free disk decoder (Prop. 2, App. B).

    Solves ``y'' = -k t y``, ``y(0) = 1``, ``y'(0) = 0`` in Airy functions, with ``k = airy_k(R)``
    so that the first zero is at ``R``; returns 0 for ``t >= R`` (the maximiser of Eq. 7 puts no
    mass outside the training radii, which would only increase the norm).

    Parameters
    ----------
    t : array_like, radii >= 0 (pixels).
    R : float, largest training radius (> 0).
    """
    R = positive_scalar("R", R)
    t = finite_array("t", t)
    if np.any(t < 0):
        raise ValueError("t must be >= 0 (a radius); got a negative value")
    s = np.cbrt(airy_k(R)) * t
    return np.where(t < R, _unit_profile(s), 0.0)


def airy_profile_derivative(t, R: float) -> np.ndarray:
    """``f'(t)`` of :func:`airy_profile` for ``0 <= t < R`` (0 beyond ``R``)."""
    R = positive_scalar("R", R)
    t = finite_array("t", t)
    if np.any(t < 0):
        raise ValueError("t must be >= 0 (a radius); got a negative value")
    c = np.cbrt(airy_k(R))
    return np.where(t < R, c * _unit_profile_prime(c * t), 0.0)


def _check_grid(rho: np.ndarray, f: np.ndarray) -> None:
    if rho.ndim != 1 or f.shape != rho.shape:
        raise ValueError(f"f and rho must be 1-D arrays of the same length; got shapes {f.shape} and {rho.shape}")
    if rho.size < 3:
        raise ValueError(f"need at least 3 grid points; got {rho.size}")
    if rho[0] < 0 or np.any(np.diff(rho) <= 0):
        raise ValueError("rho must be non-negative and strictly increasing")


def decoding_energy(f, rho, R: float, *, normalize: bool = True) -> float:
    r"""Decoding energy ``J(f)`` of Eq. (7) on a radial grid (trapezoidal quadrature).

    .. math:: J(f) = \int_0^R \Big(\int_0^r f(\rho)\rho\,d\rho\Big)^2 dr

    With ``normalize=True`` (default) the value is ``J(f) / ||f||^2`` with
    ``||f||^2 = \int f^2 \rho\, d\rho`` over the whole grid, i.e. ``J`` under the constraint
    ``||f|| = 1`` of Prop. 2 (mass of ``f`` beyond ``R`` costs norm but earns no energy).
    ``rho`` should start at 0 (or close) and extend to at least ``R``.
    """
    R = positive_scalar("R", R)
    f = finite_array("f", f)
    rho = finite_array("rho", rho)
    _check_grid(rho, f)
    if rho[-1] < R:
        raise ValueError(f"the grid must reach R = {R}; it ends at {rho[-1]}")
    F = integrate.cumulative_trapezoid(f * rho, rho, initial=0.0)
    inside = rho <= R
    r_in = rho[inside]
    F_in = F[inside]
    if r_in[-1] < R:  # close the outer integral exactly at R (linear interpolation of F)
        r_in = np.append(r_in, R)
        F_in = np.append(F_in, np.interp(R, rho, F))
    energy = float(integrate.trapezoid(F_in**2, r_in))
    if not normalize:
        return energy
    norm2 = float(integrate.trapezoid(f**2 * rho, rho))
    if norm2 <= 0:
        raise ValueError("f has zero norm; J(f)/||f||^2 is undefined")
    return energy / norm2


def _fem_matrices(R: float, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact P1 finite-element matrices of Eq. (7): ``J = f^T B f`` and ``||f||^2 = f^T M f``.

    ``f`` is piecewise linear on ``n`` nodes ``0 = rho_0 < ... < rho_{n-1} = R``. The
    cumulative moment ``Phi_j(r) = int_0^r phi_j(rho) rho d rho`` of each hat function is a
    piecewise cubic, so 4-point Gauss-Legendre per element integrates ``Phi_i Phi_j`` exactly.
    """
    rho = np.linspace(0.0, R, n)
    h = rho[1] - rho[0]
    ne = n - 1
    xg, wg = np.polynomial.legendre.leggauss(4)
    x = (xg + 1.0) * h / 2.0  # offsets inside an element
    w = wg * h / 2.0
    a = rho[:-1]  # left node of each element
    # Phi at quadrature point (e, q) for every node j
    phi = np.zeros((ne, x.size, n))
    # full moments of each half-hat: left half on element j-1, right half on element j
    right_full = a * h / 2.0 + h**2 / 6.0  # node e on element e
    left_full = a * h / 2.0 + h**2 / 3.0  # node e+1 on element e
    C = np.zeros(n)
    C[:-1] += right_full
    C[1:] += left_full
    before = np.tril(np.ones((ne, n)), k=-1)[:, :n]  # node j with j+1 <= e -> fully integrated
    phi += (before * C)[:, None, :]
    X = x[None, :]
    A = a[:, None]
    e = np.arange(ne)
    # node e (descending half on element e): left half fully done + partial right half
    part_right = A * X + X**2 / 2.0 - (A * X**2 / 2.0 + X**3 / 3.0) / h
    left_done = np.where(e > 0, np.r_[0.0, left_full[:-1]], 0.0)[:, None]
    phi[e, :, e] = left_done + part_right
    # node e+1 (ascending half on element e): partial
    phi[e, :, e + 1] = (A * X**2 / 2.0 + X**3 / 3.0) / h
    P = phi.reshape(ne * x.size, n)
    wq = np.tile(w, ne)
    B = P.T @ (P * wq[:, None])
    # mass matrix with weight rho: local h/12 * [[4a+h, 2a+h], [2a+h, 4a+3h]] on [a, a+h]
    M = np.zeros((n, n))
    m00 = h * (4 * a + h) / 12.0
    m01 = h * (2 * a + h) / 12.0
    m11 = h * (4 * a + 3 * h) / 12.0
    np.add.at(M, (e, e), m00)
    np.add.at(M, (e, e + 1), m01)
    np.add.at(M, (e + 1, e), m01)
    np.add.at(M, (e + 1, e + 1), m11)
    return rho, B, M


def _grid_size(n) -> int:
    """``n`` as an int, raising ``ValueError`` unless it is an integer >= 4 (nodes of the element grid)."""
    if isinstance(n, bool):
        raise ValueError(f"n must be an integer >= 4; got {n!r}")
    try:
        ok = int(n) == n and n >= 4
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"n must be an integer >= 4; got {n!r}")
    return int(n)


def optimal_profile(R: float, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    r"""Numerical maximiser of ``J(f)`` (Eq. 7) under ``||f|| = 1`` on an ``n``-point grid.

    Rayleigh-Ritz with piecewise-linear elements on ``[0, R]``: ``J(f) = f^T B f`` and
    ``||f||^2 = f^T M f`` exactly for such ``f``, so the maximiser is the top eigenvector of the
    generalised symmetric eigenproblem ``B f = lambda M f`` (``lambda`` = the maximal energy).
    No boundary condition is imposed: ``f(R) = 0`` comes out as the natural one. Independent of
    the Airy closed form, so it can be used to check it. Returns ``(rho, f)`` with ``f(0) = 1``.
    """
    R = positive_scalar("R", R)
    n = _grid_size(n)
    rho, B, M = _fem_matrices(R, n)
    vals, vecs = linalg.eigh(B, M, subset_by_index=[n - 1, n - 1])
    f = vecs[:, 0]
    return rho, f / f[0]


def optimal_energy(R: float, n: int = 200) -> float:
    """Maximal value of ``J(f)/||f||^2`` (Eq. 7) over the ``n``-node element space (top eigenvalue).

    ``n``: an integer >= 4 (``ValueError`` otherwise), as for :func:`optimal_profile`.
    """
    R = positive_scalar("R", R)
    n = _grid_size(n)
    rho, B, M = _fem_matrices(R, n)
    return float(linalg.eigh(B, M, eigvals_only=True, subset_by_index=[n - 1, n - 1])[0])


def _pixel_radii(shape: tuple[int, int], center, supersample: int) -> np.ndarray:
    """Distances of (sub)pixel centres to ``center``, shape ``(H, W, s*s)``."""
    H, W = shape
    cy, cx = ((H - 1) / 2.0, (W - 1) / 2.0) if center is None else (float(center[0]), float(center[1]))
    off = (np.arange(supersample) + 0.5) / supersample - 0.5
    yy = np.arange(H)[:, None, None, None] + off[None, None, :, None] - cy
    xx = np.arange(W)[None, :, None, None] + off[None, None, None, :] - cx
    return np.sqrt(yy**2 + xx**2).reshape(H, W, supersample * supersample)


def optimal_amplitude(f, radii, *, center=None, supersample: int = 4) -> np.ndarray:
    r"""Optimal amplitude ``h(r) = <f, 1_{B_r}> / ||f||^2`` of Eq. (8) for a 2-D profile image.

    Parameters
    ----------
    f : array ``(H, W)``, the decoder's spatial profile on the pixel grid.
    radii : array of disk radii (pixels, >= 0).
    center : ``(row, col)`` of the disk centre; default the grid centre ``((H-1)/2, (W-1)/2)``.
    supersample : each pixel's coverage by ``B_r`` is estimated on a ``s x s`` sub-grid, so
        ``1_{B_r}`` is the pixel-area fraction inside the disk (``1`` = plain pixel-centre test).
    """
    f = finite_array("f", f)
    if f.ndim != 2:
        raise ValueError(f"f must be a 2-D image (H, W); got shape {f.shape}")
    radii = finite_array("radii", radii, ndim_min=0)
    if np.any(radii < 0):
        raise ValueError("radii must be >= 0")
    if int(supersample) != supersample or supersample < 1:
        raise ValueError(f"supersample must be a positive integer; got {supersample!r}")
    norm2 = float(np.sum(f**2))
    if norm2 == 0:
        raise ValueError("f has zero norm; h(r) = <f, 1_Br>/||f||^2 is undefined")
    d = _pixel_radii(f.shape, center, int(supersample))
    r = np.atleast_1d(radii)
    cover = (d[None] <= r[:, None, None, None]).mean(axis=-1)  # (len(r), H, W)
    h = np.tensordot(cover, f, axes=([1, 2], [0, 1])) / norm2
    return h.reshape(np.shape(radii))


def radial_image(profile, size: int, *, center=None) -> np.ndarray:
    """Render a radial profile ``f(t)`` as an ``size x size`` image ``f(|x - center|)``.

    ``profile`` is a callable of the radius, or a pair ``(t, f)`` of samples (linearly
    interpolated, 0 beyond the last sample).
    """
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer; got {size!r}")
    d = _pixel_radii((int(size), int(size)), center, 1)[..., 0]
    if callable(profile):
        return np.asarray(profile(d), dtype=float)
    t, fv = (finite_array("t", profile[0]), finite_array("f", profile[1]))
    if t.shape != fv.shape or t.ndim != 1:
        raise ValueError(f"(t, f) must be 1-D arrays of equal length; got {t.shape}, {fv.shape}")
    return np.interp(d, t, fv, right=0.0)
