"""Figures of the code-space diagnostics (:mod:`aeprobe.probes.code`): each takes a report and a path.

The reports' ``.plot(path)`` call these; nothing here measures anything.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from aeprobe.plots.common import savefig, subplots

__all__ = ["plot_code_stats", "plot_ablation", "plot_similarity", "plot_alignment"]


def plot_code_stats(stats, path: str | os.PathLike) -> Path:
    """Three panels: histogram of log10 unit frequency (SAELens' feature-density plot; dead units
    counted in the title), the code covariance spectrum (log scale, effective dimension marked),
    and the frequency of every unit as bars."""
    freq = np.asarray(stats.frequency, dtype=float)
    live = freq[freq > 0]
    fig, axes = subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    if live.size:
        ax.hist(np.log10(live), bins=min(50, max(5, live.size // 2)), color="tab:blue")
    ax.set_xlabel("log10 frequency (fraction of inputs with |z_k| > threshold)")
    ax.set_ylabel("units")
    ax.set_title(f"density: {stats.dead.size} of {freq.size} units dead, L0 = {stats.l0:.3g}", fontsize=9)

    ax = axes[1]
    spec = np.asarray(stats.spectrum, dtype=float)
    pos = spec > 0
    ax.semilogy(np.arange(1, spec.size + 1)[pos], spec[pos], "o-", ms=3)
    if np.isfinite(stats.effective_dim):
        ax.axvline(stats.effective_dim, color="tab:red", ls="--", lw=1,
                   label=f"effective dim {stats.effective_dim:.3g}")
        ax.legend(fontsize=8)
    ax.set_xlabel("component")
    ax.set_ylabel("code covariance eigenvalue")
    ax.set_title(f"spectrum (FVE = {stats.fve:.3g}, MSE = {stats.mse:.3g})", fontsize=9)
    ax.grid(alpha=0.3)

    ax = axes[2]
    order = np.argsort(-freq)
    ax.bar(np.arange(freq.size), freq[order], width=1.0, color="tab:green")
    ax.set_xlabel("unit (sorted by frequency)" if freq.size > 32 else "unit (sorted by frequency)")
    if freq.size <= 32:
        ax.set_xticks(np.arange(freq.size), [str(i) for i in order], fontsize=7)
    ax.set_ylabel("frequency")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"frequency per unit (N = {stats.n})", fontsize=9)
    fig.tight_layout()
    return savefig(fig, path)


def plot_ablation(report, path: str | os.PathLike) -> Path:
    """Measured vs first-order predicted output change per zeroed unit (the diagonal = a linear
    decoder), and the change in reconstruction loss per unit."""
    meas = np.asarray(report.measured, dtype=float)
    pred = np.asarray(report.predicted, dtype=float)
    fig, axes = subplots(1, 2, figsize=(9.5, 3.8))
    ax = axes[0]
    ax.scatter(pred, meas, s=14)
    top = max(float(np.nanmax(meas, initial=0)), float(np.nanmax(pred, initial=0))) * 1.05 or 1.0
    ax.plot([0, top], [0, top], "k--", lw=1, label="measured = predicted")
    if len(report.units) <= 20:
        for u, a, b in zip(report.units, pred, meas):
            ax.annotate(str(u), (a, b), fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("predicted  mean ||J_D(z) z_k e_k||")
    ax.set_ylabel("measured  mean ||D(z - z_k e_k) - D(z)||")
    ax.set_title("zeroing one unit", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.bar(np.arange(len(report.units)), report.loss_change, color="tab:orange")
    if len(report.units) <= 32:
        ax.set_xticks(np.arange(len(report.units)), [str(u) for u in report.units], fontsize=7)
    ax.set_xlabel("unit")
    ax.set_ylabel("change in MSE when zeroed")
    ax.set_title(f"base MSE {report.base_loss:.3g} (N = {report.n})", fontsize=9)
    fig.tight_layout()
    return savefig(fig, path)


def plot_similarity(report, path: str | os.PathLike) -> Path:
    """Side-by-side heatmaps of CKA, debiased CKA and SVCCA between the models' codes."""
    mats = (("CKA", report.cka), ("debiased CKA", report.cka_debiased), (f"SVCCA (keep {report.keep:g})", report.svcca))
    k = len(report.names)
    fig, axes = subplots(1, 3, figsize=(3 * (1.0 * k + 1.6), 0.9 * k + 1.8))
    for ax, (title, m) in zip(axes, mats):
        m = np.asarray(m, dtype=float)
        im = ax.imshow(m, vmin=min(0.0, float(np.nanmin(m))) if np.isfinite(m).any() else 0, vmax=1, cmap="viridis")
        ax.set_xticks(range(k), report.names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), report.names, fontsize=8)
        for i in range(k):
            for j in range(k):
                txt = "n/a" if not np.isfinite(m[i, j]) else f"{m[i, j]:.2f}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if np.isfinite(m[i, j]) and m[i, j] < 0.5 else "black")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return savefig(fig, path)


def plot_alignment(report, path: str | os.PathLike) -> Path:
    """Principal angles (degrees) between the decoder's column space and the PCA subspace, and the
    data's covariance spectrum with the code size marked."""
    fig, axes = subplots(1, 2, figsize=(9.5, 3.6))
    ax = axes[0]
    ax.bar(np.arange(1, report.angles.size + 1), np.degrees(report.angles), color="tab:purple")
    ax.set_xlabel("principal angle index")
    ax.set_ylabel("angle (degrees)")
    ax.set_title(f"decoder vs top-{report.code_dim} PCA (max {np.degrees(report.max_angle):.3g} deg)", fontsize=9)
    ax = axes[1]
    lam = np.asarray(report.pca_variance, dtype=float)
    pos = lam > 0
    ax.semilogy(np.arange(1, lam.size + 1)[pos], lam[pos], "o-", ms=3)
    ax.axvline(report.code_dim + 0.5, color="tab:red", ls="--", lw=1, label=f"code size {report.code_dim}")
    ax.set_xlabel("principal component")
    ax.set_ylabel("data variance")
    ax.set_title(f"explained: PCA {report.explained_pca:.3g}, decoder {report.explained_decoder:.3g}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return savefig(fig, path)
