"""Shared figure helpers: image grids, line plots and heatmaps written to PNG."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def savefig(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` to ``path`` (parents created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def image_grid(
    images,
    path: str | os.PathLike,
    *,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    suptitle: str | None = None,
    cmap: str = "gray",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
) -> Path:
    """Write a grid of images.

    ``images``: array ``[N, H, W]``, ``[N, 1, H, W]`` or ``[N, 3, H, W]`` (channels first,
    as torch), or ``[N, H, W, 3]``. ``row_labels`` label each row of the grid.
    """
    arr = _np(images)
    if arr.ndim == 4 and arr.shape[1] in (1, 3):
        arr = arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)
    if arr.ndim not in (3, 4):
        raise ValueError(f"image_grid expects [N,H,W], [N,C,H,W] or [N,H,W,3]; got shape {arr.shape}")
    n = arr.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.3 * nrows + (0.4 if suptitle else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            img = np.clip(arr[i], vmin, vmax) if (vmin is not None and vmax is not None and arr[i].ndim == 3) else arr[i]
            ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if titles is not None and i < len(titles):
                ax.set_title(titles[i], fontsize=7)
        else:
            ax.axis("off")
    if row_labels is not None:
        for r, lab in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(lab, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return savefig(fig, path)


def line_plot(
    curves: Mapping[str, tuple],
    path: str | os.PathLike,
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
    logy: bool = False,
    styles: Mapping[str, str] | None = None,
) -> Path:
    """Plot several ``label -> (x, y)`` curves on one axis."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, (x, y) in curves.items():
        ax.plot(_np(x), _np(y), (styles or {}).get(label, "-"), label=label, lw=1.5, ms=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    return savefig(fig, path)


def heatmap(
    values,
    path: str | os.PathLike,
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str | None = None,
    xlabel: str = "",
    ylabel: str = "",
    fmt: str = ".3g",
    cmap: str = "viridis",
) -> Path:
    """Annotated heatmap of a 2-D array (e.g. bottleneck area x compression)."""
    v = _np(values).astype(float)
    if v.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"heatmap values shape {v.shape} does not match labels ({len(row_labels)}, {len(col_labels)})")
    fig, ax = plt.subplots(figsize=(1.2 * len(col_labels) + 2, 0.8 * len(row_labels) + 1.5))
    im = ax.imshow(v, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels)
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    finite = v[np.isfinite(v)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            txt = "n/a" if not np.isfinite(v[i, j]) else format(v[i, j], fmt)
            ax.text(j, i, txt, ha="center", va="center", fontsize=8, color="white" if v[i, j] < mid else "black")
    fig.colorbar(im, ax=ax)
    if title:
        ax.set_title(title)
    return savefig(fig, path)
