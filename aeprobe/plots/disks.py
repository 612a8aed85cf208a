"""Figures of the disk study (Newson et al., Sect. 4 and App. B/C). Every function writes one PNG and returns its path.

Inputs are plain numpy arrays (produced by :mod:`aeprobe.probes`), so the figures can be redrawn
from saved results without the models.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from aeprobe.plots.common import _np, plt, savefig

__all__ = [
    "io_grid", "code_vs_size_plot", "profiles_vs_airy", "cross_sections", "amplitude_plot",
    "interpolation_strip", "hole_errors_plot", "hole_outputs_grid", "lambda_sweep_plot", "attribution_plot",
]

_COLORS = ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]


def _img(a) -> np.ndarray:
    a = _np(a)
    if a.ndim == 4:
        a = a[:, 0]
    return a


def io_grid(rows: Mapping[str, np.ndarray], path, *, col_titles: Sequence[str] | None = None,
            border: Sequence[str] | None = None, suptitle: str | None = None) -> Path:
    """Grid with one row per label (e.g. input / output with biases / output bias-free), one column per disk.

    ``border``: optional colour per column (e.g. green = radius seen in training, red = unseen, as
    in the paper's Fig. 5/6).
    """
    labels = list(rows)
    arrs = [_img(rows[k]) for k in labels]
    n = arrs[0].shape[0]
    fig, axes = plt.subplots(len(labels), n, figsize=(1.25 * n, 1.3 * len(labels) + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, (lab, arr) in enumerate(zip(labels, arrs)):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(np.clip(arr[j], 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if border is not None:
                for sp in ax.spines.values():
                    sp.set_edgecolor(border[j])
                    sp.set_linewidth(2.5)
            if i == 0 and col_titles is not None:
                ax.set_title(col_titles[j], fontsize=7)
        axes[i, 0].set_ylabel(lab, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return savefig(fig, path)


def code_vs_size_plot(radii, codes: Mapping[str, np.ndarray], path, *, fits: Mapping[str, tuple] | None = None) -> Path:
    """Fig. 3 (right): code ``z`` against radius and against area ``pi r^2`` for each model.

    ``fits[label] = (area_r2, radius_r2)`` adds the R^2 values to the legend.
    """
    r = _np(radii).astype(float)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for k, (lab, z) in enumerate(codes.items()):
        z = _np(z).reshape(-1)
        extra = ""
        if fits and lab in fits:
            extra = f" (R² area {fits[lab][0]:.3f}, radius {fits[lab][1]:.3f})"
        axes[0].plot(r, z, ".", ms=3, color=_COLORS[k % 7], label=lab + extra)
        axes[1].plot(np.pi * r**2, z, ".", ms=3, color=_COLORS[k % 7], label=lab)
    axes[0].set_xlabel("radius r (px)")
    axes[1].set_xlabel("area πr² (px²)")
    for ax in axes:
        ax.set_ylabel("code z")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return savefig(fig, path)


def profiles_vs_airy(curves: Mapping[str, tuple], path, *, R: float | Sequence[float], title: str | None = None,
                     styles: Mapping[str, str] | None = None) -> Path:
    """Radial profiles ``label -> (t, f)`` (already scaled) with the largest training radius ``R`` marked."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for k, (lab, (t, f)) in enumerate(curves.items()):
        ax.plot(_np(t), _np(f), (styles or {}).get(lab, "-"), label=lab, lw=1.6, ms=3.5)
    for Rv in np.atleast_1d(R):
        ax.axvline(float(Rv), color="gray", ls=":", lw=1)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("distance to centre t (px)")
    ax.set_ylabel("profile f(t)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return savefig(fig, path)


def cross_sections(outputs, radii, path, *, title: str | None = None, row: int | None = None) -> Path:
    """Fig. 4 (bottom): the central row of each output image, one curve per disk radius."""
    y = _img(outputs)
    r = _np(radii).reshape(-1)
    row = y.shape[1] // 2 if row is None else row
    fig, ax = plt.subplots(figsize=(6, 3.6))
    cmap = plt.get_cmap("viridis")
    for i in range(y.shape[0]):
        ax.plot(np.arange(y.shape[2]), y[i, row], color=cmap(i / max(1, y.shape[0] - 1)), lw=1.2, label=f"r={r[i]:.1f}")
    ax.set_xlabel("column (px)")
    ax.set_ylabel(f"output, row {row}")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return savefig(fig, path)


def amplitude_plot(radii, h, path, *, z=None, amplitude=None, r2: float | None = None) -> Path:
    """Left: ``h(r)`` of the rank-1 decomposition. Right (Fig. 11): code ``z`` against ``<f, 1_Br>/||f||^2``."""
    r = _np(radii).reshape(-1)
    ncols = 2 if (z is not None and amplitude is not None) else 1
    fig, axes = plt.subplots(1, ncols, figsize=(4.6 * ncols, 3.6), squeeze=False)
    order = np.argsort(r)
    axes[0, 0].plot(r[order], _np(h).reshape(-1)[order], "-", color="C0")
    axes[0, 0].set_xlabel("radius r (px)")
    axes[0, 0].set_ylabel("h(r) (rank-1 amplitude)")
    axes[0, 0].grid(alpha=0.3)
    if ncols == 2:
        a = _np(amplitude).reshape(-1)
        zz = _np(z).reshape(-1)
        axes[0, 1].plot(a, zz, ".", ms=3, color="C1")
        c = float(a @ zz / (a @ a))
        xs = np.linspace(a.min(), a.max(), 50)
        axes[0, 1].plot(xs, c * xs, "k--", lw=1, label=f"z = C·h, R² = {r2:.4f}" if r2 is not None else "z = C·h")
        axes[0, 1].set_xlabel("<f, 1_Br> / ||f||²  (Eq. 8)")
        axes[0, 1].set_ylabel("code z")
        axes[0, 1].grid(alpha=0.3)
        axes[0, 1].legend(fontsize=7)
    return savefig(fig, path)


def interpolation_strip(images, zs, path, *, suptitle: str | None = None) -> Path:
    """Fig. 3 (left): decoded images for linearly increasing codes ``zs``."""
    y = _img(images)
    z = _np(zs).reshape(-1)
    fig, axes = plt.subplots(1, y.shape[0], figsize=(1.2 * y.shape[0], 1.6), squeeze=False)
    for j in range(y.shape[0]):
        ax = axes[0, j]
        ax.imshow(np.clip(y[j], 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"z={z[j]:.3g}", fontsize=6)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return savefig(fig, path)


def hole_errors_plot(radii, errors: Mapping[str, np.ndarray], codes: Mapping[str, np.ndarray], path, *,
                     hole: tuple[float, float]) -> Path:
    """Fig. 7: per regulariser, reconstruction MSE against radius (left, log) and code ``z`` against radius (right);
    the unobserved radii ``hole`` are shaded."""
    r = _np(radii).reshape(-1)
    order = np.argsort(r)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, lab in enumerate(errors):
        axes[0].plot(r[order], _np(errors[lab]).reshape(-1)[order], "-", color=_COLORS[k % 7], lw=1.3, label=lab)
        if lab in codes:
            z = _np(codes[lab]).reshape(-1)
            zn = (z - z.min()) / (np.ptp(z) or 1.0)
            axes[1].plot(r[order], zn[order], ".", ms=2.5, color=_COLORS[k % 7], label=lab)
    for ax in axes:
        ax.axvspan(hole[0], hole[1], color="red", alpha=0.1, lw=0)
        ax.set_xlabel("radius r (px)")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("reconstruction MSE")
    axes[1].set_ylabel("code z (min-max normalised)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    return savefig(fig, path)


def hole_outputs_grid(inputs, outputs: Mapping[str, np.ndarray], radii, path, *, hole: tuple[float, float]) -> Path:
    """Fig. 6/7 (bottom): inputs and each regulariser's outputs; red border = radius in the hole."""
    r = _np(radii).reshape(-1)
    border = ["red" if hole[0] <= x <= hole[1] else "green" for x in r]
    rows = {"input": inputs, **outputs}
    return io_grid(rows, path, col_titles=[f"r={x:.1f}" for x in r], border=border)


def lambda_sweep_plot(lams, in_hole, out_hole, path) -> Path:
    """Fig. 8: MSE in / outside the hole against the psi3 weight."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(_np(lams), _np(in_hole), "o-", label="radii in the hole")
    ax.plot(_np(lams), _np(out_hole), "s-", label="observed radii")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("psi3 weight λ (paper units)")
    ax.set_ylabel("reconstruction MSE")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return savefig(fig, path)


def attribution_plot(inputs, attributions, radii, path, *, t=None, density=None) -> Path:
    """Integrated-gradients maps of ``z`` for a few disks, plus the attribution per unit input against radius."""
    x = _img(inputs)
    A = _np(attributions)
    r = _np(radii).reshape(-1)
    n = x.shape[0]
    extra = 1 if density is not None else 0
    fig, axes = plt.subplots(1, n + extra, figsize=(1.9 * n + 3.2 * extra, 2.4), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * n + [1.7] * extra})
    for j in range(n):
        m = float(np.abs(A[j]).max()) or 1.0
        axes[0, j].imshow(A[j], cmap="RdBu_r", vmin=-m, vmax=m)
        axes[0, j].contour(x[j], levels=[0.5], colors="k", linewidths=0.6)
        axes[0, j].set_xticks([])
        axes[0, j].set_yticks([])
        axes[0, j].set_title(f"r={r[j]:.1f}", fontsize=7)
    if extra:
        ax = axes[0, n]
        ax.plot(_np(t), _np(density), ".-", ms=3)
        ax.set_xlabel("t (px)", fontsize=7)
        ax.set_ylabel("attribution / input", fontsize=7)
        ax.set_title("mean IG per unit input", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return savefig(fig, path)
