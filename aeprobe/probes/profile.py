r"""Profile-vs-theory probe: the learned radial profile against the Airy profile (Newson et al., Prop. 2, App. B).

The optimal bias-free decoder profile maximises ``J(f)`` (Eq. 7); it is the Airy-type function
:func:`theory.disks.airy_profile` ``(t, R)`` whose first zero is at the largest training radius
``R``. :func:`compare_to_airy` compares a learned profile ``f(t)`` (e.g. ``SeparableReport.t,
.f_radial``) with ``c * airy_profile(t, R)``:

* range: the samples with ``0 <= t <= R`` only (``t`` = mean pixel distance of each radial bin,
  uniform weight per bin, no ``t dt`` weighting); beyond ``R`` the Airy profile is 0 and the
  network's profile is not constrained by any training disk except through the norm;
* the only free parameter is the scale ``c`` (least squares: ``c = <f, a> / <a, a>``);
* ``correlation``: Pearson correlation of ``f`` and the fitted ``c a`` on that range (scale-free;
  ``= sign(c) * corr(f, a)``, so a profile of the wrong sign is not hidden -- the scale takes it);
* ``rel_l2 = ||f - c a|| / ||f||`` on that range (0 for an exact match up to scale);
* ``energy_beyond_R``: fraction of ``sum f^2 * counts`` (pixel-weighted) at ``t > R``; small when the
  profile's support stops at ``R`` (App. C).

Does the blur matter? The theory uses sharp disks ``1_Br`` and a continuous radius. The *exact*
optimum for the actual discrete, blurred training images ``x_r = g_sigma * 1_Br`` is the first
right singular vector of the data matrix ``X`` (rows = training images): the minimiser of
``sum_r ||h_r f - x_r||^2`` over rank-1 ``h f^T`` (Eckart-Young), i.e. Eq. (6) on the real data.
:func:`data_optimal_profile` returns its radial profile, so an experiment can report
``corr(airy, data optimum)`` (how much blur, pixels and the sampled radii move the optimum) next
to ``corr(learned, airy)`` and ``corr(learned, data optimum)``; :func:`rank1_floor_mse` gives the
matching loss floor (the training MSE a bias-free decoder reaches at that optimum).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aeprobe.probes.separable import RadialProfile, radial_profile
from theory.disks import airy_profile

__all__ = ["AiryComparison", "compare_to_airy", "compare_profiles", "data_optimal_profile", "rank1_floor_mse"]


@dataclass
class AiryComparison:
    """Result of :func:`compare_to_airy` (definitions in the module docstring)."""

    R: float
    correlation: float
    rel_l2: float
    scale: float
    t: np.ndarray  # the samples used (t <= R)
    f: np.ndarray  # learned profile on them
    airy: np.ndarray  # scale * airy_profile(t, R)
    n_points: int
    t_range: tuple[float, float]
    energy_beyond_R: float | None


def _vec(name: str, a) -> np.ndarray:
    a = np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a, dtype=float).reshape(-1)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def compare_profiles(f, g) -> tuple[float, float, float]:
    """``(pearson correlation of f with scale * g, rel_l2, scale)``; the scale is fitted by least squares."""
    f, g = _vec("f", f), _vec("g", g)
    if f.shape != g.shape or f.size < 3:
        raise ValueError(f"profiles must have the same length >= 3; got {f.size} and {g.size}")
    gg = float(g @ g)
    if gg == 0 or float(f @ f) == 0:
        raise ValueError("a profile is identically zero; correlation undefined")
    c = float(f @ g) / gg
    rel = float(np.linalg.norm(f - c * g) / np.linalg.norm(f))
    fc, gc = f - f.mean(), g - g.mean()
    den = float(np.linalg.norm(fc) * np.linalg.norm(gc))
    corr = float(np.sign(c) * (fc @ gc) / den) if den > 0 and c != 0 else float("nan")
    return corr, rel, c


def compare_to_airy(t, f, R: float, *, counts=None) -> AiryComparison:
    """Compare a radial profile ``f(t)`` with ``c * airy_profile(t, R)`` on ``0 <= t <= R``.

    ``counts`` (pixels per bin, e.g. ``RadialProfile.counts``) only weights ``energy_beyond_R``;
    without it that field is ``None``.
    """
    t, f = _vec("t", t), _vec("f", f)
    if t.shape != f.shape:
        raise ValueError(f"t and f must have the same length; got {t.size} and {f.size}")
    if np.any(t < 0):
        raise ValueError("t must be >= 0 (radii)")
    if not (np.isfinite(R) and R > 0):
        raise ValueError(f"R must be a positive number, got {R!r}")
    inside = t <= R
    if inside.sum() < 3:
        raise ValueError(f"need at least 3 profile samples with t <= R = {R}; got {int(inside.sum())}")
    a = airy_profile(t[inside], R)
    corr, rel, c = compare_profiles(f[inside], a)
    beyond = None
    if counts is not None:
        w = _vec("counts", counts)
        if w.shape != f.shape:
            raise ValueError("counts must have the same length as f")
        e = w * f**2
        beyond = float(e[~inside].sum() / e.sum()) if e.sum() > 0 else float("nan")
    return AiryComparison(R=float(R), correlation=corr, rel_l2=rel, scale=c, t=t[inside], f=f[inside], airy=c * a,
                          n_points=int(inside.sum()), t_range=(float(t[inside].min()), float(t[inside].max())),
                          energy_beyond_R=beyond)


def _top_right_singular(x, max_iter: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """``(X, v, image_shape)``: data matrix ``X`` (``N x pixels``, float64) and its top right singular
    vector ``v`` by power iteration on ``X^T X`` from the mean image (relative change < 1e-10)."""
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=float)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"x must be [N, 1, H, W] or [N, H, W], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("x contains NaN or inf")
    X = a.reshape(a.shape[0], -1)
    if not np.any(X):
        raise ValueError("x is identically zero; the rank-1 optimum is undefined")
    v = X.mean(axis=0)
    if not np.any(v):
        v = np.ones(X.shape[1])
    v /= np.linalg.norm(v)
    for _ in range(max_iter):
        nv = X.T @ (X @ v)
        nv /= np.linalg.norm(nv)
        done = np.linalg.norm(nv - v) < 1e-10
        v = nv
        if done:
            break
    return X, v, a.shape[1:]


def data_optimal_profile(x, *, center=None, bin_width: float = 1.0, max_iter: int = 2000) -> RadialProfile:
    """Radial profile of the best rank-1 decoder for the images ``x`` (Eq. 6 on the data; sign: f(0) > 0).

    ``x``: ``[N, 1, H, W]`` or ``[N, H, W]`` training images. Uses the top right singular vector of
    ``X`` (``N x pixels``), computed by power iteration on ``X^T X`` started from the mean image
    (converged to a relative change < 1e-10, at most ``max_iter`` steps; the gap between the
    first two singular values of disk images is large, so this takes tens of steps).
    """
    _, v, shape = _top_right_singular(x, max_iter)
    prof = radial_profile(v.reshape(shape), center=center, bin_width=bin_width)
    if prof.f[0] < 0:
        prof = RadialProfile(prof.t, -prof.f, prof.counts, prof.center, prof.bin_width)
    return prof


def rank1_floor_mse(x, *, max_iter: int = 2000) -> float:
    r"""Smallest mean squared error any rank-1 decoder ``y_i = h_i f`` can reach on the images ``x``.

    ``min_{h, f} (1 / (N P)) sum_i ||h_i f - x_i||^2 = (||X||_F^2 - s_1^2) / (N P)`` (Eckart-Young;
    ``s_1`` the top singular value of the ``N x P`` data matrix). A bias-free disk AE that uses one
    code sign is such a decoder (Prop. 1, Eq. 5), so its training MSE cannot go below this floor;
    the gap to it says how far training is from the optimum the Airy profile describes.
    """
    X, v, _ = _top_right_singular(x, max_iter)
    s1_sq = float(np.sum((X @ v) ** 2))
    return max(0.0, float(np.sum(X**2)) - s1_sq) / X.size
