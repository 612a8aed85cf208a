r"""Centred geometric shapes on a pixel grid (Newson et al., Sect. 3 and App. A).

A disk of radius ``r`` centred on an ``m x m`` grid, blurred by a Gaussian ``g_sigma`` (Eq. 20),

.. math:: x_r = g_\sigma * \mathbb 1_{B_r}, \qquad
          x_r(t) = \frac1N \sum_{i=1}^N \mathbb 1_{B_r}(t + \xi_i),\ \xi_i \sim \mathcal N(0, \sigma^2 I)
          \quad\text{(Eq. 21, Monte Carlo)}.

The expectation of Eq. (21) is available in closed form: ``|t + xi|^2 / sigma^2`` follows a
non-central chi-square law with 2 degrees of freedom and non-centrality ``|t|^2 / sigma^2``, so

.. math:: x_r(t) = P(|t + \xi| < r) = F_{\chi'^2_2(|t|^2/\sigma^2)}(r^2 / \sigma^2).

``method="exact"`` (default) evaluates that CDF; ``method="monte_carlo"`` is Eq. (21) literally.
Both are point values of the blurred indicator at pixel centres; ``tests/test_data.py`` checks
that they agree within the Monte Carlo error. ``sigma`` is the standard deviation in pixels (the
paper writes "variance sigma" without giving its value; we default to 1 px, a slight blur).
``sigma=0`` gives the hard indicator ``|t| < r``.

The grid centre is ``((m-1)/2, (m-1)/2)``, as in :func:`theory.disks.radial_image`, so that the
largest radius ``m/2`` touches the border. Radii are drawn uniformly on ``[r_min, r_max]``
(paper: ``U(0, m/2)``), optionally with a *hole* ``(lo, hi)`` of excluded radii (paper: 11-18 px of
32), sampled exactly by inverting the CDF of the uniform law on the remaining set.

Squares (half side ``r``; exact blur = product of two 1-D Gaussian CDF differences) and
axis-aligned or rotated ellipses (semi-axes ``a, b``; blurred by supersampling and a discrete
Gaussian filter) share the interface, as the paper's conclusion suggests studying them next.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage, special, stats

from aeprobe.device import resolve_device

__all__ = ["ShapeBatch", "disks", "squares", "ellipses", "sample_radii", "disk_profile_exact",
           "disk_profile_monte_carlo"]


@dataclass
class ShapeBatch:
    """Images ``[n, 1, size, size]`` (float32, values in [0, 1]) and their generating parameters
    (``params['radius']`` for disks, ``'half_side'`` for squares, ``'a'``, ``'b'``, ``'angle'`` for
    ellipses), tensors of shape ``[n]`` on the same device."""

    images: torch.Tensor
    params: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device) -> "ShapeBatch":
        return ShapeBatch(self.images.to(device), {k: v.to(device) for k, v in self.params.items()})


# ----------------------------------------------------------------------------- parameters
def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    return int(size)


def _check_range(r_min, r_max, size: int, what: str = "radius") -> tuple[float, float]:
    r_min, r_max = float(r_min), float(r_max if r_max is not None else size / 2)
    if not (math.isfinite(r_min) and math.isfinite(r_max)) or r_min < 0 or r_max <= r_min:
        raise ValueError(f"need 0 <= r_min < r_max for the {what}, got r_min={r_min}, r_max={r_max}")
    return r_min, r_max


def sample_radii(n: int, r_min: float, r_max: float, hole=None, *, rng: np.random.Generator) -> np.ndarray:
    """``n`` radii uniform on ``[r_min, r_max]`` minus the open interval ``hole = (lo, hi)``.

    Exact inverse-CDF sampling of the uniform law on ``[r_min, lo] U [hi, r_max]`` (no rejection).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    u = rng.random(int(n))
    if hole is None:
        return r_min + u * (r_max - r_min)
    lo, hi = (float(h) for h in hole)
    if not (r_min <= lo < hi <= r_max):
        raise ValueError(f"hole {tuple(hole)} must satisfy r_min <= lo < hi <= r_max with "
                         f"r_min={r_min}, r_max={r_max}")
    left, right = lo - r_min, r_max - hi
    if left + right <= 0:
        raise ValueError(f"hole {tuple(hole)} removes the whole range [{r_min}, {r_max}]")
    s = u * (left + right)
    return np.where(s < left, r_min + s, hi + (s - left))


def _given(values, n, name: str) -> np.ndarray:
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, dtype=float)
    v = np.atleast_1d(v).astype(float)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {v.shape}")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    if n is not None and int(n) != v.size:
        raise ValueError(f"n={n} but {v.size} {name} given; pass n=None with explicit {name}")
    return v


def _check_sigma(sigma) -> None:
    if not (math.isfinite(float(sigma)) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")


def _sizes(n, given, name: str, r_min, r_max, hole, size: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """The given sizes (validated), else ``n`` draws uniform on ``[r_min, r_max]`` minus ``hole``."""
    if given is not None:
        return _given(given, n, name)
    if n is None:
        raise ValueError(f"give either n (random sizes) or {name}")
    lo, hi = _check_range(r_min, r_max, size, what)
    return sample_radii(n, lo, hi, hole, rng=rng)


def _pixel_offsets(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (size - 1) / 2.0
    t = np.arange(size) - c
    return np.meshgrid(t, t, indexing="ij")  # (row, col) offsets from the centre


# ----------------------------------------------------------------------------- disks
def disk_profile_exact(radii: np.ndarray, dist: np.ndarray, sigma: float) -> np.ndarray:
    """``P(|t + xi| < r)`` for ``|t| = dist`` (Eq. 20 at a point), shape ``[len(radii), len(dist)]``."""
    r = np.asarray(radii, float)[:, None]
    d = np.asarray(dist, float)[None, :]
    if sigma == 0:
        return (d < r).astype(float)
    s2 = float(sigma) ** 2
    return stats.ncx2.cdf(r ** 2 / s2, 2, np.broadcast_to(d ** 2 / s2, (r.shape[0], d.shape[1])))


def disk_profile_monte_carlo(radii: np.ndarray, dist: np.ndarray, sigma: float, n_samples: int,
                             rng: np.random.Generator) -> np.ndarray:
    """Eq. (21): the fraction of ``n_samples`` Gaussian offsets ``xi`` with ``|t + xi| < r``.

    One sample ``xi_1..xi_N`` serves every pixel (by isotropy only ``|t|`` matters); each value is
    an unbiased estimate with standard deviation at most ``0.5 / sqrt(N)``.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    xi = rng.normal(0.0, float(sigma), size=(int(n_samples), 2))
    d = np.asarray(dist, float)
    dd = np.sort(np.hypot(d[:, None] + xi[None, :, 0], xi[None, :, 1]), axis=1)  # [n_dist, N]
    r = np.asarray(radii, float)
    out = np.empty((r.size, d.size))
    for j in range(d.size):
        out[:, j] = np.searchsorted(dd[j], r, side="left") / n_samples
    return out


def disks(n: int | None = None, *, size: int = 64, r_min: float = 0.0, r_max: float | None = None, hole=None,
          radii=None, sigma: float = 1.0, method: str = "exact", n_samples: int = 4000, seed: int = 0,
          device=None) -> ShapeBatch:
    """Centred blurred disks ``g_sigma * 1_{B_r}`` (Newson et al., Eq. 20-21).

    Parameters
    ----------
    n : number of disks with random radii (omit when ``radii`` is given).
    size : image side ``m`` (paper: 64).
    r_min, r_max : radius range of the uniform law (default ``r_max = size / 2``).
    hole : ``(lo, hi)`` radii excluded from training sets (paper: ``(11, 18)``).
    radii : fixed radii (evaluation sets); then ``r_min/r_max/hole`` only validate nothing.
    sigma : Gaussian blur standard deviation in pixels (``0``: hard disks).
    method : ``"exact"`` (non-central chi-square CDF) or ``"monte_carlo"`` (Eq. 21, ``n_samples``).
    seed : seeds the radius and Monte Carlo draws (same seed, same images).
    """
    size = _check_size(size)
    _check_sigma(sigma)
    if method not in ("exact", "monte_carlo"):
        raise ValueError(f"method must be 'exact' or 'monte_carlo', got {method!r}")
    rng = np.random.default_rng(seed)
    r = _sizes(n, radii, "radii", r_min, r_max, hole, size, rng, "radius")
    dr, dc = _pixel_offsets(size)
    dist = np.hypot(dr, dc)
    uniq, inverse = np.unique(np.round(dist, 9), return_inverse=True)
    if method == "exact":
        prof = disk_profile_exact(r, uniq, sigma)
    else:
        prof = disk_profile_monte_carlo(r, uniq, sigma, n_samples, rng)
    imgs = prof[:, inverse.reshape(-1)].reshape(r.size, 1, size, size)
    dev = resolve_device(device)
    return ShapeBatch(torch.as_tensor(imgs, dtype=torch.float32, device=dev),
                      {"radius": torch.as_tensor(r, dtype=torch.float32, device=dev)})


# ----------------------------------------------------------------------------- squares and ellipses
def squares(n: int | None = None, *, size: int = 64, r_min: float = 0.0, r_max: float | None = None, hole=None,
            half_sides=None, sigma: float = 1.0, seed: int = 0, device=None) -> ShapeBatch:
    """Centred axis-aligned squares of half side ``r``, blurred exactly:
    ``x(t) = [Phi((r - t_1)/sigma) - Phi((-r - t_1)/sigma)] [same for t_2]``."""
    size = _check_size(size)
    _check_sigma(sigma)
    r = _sizes(n, half_sides, "half_sides", r_min, r_max, hole, size, np.random.default_rng(seed), "half side")
    t = np.arange(size) - (size - 1) / 2.0
    if sigma == 0:
        one = (np.abs(t)[None, :] < r[:, None]).astype(float)
    else:
        one = special.ndtr((r[:, None] - t[None, :]) / sigma) - special.ndtr((-r[:, None] - t[None, :]) / sigma)
    imgs = one[:, :, None] * one[:, None, :]
    dev = resolve_device(device)
    return ShapeBatch(torch.as_tensor(imgs[:, None], dtype=torch.float32, device=dev),
                      {"half_side": torch.as_tensor(r, dtype=torch.float32, device=dev)})


def ellipses(n: int, *, size: int = 64, r_min: float = 1.0, r_max: float | None = None, rotate: bool = False,
             sigma: float = 1.0, supersample: int = 4, seed: int = 0, device=None) -> ShapeBatch:
    """Centred ellipses with semi-axes ``a, b ~ U(r_min, r_max)`` (and angle ``~ U(0, pi)`` if
    ``rotate``), rendered as the area fraction of each pixel (``supersample^2`` sub-pixels) and
    blurred with a discrete Gaussian of standard deviation ``sigma`` pixels."""
    size = _check_size(size)
    lo, hi = _check_range(r_min, r_max, size, "semi-axis")
    _check_sigma(sigma)
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    rng = np.random.default_rng(seed)
    a = sample_radii(n, lo, hi, rng=rng)
    b = sample_radii(n, lo, hi, rng=rng)
    ang = rng.random(n) * np.pi if rotate else np.zeros(n)
    s = int(supersample)
    sub = (np.arange(size * s) + 0.5) / s - 0.5 - (size - 1) / 2.0
    yy, xx = np.meshgrid(sub, sub, indexing="ij")
    imgs = np.empty((n, 1, size, size))
    for i in range(n):
        c, si = math.cos(ang[i]), math.sin(ang[i])
        u, v = c * xx + si * yy, -si * xx + c * yy
        inside = ((u / a[i]) ** 2 + (v / b[i]) ** 2 < 1).astype(float)
        img = inside.reshape(size, s, size, s).mean(axis=(1, 3))
        imgs[i, 0] = ndimage.gaussian_filter(img, sigma, mode="constant") if sigma > 0 else img
    dev = resolve_device(device)
    to = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev)  # noqa: E731
    return ShapeBatch(to(imgs), {"a": to(a), "b": to(b), "angle": to(ang)})
