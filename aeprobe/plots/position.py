"""Figures of the position study (Newson et al., Sect. 5): learned filters vs [1, 2, 1], encoding, Dirac decoding."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from aeprobe.plots.common import plt, savefig

__all__ = ["filters_vs_target", "encoding_plot", "dirac_decoding_plot"]


def _np(a) -> np.ndarray:
    """``a`` (tensor or array-like) as a numpy array."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def filters_vs_target(filters: Sequence[np.ndarray], names: Sequence[str], cosines: Sequence[float], path,
                      *, target=(1.0, 2.0, 1.0), live: Sequence[np.ndarray] | None = None,
                      extra: tuple | None = None) -> Path:
    """Fig. 9: each layer's learned 1-D filter (scaled and sign-aligned to ``target`` by least squares on its
    live taps) vs the target; dead taps (``live[j]`` False: they only ever see zero padding) are drawn hollow.

    ``extra = (filters, cosines, label, live)`` adds a second encoder's filters (same layers) as another bar.
    """
    tgt = np.asarray(target, float)
    n = len(filters)
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n + 0.5, 2.6), squeeze=False, sharey=True)
    sets = [(filters, cosines, "learned, biases", live)] + ([extra] if extra is not None else [])
    width = 0.8 / (len(sets) + 1)
    x = np.arange(tgt.size)
    for j in range(n):
        ax = axes[0, j]
        titles = []
        for k, (fs, cs, lab, lv) in enumerate(sets):
            w = np.asarray(fs[j], float).reshape(-1, tgt.size)[0]
            m = np.ones(tgt.size, bool) if lv is None else np.asarray(lv[j], bool)
            s = float(w[m] @ tgt[m] / (w[m] @ w[m])) if w[m] @ w[m] > 0 else 0.0
            pos = x + (k - len(sets) / 2) * width
            ax.bar(pos[m], s * w[m], width=width, label=lab, color=f"C{k}")
            if not m.all():
                ax.bar(pos[~m], s * w[~m], width=width, fill=False, edgecolor=f"C{k}", ls="--",
                       label="dead tap (padding only)" if k == 0 else None)
            titles.append(f"{cs[j]:.3f}")
        ax.bar(x + (len(sets) / 2) * width, tgt, width=width, label="[1, 2, 1]", color="gray", alpha=0.7)
        ax.set_title(f"layer {j + 1}\n|cos| " + " / ".join(titles), fontsize=7)
        ax.set_xticks(range(tgt.size))
        ax.tick_params(labelsize=6)
    handles, labels = [], []
    for ax in axes[0]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    axes[0, 0].legend(handles, labels, fontsize=6, loc="upper left")
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
