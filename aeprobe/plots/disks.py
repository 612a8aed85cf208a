"""Figures of the disk study (Newson et al., Sect. 4 and App. B/C). Every function writes one PNG and returns its path.

Inputs are plain numpy arrays (produced by :mod:`aeprobe.probes`), so the figures can be redrawn
from saved results without the models.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from aeprobe.plots.common import get_cmap, savefig, subplots, to_numpy

__all__ = [
    "io_grid", "code_vs_size_plot", "profiles_vs_airy", "cross_sections", "amplitude_plot",
    "interpolation_strip", "hole_errors_plot", "hole_outputs_grid", "lambda_sweep_plot", "attribution_plot",
    "training_curve_plot",
]

_COLORS = ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]


def _img(a) -> np.ndarray:
    a = to_numpy(a)
    if a.ndim == 4:
        a = a[:, 0]
    return a


def io_grid(rows: Mapping[str, np.ndarray], path, *, col_titles: Sequence[str] | None = None,
            border: Sequence[str] | None = None, suptitle: str | None = None) -> Path:
    """Grid with one row per label (e.g. input / output with biases / output bias-free), one column per disk.

    ``border``: optional colour per column (e.g. green = radius seen in training, red = unseen, as
    in the paper's Fig. 5/6). The tiles are composed into one image (one axes, not one per tile:
    a grid of 24 axes took ~1 s to draw), values clipped to [0, 1], grey on a white background.
    """
    from matplotlib.colors import to_rgb

    labels = list(rows)
    arrs = [np.clip(_img(rows[k]).astype(float), 0, 1) for k in labels]
    n, (h, w) = arrs[0].shape[0], arrs[0].shape[1:]
    frame, gap = max(1, h // 24), max(2, h // 10)  # coloured frame and white gap around each tile, pixels
    th, tw = h + 2 * frame + gap, w + 2 * frame + gap
    mosaic = np.ones((len(labels) * th, n * tw, 3))
    for i, arr in enumerate(arrs):
        for j in range(n):
            y, x = i * th + gap // 2, j * tw + gap // 2
            if border is not None:
                mosaic[y:y + h + 2 * frame, x:x + w + 2 * frame] = to_rgb(border[j])
            mosaic[y + frame:y + frame + h, x + frame:x + frame + w] = arr[j][..., None]
    fig, ax = subplots(figsize=(1.25 * n, 1.3 * len(labels) + (0.4 if suptitle else 0)))
    ax.imshow(mosaic, interpolation="nearest", aspect="equal")
    ax.set_xticks([(j + 0.5) * tw - 0.5 for j in range(n)], list(col_titles) if col_titles is not None else [""] * n,
                  fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([(i + 0.5) * th - 0.5 for i in range(len(labels))], labels, fontsize=8)
    ax.tick_params(length=0)
    for sp in ax.spines.values():
        sp.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return savefig(fig, path)


def code_vs_size_plot(radii, codes: Mapping[str, np.ndarray], path, *, fits: Mapping[str, tuple] | None = None) -> Path:
    """Fig. 3 (right): code ``z`` against radius and against area ``pi r^2`` for each model.

    Codes are min-max normalised and sign-aligned (increasing with ``r``) so that several networks
    share the axes; ``fits[label] = (area_r2, radius_r2[, exponent])`` adds the fit values to the legend.
    """
    r = to_numpy(radii).astype(float)
    fig, axes = subplots(1, 2, figsize=(10, 3.8))
    for k, (lab, z) in enumerate(codes.items()):
        z = to_numpy(z).reshape(-1).astype(float)
        z = (z - z.min()) / (np.ptp(z) or 1.0)
        if np.corrcoef(r, z)[0, 1] < 0:
            z = 1.0 - z
        extra = ""
        if fits and lab in fits:
            f = fits[lab]
            extra = f": R² area {f[0]:.3f}, radius {f[1]:.3f}" + (f", z~r^{f[2]:.2f}" if len(f) > 2 else "")
        axes[0].plot(r, z, ".-", ms=3, lw=0.6, color=_COLORS[k % 7], label=lab + extra)
        axes[1].plot(np.pi * r**2, z, ".-", ms=3, lw=0.6, color=_COLORS[k % 7], label=lab)
    axes[0].set_xlabel("radius r (px)")
    axes[1].set_xlabel("area πr² (px²)")
    for ax in axes:
        ax.set_ylabel("code z (normalised, sign-aligned)")
        ax.grid(alpha=0.3)
    axes[1].plot([np.pi * r.min() ** 2, np.pi * r.max() ** 2], [0, 1], "k:", lw=0.8, label="linear in area")
    axes[0].plot([r.min(), r.max()], [0, 1], "k--", lw=0.8, label="linear in radius")
    axes[0].legend(fontsize=6)
    axes[1].legend(fontsize=6)
    return savefig(fig, path)


def training_curve_plot(epochs, loss, correlation, path, *, floor: float | None = None) -> Path:
    """Bias-free training: loss per epoch (log) with the rank-1 floor, and the Airy correlation per epoch."""
    e = to_numpy(epochs).reshape(-1)
    fig, axes = subplots(1, 2, figsize=(10, 3.4))
    axes[0].plot(e, to_numpy(loss), "o-", ms=3, label="training MSE")
    if floor is not None:
        axes[0].axhline(floor, color="k", ls="--", lw=1, label=f"rank-1 floor {floor:.4f}")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("MSE")
    axes[1].plot(e, to_numpy(correlation), "o-", ms=3, color="C1", label="corr(f, Airy) on t ≤ R")
    axes[1].axhline(0.99, color="gray", ls=":", lw=1, label="0.99")
    axes[1].set_ylabel("correlation")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return savefig(fig, path)


def profiles_vs_airy(curves: Mapping[str, tuple], path, *, R: float | Sequence[float], title: str | None = None,
                     styles: Mapping[str, str] | None = None) -> Path:
    """Radial profiles ``label -> (t, f)`` (already scaled) with the largest training radius ``R`` marked."""
    fig, ax = subplots(figsize=(6, 3.8))
    for k, (lab, (t, f)) in enumerate(curves.items()):
        ax.plot(to_numpy(t), to_numpy(f), (styles or {}).get(lab, "-"), label=lab, lw=1.6, ms=3.5)
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
    r = to_numpy(radii).reshape(-1)
    row = y.shape[1] // 2 if row is None else row
    fig, ax = subplots(figsize=(6, 3.6))
    cmap = get_cmap("viridis")
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
    r = to_numpy(radii).reshape(-1)
    ncols = 2 if (z is not None and amplitude is not None) else 1
    fig, axes = subplots(1, ncols, figsize=(4.6 * ncols, 3.6), squeeze=False)
    order = np.argsort(r)
    axes[0, 0].plot(r[order], to_numpy(h).reshape(-1)[order], "-", color="C0")
    axes[0, 0].set_xlabel("radius r (px)")
    axes[0, 0].set_ylabel("h(r) (rank-1 amplitude)")
    axes[0, 0].grid(alpha=0.3)
    if ncols == 2:
        a = to_numpy(amplitude).reshape(-1)
        zz = to_numpy(z).reshape(-1)
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
    """Fig. 3 (left): decoded images for linearly increasing codes ``zs`` (one row of :func:`io_grid`)."""
    z = to_numpy(zs).reshape(-1)
    return io_grid({"": images}, path, col_titles=[f"z={v:.3g}" for v in z], suptitle=suptitle)


def _aligned(z, r) -> np.ndarray:
    """Min-max normalised code, flipped if needed so that it increases with the radius overall."""
    z = to_numpy(z).reshape(-1).astype(float)
    zn = (z - z.min()) / (np.ptp(z) or 1.0)
    return 1.0 - zn if np.ptp(z) > 0 and np.corrcoef(r, zn)[0, 1] < 0 else zn


_STYLES = ["-", "--", "-.", ":"]


def hole_errors_plot(radii, errors: Mapping[str, np.ndarray], codes: Mapping[str, np.ndarray], path, *,
                     hole: tuple[float, float]) -> Path:
    """Fig. 7: per regulariser, reconstruction MSE against radius (left, log) and code ``z`` against radius (right,
    normalised and sign-aligned); the unobserved radii ``hole`` are shaded."""
    r = to_numpy(radii).reshape(-1)
    order = np.argsort(r)
    fig, axes = subplots(1, 2, figsize=(11, 4))
    for k, lab in enumerate(errors):
        style = dict(color=_COLORS[k % 7], ls=_STYLES[k % 4], lw=1.5)
        axes[0].plot(r[order], to_numpy(errors[lab]).reshape(-1)[order], label=lab, **style)
        if lab in codes:
            axes[1].plot(r[order], _aligned(codes[lab], r)[order], marker=".", ms=3, label=lab, **style)
    for ax in axes:
        ax.axvspan(hole[0], hole[1], color="red", alpha=0.12, lw=0, label="hole (unseen radii)")
        ax.set_xlabel("radius r (px)")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("reconstruction MSE per disk")
    axes[1].set_ylabel("code z (normalised, sign-aligned)")
    axes[0].legend(fontsize=7)
    handles, labels = axes[1].get_legend_handles_labels()
    axes[1].legend(handles[:-1], labels[:-1], fontsize=7)
    return savefig(fig, path)


def hole_outputs_grid(inputs, outputs: Mapping[str, np.ndarray], radii, path, *, hole: tuple[float, float]) -> Path:
    """Fig. 6/7 (bottom): inputs and each regulariser's outputs; red border = radius in the hole."""
    r = to_numpy(radii).reshape(-1)
    border = ["red" if hole[0] <= x <= hole[1] else "green" for x in r]
    rows = {"input": inputs, **outputs}
    return io_grid(rows, path, col_titles=[f"r={x:.1f}" for x in r], border=border)


def lambda_sweep_plot(radii, errors: Mapping[str, np.ndarray], lams, path, *, hole: tuple[float, float],
                      baseline=None) -> Path:
    """Fig. 8: psi3 weight sweep. Left: MSE per radius for each weight (``errors[label]``, in the order of
    ``lams``), with the unregularised net (``baseline``) for reference. Right: mean MSE in / outside the
    hole against the weight."""
    r = to_numpy(radii).reshape(-1)
    order = np.argsort(r)
    inh = (r >= hole[0]) & (r <= hole[1])
    fig, axes = subplots(1, 2, figsize=(11, 4))
    if baseline is not None:
        axes[0].plot(r[order], to_numpy(baseline).reshape(-1)[order], color="k", lw=1.2, label="no regulariser")
    ins, outs = [], []
    for k, lab in enumerate(errors):
        e = to_numpy(errors[lab]).reshape(-1)
        axes[0].plot(r[order], e[order], color=_COLORS[(k + 1) % 7], ls=_STYLES[k % 4], lw=1.5, label=f"psi3 {lab}")
        ins.append(e[inh].mean())
        outs.append(e[~inh].mean())
    axes[0].axvspan(hole[0], hole[1], color="red", alpha=0.12, lw=0)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("radius r (px)")
    axes[0].set_ylabel("reconstruction MSE per disk")
    axes[0].legend(fontsize=7)
    lam = to_numpy(lams).astype(float)
    axes[1].plot(lam, ins, "o-", color="C3", label="radii in the hole")
    axes[1].plot(lam, outs, "s-", color="C0", label="observed radii")
    if baseline is not None:
        b = to_numpy(baseline).reshape(-1)
        axes[1].axhline(b[inh].mean(), color="C3", ls=":", lw=1, label="no regulariser, hole")
        axes[1].axhline(b[~inh].mean(), color="C0", ls=":", lw=1, label="no regulariser, observed")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("psi3 weight λ (data term: per-pixel mean)")
    axes[1].set_ylabel("mean reconstruction MSE")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    return savefig(fig, path)


def attribution_plot(inputs, attributions, radii, path, *, t=None, density=None) -> Path:
    """Integrated-gradients maps of ``z`` for a few disks, plus the attribution per unit input against radius."""
    x = _img(inputs)
    A = to_numpy(attributions)
    r = to_numpy(radii).reshape(-1)
    n = x.shape[0]
    extra = 1 if density is not None else 0
    fig, axes = subplots(1, n + extra, figsize=(1.9 * n + 3.2 * extra, 2.4), squeeze=False,
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
        ax.plot(to_numpy(t), to_numpy(density), ".-", ms=3)
        ax.set_xlabel("t (px)", fontsize=7)
        ax.set_ylabel("attribution / input", fontsize=7)
        ax.set_title("mean IG per unit input", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return savefig(fig, path)
