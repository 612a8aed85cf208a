"""Figures of the CAE bottleneck study (Manakov et al.): Fig. 1 loss curves, Fig. 2 area x
compression heatmaps with marginals, Fig. 7/8 interpolation and iteration grids.

Measuring lives in :mod:`aeprobe.probes`; these functions only draw arrays to PNG files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np

from aeprobe.plots.common import image_grid, savefig, subplots


def to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def interpolation_grid(frames, path: str | os.PathLike, *, row_labels: Sequence[str] | None = None,
                       title: str | None = None) -> Path:
    """Grid of interpolations: one row per pair, ``steps`` columns (``x_a`` left, ``x_b`` right).

    ``frames``: ``[steps, C, H, W]`` or ``[B, steps, C, H, W]`` from
    :func:`aeprobe.probes.latent.interpolate`.
    """
    f = to_numpy(frames)
    if f.ndim == 4:
        f = f[None]
    if f.ndim != 5:
        raise ValueError(f"interpolation frames must be [steps,C,H,W] or [B,steps,C,H,W], got shape {f.shape}")
    b, steps = f.shape[:2]
    titles = [f"t={t:.2f}" for t in np.linspace(0, 1, steps)]
    return image_grid(f.reshape(b * steps, *f.shape[2:]), path, ncols=steps, titles=titles, row_labels=row_labels,
                      suptitle=title, vmin=0.0, vmax=1.0)  # decoded images: the [0, 1] image scale


def iteration_grid(frames, path: str | os.PathLike, *, steps: Sequence[int] | None = None,
                   row_labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Grid of AE iterations: one row per image, one column per kept iteration.

    ``frames``: ``[K, C, H, W]`` or ``[K, B, C, H, W]`` from :func:`aeprobe.probes.latent.iterate`;
    ``steps``: the iteration numbers (column titles).
    """
    f = to_numpy(frames)
    if f.ndim == 4:
        f = f[:, None]
    if f.ndim != 5:
        raise ValueError(f"iteration frames must be [K,C,H,W] or [K,B,C,H,W], got shape {f.shape}")
    k, b = f.shape[:2]
    if steps is not None and len(steps) != k:
        raise ValueError(f"{len(steps)} step labels for {k} kept iterations")
    titles = [f"iter {s}" for s in (steps if steps is not None else range(k))]
    grid = f.transpose(1, 0, *range(2, f.ndim)).reshape(b * k, *f.shape[2:])
    return image_grid(grid, path, ncols=k, titles=titles, row_labels=row_labels, suptitle=title, vmin=0.0,
                      vmax=1.0)  # decoded images: the [0, 1] image scale


def area_compression_heatmap(values, path: str | os.PathLike, *, areas: Sequence[str], compressions: Sequence[str],
                             title: str = "", fmt: str = ".3g", higher_is_better: bool = False,
                             std=None) -> Path:
    """Heatmap of a figure per (area, compression) with mean +- sd marginals (paper Fig. 2).

    ``values``: ``[len(areas), len(compressions)]`` (means over seeds; NaN = missing);
    ``std``: optional same-shape seed standard deviations printed under each mean. The
    marginals are the mean +- sd of each row / column's cell means. Brighter = better,
    as in the paper (``higher_is_better`` picks the colour direction).
    """
    v = to_numpy(values).astype(float)
    if v.shape != (len(areas), len(compressions)):
        raise ValueError(f"values shape {v.shape} does not match ({len(areas)} areas, {len(compressions)} compressions)")
    s = None if std is None else to_numpy(std).astype(float)
    cmap = "viridis" if higher_is_better else "viridis_r"
    fig, ax = subplots(figsize=(1.25 * len(compressions) + 2.6, 0.85 * len(areas) + 1.9))
    finite = v[np.isfinite(v)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cmap, aspect="auto", vmin=lo, vmax=hi if hi > lo else lo + 1e-12)
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if not np.isfinite(v[i, j]):
                txt = "n/a"
            else:
                txt = format(v[i, j], fmt) + (f"\n±{format(s[i, j], '.2g')}" if s is not None and np.isfinite(s[i, j]) else "")
            norm = (v[i, j] - lo) / (hi - lo) if hi > lo and np.isfinite(v[i, j]) else 0.5
            dark = norm > 0.5 if not higher_is_better else norm < 0.5
            ax.text(j, i, txt, ha="center", va="center", fontsize=7.5, color="white" if dark else "black")

    def ms(a):
        a = a[np.isfinite(a)]
        return "n/a" if a.size == 0 else f"{format(a.mean(), fmt)}±{format(a.std(), '.2g')}"

    for i in range(v.shape[0]):
        ax.text(len(compressions) - 0.4, i, ms(v[i]), ha="left", va="center", fontsize=7.5)
    # column marginals go under the tick labels so they never overlap them
    ax.set_xticks(range(len(compressions)), [f"{c}\n{ms(v[:, j])}" for j, c in enumerate(compressions)],
                  fontsize=7.5)
    ax.set_yticks(range(len(areas)), areas)
    ax.set_xlabel("compression (bottleneck volume / input volume)")
    ax.set_ylabel("bottleneck area")
    ax.set_xlim(-0.5, len(compressions) - 0.5)
    ax.set_ylim(len(areas) - 0.5, -0.5)
    fig.colorbar(im, ax=ax, pad=0.22)
    if title:
        ax.set_title(title, fontsize=10)
    return savefig(fig, path)


def loss_curve_panels(panels: Mapping[str, Mapping[str, tuple]], path: str | os.PathLike, *, logy: bool = True,
                      ylabel: str = "MSE", suptitle: str | None = None) -> Path:
    """Paper Fig. 1: one panel per key of ``panels`` (e.g. per compression); in each, one
    colour per label (e.g. per area) with the training loss dashed and test loss solid.

    ``panels = {panel: {label: (train_loss, test_loss)}}``, each a per-epoch sequence (mean
    over seeds); ``test_loss`` may be None.
    """
    if not panels:
        raise ValueError("no panels to plot")
    n = len(panels)
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig, axes = subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows), squeeze=False, sharey=True)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (ptitle, curves) in zip(axes.flat, panels.items()):
        for c, (label, (tr, te)) in enumerate(curves.items()):
            col = colors[c % len(colors)]
            tr = to_numpy(tr)
            ax.plot(np.arange(1, tr.size + 1), tr, "--", color=col, lw=1.2, label=f"{label} train")
            if te is not None:
                te = to_numpy(te)
                ax.plot(np.arange(1, te.size + 1), te, "-", color=col, lw=1.6, label=f"{label} test")
        ax.set_title(ptitle, fontsize=9)
        ax.set_xlabel("epoch")
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes[0, 0].set_ylabel(ylabel)
    axes[0, 0].legend(fontsize=6.5)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return savefig(fig, path)


__all__ = ["interpolation_grid", "iteration_grid", "area_compression_heatmap", "loss_curve_panels"]


def similarity_figure(matrices: Mapping[str, np.ndarray], path: str | os.PathLike, *, names: Sequence[str],
                      blocks: Sequence[str], groups: np.ndarray, group_names: Sequence[str],
                      title: str | None = None) -> Path:
    """Similarity of every pair of models: one heatmap per measure (``matrices``: title -> ``[k, k]``;
    models in the order of ``names``, white lines where ``blocks`` (e.g. each model's area)
    changes), and a panel with every pair as a point in its group (``groups[i, j]``: index into
    ``group_names``, negative = not shown) and each group's mean as a bar."""
    names, blocks = list(names), list(blocks)
    k = len(names)
    mats = [(t, np.asarray(m, dtype=float)) for t, m in matrices.items()]
    fig, axes = subplots(1, len(mats) + 1, figsize=(4.2 * len(mats) + 4.6, 4.6),
                         gridspec_kw=dict(width_ratios=[1] * len(mats) + [0.9]))
    cuts = [i - 0.5 for i in range(1, k) if blocks[i] != blocks[i - 1]]
    for ax, (t, m) in zip(axes[:-1], mats):
        im = ax.imshow(m, vmin=min(0.0, float(np.nanmin(m))) if np.isfinite(m).any() else 0.0, vmax=1.0,
                       cmap="viridis")
        ax.set_xticks(range(k), names, rotation=90, fontsize=6)
        ax.set_yticks(range(k), names, fontsize=6)
        for c in cuts:
            ax.axhline(c, color="white", lw=1.2)
            ax.axvline(c, color="white", lw=1.2)
        ax.set_title(t, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax = axes[-1]
    iu = np.triu_indices(k, 1)
    g = np.asarray(groups)[iu]
    rng = np.random.default_rng(0)
    width = 0.7 / max(1, len(mats))
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for n, (t, m) in enumerate(mats):
        off = (n - (len(mats) - 1) / 2) * width
        vals = m[iu]
        labelled = False
        for gi in range(len(group_names)):
            v = vals[g == gi]
            v = v[np.isfinite(v)]
            if v.size:
                ax.scatter(gi + off + rng.uniform(-0.3, 0.3, v.size) * width, v, s=7, alpha=0.5,
                           color=colors[n % len(colors)], label=None if labelled else t)
                labelled = True
                ax.plot([gi + off - 0.4 * width, gi + off + 0.4 * width], [v.mean()] * 2, color="black", lw=2)
    ax.set_xticks(range(len(group_names)),
                  [f"{name}\n({int((g == i).sum())} pairs)" for i, name in enumerate(group_names)], fontsize=7)
    ax.set_ylabel("similarity of the two codes")
    ax.set_title("pairs of models by group (bar = mean)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return savefig(fig, path)
