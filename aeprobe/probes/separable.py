r"""Separable-profile probe: is the decoder output ``y(t, r) = h(r) f(t)`` (Newson et al., Eq. 5)?

Stack the outputs ``y_r = D(E(x_r))`` for disks of radii ``r_1..r_n`` as the rows of a matrix
``Y`` (``n x pixels``) and take its SVD ``Y = sum_k s_k u_k v_k^T``. Eq. (5) says ``Y`` has rank 1:

* ``rank1_energy = s_1^2 / sum_k s_k^2`` (1 for an exactly separable output);
* ``f = v_1`` reshaped to an image (unit L2 norm over pixels), ``h(r_i) = s_1 u_1[i]``, so
  ``Y ~ h f^T``; the sign is fixed so that the radial profile of ``f`` is positive at the centre
  (``f(0) > 0``; ``h`` flips with it);
* ``t, f_radial``: the radial profile of ``f`` averaged over angle (:func:`radial_profile`).

Radial binning uses the image centre ``((H-1)/2, (W-1)/2)`` by default -- the convention of
:func:`theory.disks.radial_image` / ``optimal_amplitude`` and of the disk generator
:func:`aeprobe.data.disks` (pixel ``(i, j)`` is at distance ``sqrt((i-c)^2 + (j-c)^2)`` from
``c = (size-1)/2``). Pixels are grouped in bins ``[k w, (k+1) w)`` of their distance to the
centre; each bin reports the *mean distance* of its pixels as ``t`` and the mean value as ``f``.

Note that even outputs that are *not* separable (ordinary disks) have a large first singular
value because all disks share the centre; compare ``rank1_energy`` between networks rather than
reading it against 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aeprobe.utils import check_images
from aeprobe.view import as_view

__all__ = ["RadialProfile", "SeparableReport", "radial_profile", "separable_decomposition", "separable_profile"]


@dataclass
class RadialProfile:
    """Angle-averaged profile: ``t[k]`` mean pixel distance in bin k, ``f[k]`` mean value, ``counts[k]`` pixels."""

    t: np.ndarray
    f: np.ndarray
    counts: np.ndarray
    center: tuple[float, float]
    bin_width: float


@dataclass
class SeparableReport:
    """Result of :func:`separable_decomposition` (see the module docstring for the definitions)."""

    radii: np.ndarray
    rank1_energy: float
    singular_values: np.ndarray
    f_image: np.ndarray
    h: np.ndarray
    t: np.ndarray
    f_radial: np.ndarray
    center: tuple[float, float]
    rel_residual: float  # ||Y - h f^T||_F / ||Y||_F = sqrt(1 - rank1_energy)


def _center(shape: tuple[int, int], center) -> tuple[float, float]:
    H, W = shape
    if center is None:
        return ((H - 1) / 2.0, (W - 1) / 2.0)
    if len(center) != 2 or not all(np.isfinite(center)):
        raise ValueError(f"center must be a finite (row, col) pair, got {center!r}")
    return (float(center[0]), float(center[1]))


def radial_profile(image, *, center=None, bin_width: float = 1.0) -> RadialProfile:
    """Mean of ``image`` over rings of width ``bin_width`` around ``center`` (default the grid centre).

    ``image``: ``[H, W]`` (or ``[1, H, W]``) array. Empty bins are dropped.
    """
    img = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image, dtype=float)
    img = np.squeeze(img)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D [H, W] (a singleton channel is allowed), got shape {np.shape(image)}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or inf")
    if not (bin_width > 0 and np.isfinite(bin_width)):
        raise ValueError(f"bin_width must be a positive number, got {bin_width!r}")
    c = _center(img.shape, center)
    yy, xx = np.indices(img.shape, dtype=float)
    d = np.hypot(yy - c[0], xx - c[1]).ravel()
    k = np.floor(d / bin_width).astype(int)
    counts = np.bincount(k)
    sums = np.bincount(k, weights=img.ravel())
    dsum = np.bincount(k, weights=d)
    keep = counts > 0
    return RadialProfile(t=dsum[keep] / counts[keep], f=sums[keep] / counts[keep], counts=counts[keep], center=c,
                         bin_width=float(bin_width))


def separable_decomposition(outputs, radii, *, center=None, bin_width: float = 1.0) -> SeparableReport:
    """Rank-1 SVD of decoder outputs stacked over radii (Eq. 5); see the module docstring.

    ``outputs``: ``[n, H, W]`` or ``[n, 1, H, W]`` array/tensor (``n >= 2``); ``radii``: ``[n]``.
    """
    y = outputs.detach().cpu().numpy() if hasattr(outputs, "detach") else np.asarray(outputs)
    y = np.asarray(y, dtype=float)
    if y.ndim == 4 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 3:
        raise ValueError(f"outputs must be [n, H, W] or [n, 1, H, W], got shape {np.shape(outputs)}")
    n = y.shape[0]
    r = np.asarray(radii.detach().cpu().numpy() if hasattr(radii, "detach") else radii, dtype=float).reshape(-1)
    if r.shape[0] != n:
        raise ValueError(f"got {n} outputs but {r.shape[0]} radii")
    if n < 2:
        raise ValueError("need outputs for at least 2 radii")
    if not np.all(np.isfinite(y)):
        raise ValueError("outputs contain NaN or inf")
    Y = y.reshape(n, -1)
    u, s, vt = np.linalg.svd(Y, full_matrices=False)
    total = float(np.sum(s**2))
    if total == 0:
        raise ValueError("all outputs are zero; the decomposition is undefined")
    f_img = vt[0].reshape(y.shape[1:])
    h = s[0] * u[:, 0]
    prof = radial_profile(f_img, center=center, bin_width=bin_width)
    if prof.f[0] < 0 or (prof.f[0] == 0 and np.sum(prof.f * prof.counts) < 0):
        f_img, h = -f_img, -h
        prof = RadialProfile(prof.t, -prof.f, prof.counts, prof.center, prof.bin_width)
    e1 = float(s[0] ** 2 / total)
    return SeparableReport(radii=r, rank1_energy=e1, singular_values=s, f_image=f_img, h=h, t=prof.t, f_radial=prof.f,
                           center=prof.center, rel_residual=float(np.sqrt(max(0.0, 1.0 - e1))))


def separable_profile(model, x, radii, *, center=None, bin_width: float = 1.0, batch_size: int = 256,
                      device=None) -> SeparableReport:
    """Reconstruct disks ``x`` (``[n, 1, H, W]``) of radii ``radii`` and decompose the outputs.

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view (only its reconstruction is used).
    """
    ae = as_view(model)
    y = ae.reconstructions(check_images(x), batch_size=batch_size, device=device)
    return separable_decomposition(y, radii, center=center, bin_width=bin_width)
