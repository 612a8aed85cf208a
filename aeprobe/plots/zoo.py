"""Figures of the autoencoder zoo (bake-off) study and the upsampling comparison.

Measuring lives in ``experiments/zoo.py`` and :mod:`aeprobe.probes`; these functions only draw
arrays they are given to PNG files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from aeprobe.plots.common import get_cmap, image_grid, Line2D, savefig, subplots

__all__ = ["image_rows", "latent_scatter", "roc_curves", "bar_chart", "grouped_bars", "loss_curves"]


def to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def image_rows(rows: Mapping[str, object], path: str | os.PathLike, *, titles: Sequence[str] | None = None,
               suptitle: str | None = None, vmin: float | None = 0.0, vmax: float | None = 1.0) -> Path:
    """One labelled row of images per entry of ``rows`` (``label -> [k, C, H, W]``, equal ``k``)."""
    labels = list(rows)
    if not labels:
        raise ValueError("image_rows needs at least one row")
    arrs = [to_numpy(rows[k]) for k in labels]
    k = arrs[0].shape[0]
    if any(a.shape[0] != k for a in arrs):
        raise ValueError(f"every row needs the same number of images, got {[a.shape[0] for a in arrs]}")
    stack = np.concatenate(arrs)
    return image_grid(stack, path, ncols=k, titles=list(titles) if titles is not None else None,
                      row_labels=labels, suptitle=suptitle, vmin=vmin, vmax=vmax)


def latent_scatter(points: Mapping[str, object], labels, path: str | os.PathLike, *, method: str = "PCA",
                   notes: Mapping[str, str] | None = None, ncols: int = 3) -> Path:
    """Panels of 2-D embeddings (``name -> [N, 2]``) coloured by integer ``labels``."""
    names = list(points)
    y = to_numpy(labels).astype(int)
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False)
    cmap = get_cmap("tab10")
    for ax, name in zip(axes.flat, names):
        p = to_numpy(points[name])
        ax.scatter(p[:, 0], p[:, 1], c=[cmap(int(v) % 10) for v in y], s=5, alpha=0.8, linewidths=0)
        ax.set_title(name + (f"\n{notes[name]}" if notes and name in notes else ""), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles = [Line2D([], [], marker="o", ls="", color=cmap(c % 10), label=str(c)) for c in np.unique(y)]
    fig.legend(handles=handles, loc="center right", fontsize=7, title="class")
    fig.suptitle(f"latent codes of test images, {method} to 2-D", fontsize=10)
    return savefig(fig, path)


def roc_curves(curves: Mapping[str, tuple], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """ROC curves ``name -> (fpr, tpr, auc)`` on one axis, AUC in the legend."""
    fig, ax = subplots(figsize=(5.2, 4.6))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(to_numpy(fpr), to_numpy(tpr), lw=1.3, label=f"{name} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, title="kind (AUROC)", title_fontsize=7)
    ax.grid(alpha=0.3)
    return savefig(fig, path)


def bar_chart(values: Mapping[str, float], path: str | os.PathLike, *, errors: Mapping[str, float] | None = None,
              ylabel: str = "", title: str | None = None, reference: tuple[str, float] | None = None,
              logy: bool = False) -> Path:
    """Bars ``name -> value`` (optional error bars and a horizontal reference line ``(label, y)``)."""
    names = list(values)
    v = np.array([np.nan if values[n] is None else float(values[n]) for n in names])
    err = None if errors is None else np.array([float(errors.get(n) or 0.0) for n in names])
    fig, ax = subplots(figsize=(0.7 * len(names) + 2.5, 3.6))
    ax.bar(range(len(names)), v, yerr=err, capsize=3, color="tab:blue", alpha=0.8)
    if reference is not None:
        ax.axhline(reference[1], color="k", ls="--", lw=1, label=reference[0])
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return savefig(fig, path)


def grouped_bars(groups: Mapping[str, Mapping[str, float]], path: str | os.PathLike, *, ylabel: str = "",
                 title: str | None = None, logy: bool = False, floor: float | None = None) -> Path:
    """Grouped bars: ``groups[series][category] = value`` (categories on the x axis).

    With ``logy``, values <= 0 are drawn at ``floor`` (default: a decade below the smallest
    positive value) and marked "0".
    """
    series = list(groups)
    cats = list(next(iter(groups.values())))
    vals = np.array([[float(groups[s][c]) for c in cats] for s in series])
    if logy:
        pos = vals[vals > 0]
        floor = floor if floor is not None else (pos.min() / 10 if pos.size else 1e-12)
    fig, ax = subplots(figsize=(1.1 * len(cats) + 2.5, 3.8))
    width = 0.8 / len(series)
    for i, s in enumerate(series):
        x = np.arange(len(cats)) + (i - (len(series) - 1) / 2) * width
        h = vals[i].copy()
        zero = h <= 0
        if logy:
            h[zero] = floor
        ax.bar(x, h, width, label=s, alpha=0.85)
        for xi, z in zip(x, zero):
            if z:
                ax.text(xi, floor, "0", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(cats)), cats, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return savefig(fig, path)


def loss_curves(curves: Mapping[str, tuple], path: str | os.PathLike, *, ylabel: str = "loss",
                title: str | None = None, logy: bool = True) -> Path:
    """Per-epoch ``name -> (train, val or None)`` curves; validation dashed in the same colour."""
    fig, ax = subplots(figsize=(6.0, 4.0))
    cmap = get_cmap("tab10")
    for i, (name, (tr, va)) in enumerate(curves.items()):
        tr = to_numpy(tr)
        ax.plot(np.arange(1, tr.size + 1), tr, color=cmap(i % 10), lw=1.2, label=name)
        if va is not None and len(va):
            va = to_numpy(va)
            ax.plot(np.arange(1, va.size + 1), va, color=cmap(i % 10), lw=1.0, ls="--")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return savefig(fig, path)
