"""Figures of ``aeprobe inspect`` (:mod:`aeprobe.inspection`): each takes numbers or arrays and a path.

Nothing here measures anything; the readings under the figures are computed elsewhere, from the
same numbers (:mod:`aeprobe.inspection.readings`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from aeprobe.plots.common import image_scale, savefig, subplots, to_numpy

__all__ = ["as_display", "plot_architecture", "plot_identity", "plot_overfitting", "plot_homogeneity",
           "plot_image_rows", "plot_attribution", "plot_probe"]

_PART_COLOURS = {"encoder": "tab:blue", "decoder": "tab:orange", "": "tab:gray"}


def as_display(x) -> np.ndarray:
    """Samples as 2-D pictures: ``[N, H, W]`` (one channel, or the channel mean of more than 3),
    ``[N, H, W, 3]`` (three channels), ``[N, C, L]`` signals as ``C x L`` strips, ``[N, D]``
    vectors as squares when ``D`` is a perfect square, else ``1 x D`` strips."""
    a = to_numpy(x).astype(np.float32)
    if a.ndim == 4:
        if a.shape[1] == 1:
            return a[:, 0]
        if a.shape[1] == 3:
            return a.transpose(0, 2, 3, 1)
        return a.mean(1)
    if a.ndim == 3:
        return a
    if a.ndim == 2:
        side = int(round(np.sqrt(a.shape[1])))
        return a.reshape(a.shape[0], side, side) if side * side == a.shape[1] else a[:, None, :]
    flat = a.reshape(a.shape[0], -1)
    return flat[:, None, :]


def plot_architecture(layers: Sequence[Mapping], path: str | os.PathLike, *, max_layers: int = 40) -> Path:
    """Horizontal bars: parameters per conv / linear layer (log scale), coloured by encoder /
    decoder; the largest ``max_layers`` layers when there are more."""
    rows = list(layers)
    if len(rows) > max_layers:
        keep = sorted(range(len(rows)), key=lambda i: -rows[i]["params"])[:max_layers]
        rows = [rows[i] for i in sorted(keep)]
    fig, ax = subplots(figsize=(7.5, 0.28 * max(len(rows), 3) + 1.2))
    if not rows:
        ax.text(0.5, 0.5, "no conv / linear layers", ha="center", va="center")
        ax.set_axis_off()
        return savefig(fig, path)
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [r["params"] for r in rows], color=[_PART_COLOURS.get(r["part"], "tab:gray") for r in rows])
    labels = []
    for r in rows:
        geo = f" k{'x'.join(map(str, r['kernel']))} s{'x'.join(map(str, r['stride']))}" if r.get("kernel") else ""
        labels.append(f"{r['name']} ({r['type']}{geo})")
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (weight + bias)")
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=p or "other") for p, c in _PART_COLOURS.items() if any(r["part"] == p for r in rows)]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return savefig(fig, path)


def plot_identity(numbers: Mapping, path: str | os.PathLike) -> Path:
    """Left: reconstruction MSE on the data and on each out-of-distribution set (log scale).
    Right: the unexplained fraction of each OOD set (0 = copied, 1 = ignored)."""
    names = ["data"] + list(numbers["ood_errors"])
    errs = [numbers["in_dist_error"]] + [numbers["ood_errors"][k] for k in names[1:]]
    fig, axes = subplots(1, 2, figsize=(9.5, 3.4))
    ax = axes[0]
    ax.bar(range(len(names)), [max(e or 0.0, 1e-12) for e in errs], color=["tab:blue"] + ["tab:red"] * (len(names) - 1))
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("reconstruction MSE")
    ax.set_title("error on the data vs far from it", fontsize=9)
    ax = axes[1]
    un = [numbers["ood_unexplained"][k] for k in names[1:]]
    ax.bar(range(len(un)), [u if u is not None else 0.0 for u in un], color="tab:red")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    ax.set_xticks(range(len(un)), names[1:], fontsize=8)
    ax.set_ylabel("unexplained fraction (0 = copied)")
    jd = numbers.get("jacobian_distance")
    ax.set_title("||J - I||²/d = " + ("n/a" if jd is None else f"{jd:.3g}"), fontsize=9)
    fig.tight_layout()
    return savefig(fig, path)


def plot_overfitting(numbers: Mapping, path: str | os.PathLike) -> Path:
    """Left: the errors of the split (train, held-out, refit decoder on held-out codes, refit on
    training codes). Right: the gap and its encoder / decoder parts (plain and budget-matched)."""
    fig, axes = subplots(1, 2, figsize=(9.5, 3.4))
    ax = axes[0]
    keys = [("train_error", "train"), ("test_error", "held-out"), ("refit_error", "refit\n(held-out codes)"),
            ("refit_seen_error", "refit\n(train codes)")]
    keys = [(k, lab) for k, lab in keys if numbers.get(k) is not None]
    ax.bar(range(len(keys)), [numbers[k] for k, _ in keys], color=["tab:blue", "tab:red", "tab:purple", "tab:gray"][:len(keys)])
    ax.set_xticks(range(len(keys)), [lab for _, lab in keys], fontsize=8)
    ax.set_ylabel("MSE per element")
    ax.set_title("errors", fontsize=9)
    ax = axes[1]
    parts = [("gap", "gap"), ("encoder_gap", "encoder"), ("decoder_gap", "decoder"),
             ("encoder_gap_matched", "encoder\n(matched)"), ("decoder_gap_matched", "decoder\n(matched)")]
    parts = [(k, lab) for k, lab in parts if numbers.get(k) is not None]
    ax.bar(range(len(parts)), [numbers[k] for k, _ in parts],
           color=["tab:red", "tab:blue", "tab:orange", "tab:blue", "tab:orange"][:len(parts)])
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(range(len(parts)), [lab for _, lab in parts], fontsize=8)
    ax.set_ylabel("MSE difference")
    ax.set_title("held-out minus train, split", fontsize=9)
    fig.tight_layout()
    return savefig(fig, path)


def plot_homogeneity(numbers: Mapping, path: str | os.PathLike) -> Path:
    """Largest relative deviation ``||D(l z) - l D(z)|| / ||l D(z)||`` over the tested codes, per
    scale ``l``, with the biases as trained and with them zeroed."""
    fig, ax = subplots(figsize=(5.8, 3.6))
    lam = np.asarray(numbers["lambdas"], dtype=float)
    for key, label, style in (("per_lambda_biases", "biases as trained", "o-"),
                              ("per_lambda_zeroed", "biases zeroed", "s-")):
        v = numbers.get(key)
        if v is not None:
            ax.loglog(lam, np.maximum(np.asarray(v, dtype=float), 1e-17), style, ms=4, label=label)
    ax.axhline(numbers.get("tol", 1e-4), color="k", ls="--", lw=0.8, label="tolerance")
    ax.set_xlabel("scale λ")
    ax.set_ylabel("max relative deviation from λ D(z)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return savefig(fig, path)


def plot_image_rows(rows: Mapping[str, np.ndarray], path: str | os.PathLike, *, ncols: int | None = None,
                    suptitle: str | None = None) -> Path:
    """One row of pictures per entry of ``rows`` (label -> samples), each row on its own colour scale
    (:func:`aeprobe.plots.common.image_scale`)."""
    rows = {k: as_display(v) for k, v in rows.items()}
    ncols = ncols or max(v.shape[0] for v in rows.values())
    fig, axes = subplots(len(rows), ncols, figsize=(1.25 * ncols + 1.2, 1.3 * len(rows) + (0.4 if suptitle else 0)),
                         squeeze=False)
    for r, (label, imgs) in enumerate(rows.items()):
        sc = image_scale(imgs)
        mappable = None
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= imgs.shape[0]:
                ax.axis("off")
                continue
            im = imgs[c]
            if im.ndim == 3:  # RGB: map the row's range onto [0, 1]
                im = np.clip((im - sc["vmin"]) / ((sc["vmax"] - sc["vmin"]) or 1.0), 0, 1)
                ax.imshow(im, interpolation="nearest", aspect="auto" if im.shape[0] == 1 else "equal")
            else:
                mappable = ax.imshow(im, cmap=sc["cmap"], vmin=sc["vmin"], vmax=sc["vmax"], interpolation="nearest",
                                     aspect="auto" if im.shape[0] == 1 else "equal")
        axes[r, 0].set_ylabel(label, fontsize=8)
        if sc["colorbar"] and mappable is not None:
            fig.colorbar(mappable, ax=axes[r, :].tolist(), fraction=0.02, pad=0.01)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return savefig(fig, path)


def plot_attribution(inputs, maps: Mapping[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Top row: the inputs; one row per code unit: its integrated-gradients map (summed over
    channels; red = raises the unit, blue = lowers it), each row on a symmetric scale."""
    inp = to_numpy(inputs)
    rows = {"input": inp}
    for label, m in maps.items():
        m = to_numpy(m)
        rows[label] = m.sum(1) if m.ndim == 4 else m
    return plot_image_rows(rows, path)


def plot_probe(numbers: Mapping, path: str | os.PathLike) -> Path:
    """Accuracy of the linear probe on the codes and on the pixels, with chance."""
    bars = [("codes", numbers["acc_codes"]), ("pixels", numbers["acc_pixels"])]
    if numbers.get("acc_unseen") is not None:
        bars.insert(1, ("codes of\nheld-out images", numbers["acc_unseen"]))
    fig, ax = subplots(figsize=(5.2, 3.4))
    ax.bar(range(len(bars)), [b for _, b in bars], color=["tab:blue", "tab:purple", "tab:gray"][:len(bars)])
    ax.axhline(numbers["chance"], color="k", ls="--", lw=1, label=f"chance {numbers['chance']:.3g}")
    ax.set_xticks(range(len(bars)), [a for a, _ in bars], fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return savefig(fig, path)
