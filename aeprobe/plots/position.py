"""Figures of the position study (Newson et al., Sect. 5): learned filters vs [1, 2, 1], encoding, Dirac decoding."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from aeprobe.plots.common import _np, plt, savefig

__all__ = ["filters_vs_target", "encoding_plot", "dirac_decoding_plot"]


def filters_vs_target(filters: Sequence[np.ndarray], names: Sequence[str], cosines: Sequence[float], path,
                      *, target=(1.0, 2.0, 1.0)) -> Path:
    """Fig. 9: each layer's learned 1-D filter (scaled and sign-aligned to ``target`` by least squares) vs the target."""
    tgt = np.asarray(target, float)
    n = len(filters)
    fig, axes = plt.subplots(1, n, figsize=(1.7 * n + 0.5, 2.4), squeeze=False, sharey=True)
    for j, (w, name, c) in enumerate(zip(filters, names, cosines)):
        w = np.asarray(w, float).reshape(-1, tgt.size)[0]
        s = float(w @ tgt / (w @ w)) if w @ w > 0 else 0.0
        ax = axes[0, j]
        ax.bar(np.arange(tgt.size) - 0.18, s * w, width=0.36, label="learned (scaled)", color="C0")
        ax.bar(np.arange(tgt.size) + 0.18, tgt, width=0.36, label="[1, 2, 1]", color="C1", alpha=0.7)
        ax.set_title(f"layer {j + 1} ({name})\n|cos|={c:.3f}", fontsize=7)
        ax.set_xticks(range(tgt.size))
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6, loc="upper left")
    return savefig(fig, path)


def encoding_plot(positions, z, closed, path, *, scale: float, r2: float) -> Path:
    """Code of one-hot inputs against position, with the closed form ``c (2^L - a)`` (Prop. 3)."""
    a = _np(positions)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(a, _np(z), "o", ms=3, label="learned encoder E(x_a)")
    ax.plot(a, scale * _np(closed), "k-", lw=1, label=f"{scale:.3g}·(2^L − a), R²={r2:.4f}")
    ax.set_xlabel("position a of the one-hot")
    ax.set_ylabel("code z")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return savefig(fig, path)


def dirac_decoding_plot(outputs, positions, codes, path, *, n_lines: int = 6) -> Path:
    """Fig. 10: normalised decoded signals (rows sorted by code) as an image, plus a few of them as curves."""
    y = _np(outputs).astype(float)
    a = _np(positions).reshape(-1)
    z = _np(codes).reshape(-1)
    order = np.argsort(z)
    peak = np.abs(y).max(axis=1, keepdims=True)
    yn = y / np.where(peak > 0, peak, 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    im = axes[0].imshow(yn[order], aspect="auto", cmap="magma", vmin=min(0.0, yn.min()), vmax=1,
                        extent=(-0.5, y.shape[1] - 0.5, len(z) - 0.5, -0.5))
    axes[0].plot(a[order], np.arange(len(z)), "c.", ms=2, label="true position a")
    axes[0].set_xlabel("output sample t")
    axes[0].set_ylabel("inputs sorted by code z")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.colorbar(im, ax=axes[0])
    idx = order[np.linspace(0, len(z) - 1, n_lines).astype(int)]
    for k, i in enumerate(idx):
        axes[1].plot(yn[i], color=f"C{k}", lw=1.2, label=f"a={a[i]:.1f}")
        axes[1].axvline(a[i], color=f"C{k}", ls=":", lw=0.8)
    axes[1].set_xlabel("output sample t")
    axes[1].set_ylabel("normalised output")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=6)
    return savefig(fig, path)
