"""Shared figure helpers: image grids, line plots and heatmaps written to PNG.

Figures are built as plain :class:`matplotlib.figure.Figure` objects (:func:`subplots`), not
through pyplot: plotting never changes matplotlib's global state -- importing ``aeprobe.plots``
does not pick a backend (a notebook keeps its inline/widget backend; on a headless machine
matplotlib itself falls back to Agg), no figure window opens, and none is left registered.
:func:`savefig` writes atomically (see :func:`aeprobe.reporting.atomic_writer`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["subplots", "savefig", "image_grid", "image_scale", "line_plot", "heatmap", "get_cmap", "to_numpy", "Line2D"]


def to_numpy(a) -> np.ndarray:
    """``a`` (tensor, array, list) as a numpy array; tensors are detached and moved to the CPU."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)



def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, dpi=None, layout=None, **kw):
    """``(fig, axes)`` like ``plt.subplots`` but on a standalone :class:`Figure` (no pyplot, no
    backend, nothing to close); ``kw`` go to :meth:`Figure.subplots` (``squeeze``, ``sharey``...)."""
    fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kw)


def get_cmap(name: str):
    """The registered colormap ``name`` (``matplotlib.colormaps[name]``)."""
    return matplotlib.colormaps[name]


def savefig(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` to ``path`` atomically (parents created; format from the suffix, PNG by
    default) and release it. A pyplot figure is closed in pyplot too."""
    from aeprobe.reporting import atomic_writer

    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    try:
        with atomic_writer(path) as fh:
            fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight")
    finally:
        if getattr(fig.canvas, "manager", None) is not None:  # made through pyplot: unregister it
            import matplotlib.pyplot as plt

            plt.close(fig)
    return path


def image_scale(images, *, vmin: float | None = None, vmax: float | None = None,
                cmap: str | None = None) -> dict:
    """How :func:`image_grid` colours ``images``: ``{"cmap", "vmin", "vmax", "colorbar", "kind"}``.

    With ``vmin`` and ``vmax`` both None (the default) the scale follows the data (NaN/inf ignored):

    * ``kind="unit"``: every value in ``[0, 1]`` (images): grey, ``0..1``, no colour bar;
    * ``kind="signed"``: some value < 0 (attributions, filters, differences): a diverging map
      (``RdBu_r``) centred at 0, ``vmin=-m, vmax=m`` with ``m = max |value|``, with a colour bar;
    * ``kind="positive"``: values >= 0 beyond 1: grey, ``0..max``, with a colour bar.

    No value is clipped by an automatic scale. Explicit ``vmin``/``vmax`` are used as given
    (``kind="fixed"``; a missing one is taken from the data), with a colour bar unless they are
    ``0`` and ``1``; ``cmap`` overrides the colour map in every case.
    """
    a = to_numpy(images).astype(float, copy=False)
    finite = a[np.isfinite(a)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    if vmin is None and vmax is None:
        if lo >= 0.0 and hi <= 1.0:
            out = dict(cmap="gray", vmin=0.0, vmax=1.0, colorbar=False, kind="unit")
        elif lo < 0.0:
            m = max(abs(lo), abs(hi)) or 1.0
            out = dict(cmap="RdBu_r", vmin=-m, vmax=m, colorbar=True, kind="signed")
        else:
            out = dict(cmap="gray", vmin=0.0, vmax=hi, colorbar=True, kind="positive")
    else:
        v0 = lo if vmin is None else float(vmin)
        v1 = hi if vmax is None else float(vmax)
        if not v1 > v0:
            raise ValueError(f"vmax must be > vmin, got vmin={v0}, vmax={v1}")
        out = dict(cmap="gray", vmin=v0, vmax=v1, colorbar=(v0, v1) != (0.0, 1.0), kind="fixed")
    if cmap is not None:
        out["cmap"] = cmap
    return out


def image_grid(
    images,
    path: str | os.PathLike,
    *,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    suptitle: str | None = None,
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool | None = None,
) -> Path:
    """Write a grid of images, all on one colour scale.

    ``images``: array ``[N, H, W]``, ``[N, 1, H, W]`` or ``[N, 3, H, W]`` (channels first,
    as torch), or ``[N, H, W, 3]``. ``row_labels`` label each row of the grid.
    The scale is chosen by :func:`image_scale`: images in ``[0, 1]`` in grey; signed data
    (attribution maps, filters) on a symmetric diverging scale centred at 0 with a colour bar
    showing the range -- nothing is clipped unless ``vmin``/``vmax`` are given. ``colorbar``
    overrides whether the colour bar is drawn. RGB images outside ``[0, 1]`` are mapped
    linearly into it (signed: 0 -> mid grey), and the range is written under the grid.

        image_grid(attributions[:, 0], "ig.png")      # signed -> RdBu_r, -m..m, colour bar
        image_grid(x[:16], "inputs.png", ncols=8)     # [0, 1] -> grey
    """
    arr = to_numpy(images)
    if arr.ndim == 4 and arr.shape[1] in (1, 3):
        arr = arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)
    if arr.ndim not in (3, 4):
        raise ValueError(f"image_grid expects [N,H,W], [N,C,H,W] or [N,H,W,3]; got shape {arr.shape}")
    scale = image_scale(arr, vmin=vmin, vmax=vmax, cmap=cmap)
    v0, v1 = scale["vmin"], scale["vmax"]
    show_bar = scale["colorbar"] if colorbar is None else bool(colorbar)
    rgb = arr.ndim == 4
    note = None
    if rgb:  # imshow takes RGB floats in [0, 1] only: map the chosen range onto it
        if (v0, v1) != (0.0, 1.0):
            arr = (arr.astype(float) - v0) / (v1 - v0)
            note = f"RGB values mapped linearly from [{v0:.3g}, {v1:.3g}] to [0, 1]"
        arr = np.clip(arr, 0.0, 1.0)  # only clips with an explicit narrower range
    n = arr.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    extra_w = 0.9 if (show_bar and not rgb) else 0.0
    fig, axes = subplots(nrows, ncols, figsize=(1.3 * ncols + extra_w, 1.3 * nrows + (0.4 if suptitle else 0)),
                         squeeze=False)
    mappable = None
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            if rgb:
                ax.imshow(arr[i], interpolation="nearest")
            else:
                mappable = ax.imshow(arr[i], cmap=scale["cmap"], vmin=v0, vmax=v1, interpolation="nearest")
            if titles is not None and i < len(titles):
                ax.set_title(titles[i], fontsize=7)
        else:
            ax.axis("off")
    if row_labels is not None:
        for r, lab in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(lab, fontsize=8)
    if show_bar and mappable is not None:
        finite = arr[np.isfinite(arr)]
        extend = "neither"
        if finite.size:
            below, above = bool(finite.min() < v0), bool(finite.max() > v1)
            extend = "both" if below and above else "min" if below else "max" if above else "neither"
        fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.04, pad=0.02, extend=extend)
    if note:
        fig.text(0.5, 0.0, note, ha="center", va="top", fontsize=7)
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
    fig, ax = subplots(figsize=(5.5, 3.8))
    for label, (x, y) in curves.items():
        ax.plot(to_numpy(x), to_numpy(y), (styles or {}).get(label, "-"), label=label, lw=1.5, ms=3)
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
    v = to_numpy(values).astype(float)
    if v.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"heatmap values shape {v.shape} does not match labels ({len(row_labels)}, {len(col_labels)})")
    fig, ax = subplots(figsize=(1.2 * len(col_labels) + 2, 0.8 * len(row_labels) + 1.5))
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
