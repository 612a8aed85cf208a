r"""Code-vs-size probe: what does the scalar code ``z`` of a disk autoencoder measure? (Newson et al., Fig. 3, Fig. 11)

Fig. 3: "the code ``z`` seems to represent the area and not the radius of the input disks" --
an encoder that integrates over the disk gives ``z ~ a + b pi r^2``, one that integrates over the
perimeter ``z ~ a + b r``. :func:`code_vs_size` fits both by ordinary least squares and reports

* ``area_r2``, ``radius_r2``: coefficient of determination ``R^2`` of the linear fit of ``z`` on
  ``pi r^2`` and on ``r`` (with intercept; equal to the squared Pearson correlation);
* ``better``: ``"area"`` or ``"radius"`` (larger ``R^2``; ties -> ``"tie"``);
* ``exponent``: the power ``p`` in ``[0.1, 4]`` that best explains ``z ~ a + b r^p`` (largest
  ``R^2``, reported as ``exponent_r2``): 2 for an area code, 1 for a radius code, anything else
  for a code that is neither (a single number for "how area-like" the code is);
* ``spearman``: Spearman rank correlation of ``z`` with ``r`` -- it measures monotonicity only and
  is *the same* for area and radius (``pi r^2`` is a monotone function of ``r >= 0``), so it
  cannot discriminate between them; it is reported to show ``z`` is a monotone code.

Fig. 11 (bias-free decoder, ``y = h(r) f``): the code should equal the optimal amplitude
``h(r) = <f, 1_Br> / ||f||^2`` (Eq. 8) up to a constant ``C``. With ``f2d`` (the decoder's spatial
profile, e.g. ``SeparableReport.f_image``) the probe computes ``h(r) = <f, 1_Br>/||f||^2`` with
:func:`theory.disks.optimal_amplitude` (stored as ``amplitude``) and reports ``amplitude_r2`` (linear fit with intercept),
``amplitude_r2_origin`` (fit ``z = C h(r)`` through the origin, ``R^2`` about the mean of
``z``) and ``amplitude_scale`` ``C``. The sign of ``f`` is arbitrary, so ``C`` may be negative.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from theory.disks import optimal_amplitude

__all__ = ["LinearFit", "CodeSizeReport", "linear_fit", "power_exponent", "code_vs_size"]


@dataclass
class LinearFit:
    slope: float
    intercept: float
    r2: float


@dataclass
class CodeSizeReport:
    """Result of :func:`code_vs_size` (definitions in the module docstring)."""

    area_r2: float
    radius_r2: float
    better: str
    spearman: float
    area_fit: LinearFit
    radius_fit: LinearFit
    exponent: float
    exponent_r2: float
    amplitude_r2: float | None = None
    amplitude_r2_origin: float | None = None
    amplitude_scale: float | None = None
    amplitude: np.ndarray | None = None  # h(r) = <f, 1_Br>/||f||^2 per sample (when f2d given)
    n: int = 0


def _vec(name: str, a) -> np.ndarray:
    a = np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a, dtype=float)
    a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a
    if a.ndim == 2:
        if a.shape[1] != 1:
            raise ValueError(f"{name} must be scalar per sample (shape [N] or [N, 1]); got shape {a.shape}")
        a = a[:, 0]
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        return float("nan")
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot


def linear_fit(x, y, *, intercept: bool = True) -> LinearFit:
    """Least-squares fit ``y ~ slope * x (+ intercept)`` and its ``R^2`` (about the mean of ``y``)."""
    x, y = _vec("x", x), _vec("y", y)
    if x.shape != y.shape or x.size < 3:
        raise ValueError(f"x and y must have the same length >= 3; got {x.size} and {y.size}")
    if intercept:
        A = np.stack([x, np.ones_like(x)], axis=1)
        (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    else:
        a, b = float(x @ y / (x @ x)) if x @ x > 0 else 0.0, 0.0
    return LinearFit(float(a), float(b), _r2(y, a * x + b))


def power_exponent(z, radii, *, bounds: tuple[float, float] = (0.1, 4.0)) -> tuple[float, float]:
    """``(p, R^2)``: the exponent ``p`` in ``bounds`` maximising the ``R^2`` of the fit ``z ~ a + b r^p``
    (bounded scalar search, ``xatol = 1e-4``)."""
    z, r = _vec("z", z), _vec("radii", radii)
    if np.ptp(z) == 0:
        return float("nan"), float("nan")

    def neg_r2(p: float) -> float:
        return -linear_fit(r**p, z).r2

    res = optimize.minimize_scalar(neg_r2, bounds=bounds, method="bounded", options={"xatol": 1e-4})
    return float(res.x), float(-res.fun)


def code_vs_size(z, radii, *, f2d=None, center=None, supersample: int = 4) -> CodeSizeReport:
    """Fit the scalar codes ``z`` against disk area and radius (Fig. 3), and against ``<f, 1_Br>`` (Fig. 11).

    ``z``: ``[N]`` or ``[N, 1]`` codes; ``radii``: ``[N]`` disk radii (pixels).
    ``f2d``: optional ``[H, W]`` decoder profile image; ``center``/``supersample`` go to
    :func:`theory.disks.optimal_amplitude` (default centre ``((H-1)/2, (W-1)/2)``).
    """
    z, r = _vec("z", z), _vec("radii", radii)
    if z.shape != r.shape:
        raise ValueError(f"got {z.size} codes but {r.size} radii")
    if np.any(r < 0):
        raise ValueError("radii must be >= 0")
    if np.ptp(r) == 0:
        raise ValueError("radii are all equal; nothing to fit")
    af = linear_fit(np.pi * r**2, z)
    rf = linear_fit(r, z)
    better = "tie" if np.isclose(af.r2, rf.r2, rtol=0, atol=1e-12) else ("area" if af.r2 > rf.r2 else "radius")
    rho = float(stats.spearmanr(z, r).statistic) if np.ptp(z) > 0 else float("nan")
    p, p_r2 = power_exponent(z, r)
    rep = CodeSizeReport(area_r2=af.r2, radius_r2=rf.r2, better=better, spearman=rho, area_fit=af, radius_fit=rf,
                         exponent=p, exponent_r2=p_r2, n=int(z.size))
    if f2d is not None:
        f = np.asarray(f2d.detach().cpu().numpy() if hasattr(f2d, "detach") else f2d, dtype=float)
        f = np.squeeze(f)
        amp = optimal_amplitude(f, r, center=center, supersample=supersample)
        lf = linear_fit(amp, z)
        of = linear_fit(amp, z, intercept=False)
        rep.amplitude_r2, rep.amplitude_r2_origin, rep.amplitude_scale = lf.r2, of.r2, of.slope
        rep.amplitude = amp
    return rep
