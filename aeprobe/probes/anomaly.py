"""Reconstruction-based outlier detection: AUROC of per-sample reconstruction error.

Manakov et al. (Sec. 3.4, 4.4): compute the reconstruction loss (MSE) of in-distribution
test images and of images from another dataset, "clip the losses to 1", and report the
area under the ROC curve of the loss as an outlier score. Clipping means
``score = min(mse, clip)`` per sample (``clip=1.0`` as in the paper; ``None`` disables it):
it bounds the influence of a few exploding reconstructions on the *mean* errors reported
next to the AUROC. Note that AUROC is rank based, so clipping can only *lower* it, by
turning distinct scores above ``clip`` into ties (reported as ``frac_clipped_*``); for
images in [0, 1] and outputs in a similar range the MSE is below 1 and clipping is a
no-op.

The paper's claim checked with this probe: a *smaller* bottleneck area generalises less,
so out-of-distribution samples reconstruct worse and the AUROC is higher.

Convention: outliers are the positive class; AUROC = 1 means every outlier has a larger
(clipped) error than every inlier, 0.5 means no separation, < 0.5 means outliers are
reconstructed *better* than inliers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aeprobe.utils import check_images, on_device
from aeprobe.view import as_view


@dataclass
class AnomalyReport:
    """``auroc`` of clipped per-sample MSE (outliers positive); mean clipped errors of both
    sets and their difference; fraction of samples whose error was clipped."""

    auroc: float
    mean_error_in: float
    mean_error_out: float
    error_difference: float
    clip: float | None
    frac_clipped_in: float
    frac_clipped_out: float
    n_in: int
    n_out: int


def _check_clip(clip) -> None:
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be positive or None, got {clip}")


def clipped_errors(model, x, *, clip: float | None = 1.0, batch_size: int = 256, device=None) -> np.ndarray:
    """Per-sample MSE of the reconstructions of ``x``, clipped to at most ``clip`` (paper: 1).

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view (only the reconstruction is used).
    """
    ae = as_view(model)
    _check_clip(clip)
    err = ae.per_sample_mse(check_images(x), batch_size=batch_size, device=device)
    return err if clip is None else np.minimum(err, clip)


def auroc_from_scores(scores_in, scores_out) -> float:
    """AUROC of ``scores`` with the ``scores_out`` samples as the positive class."""
    from sklearn.metrics import roc_auc_score

    s_in, s_out = np.asarray(scores_in, float).ravel(), np.asarray(scores_out, float).ravel()
    if s_in.size == 0 or s_out.size == 0:
        raise ValueError(f"need samples in both sets, got {s_in.size} inliers and {s_out.size} outliers")
    if not (np.isfinite(s_in).all() and np.isfinite(s_out).all()):
        raise ValueError("scores contain NaN or inf values")
    labels = np.concatenate([np.zeros(s_in.size), np.ones(s_out.size)])
    return float(roc_auc_score(labels, np.concatenate([s_in, s_out])))


def outlier_auroc(model, x_in, x_out, *, clip: float | None = 1.0, batch_size: int = 256,
                  device=None) -> AnomalyReport:
    """Outlier AUROC of the clipped reconstruction error, ``x_out`` as outliers.

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view (only the reconstruction is
    used, so a U-Net read with ``code_at=`` works). ``clip`` is checked before any forward pass;
    the model is moved to ``device`` for the probe and back afterwards.

    Example::

        rep = outlier_auroc(aeprobe.autoencoder(vae), x_test, x_other)   # vae(x) -> (recon, mu, logvar)
        rep.auroc, rep.error_difference
    """
    ae = as_view(model)
    _check_clip(clip)
    x_in, x_out = check_images(x_in, "x_in"), check_images(x_out, "x_out")
    if x_in.shape[1:] != x_out.shape[1:]:
        raise ValueError(f"x_in samples have shape {tuple(x_in.shape[1:])} but x_out samples {tuple(x_out.shape[1:])}")
    with on_device(ae.model, device):  # moved once, and back on exit
        raw_in = ae.per_sample_mse(x_in, batch_size=batch_size)
        raw_out = ae.per_sample_mse(x_out, batch_size=batch_size)
    e_in = raw_in if clip is None else np.minimum(raw_in, clip)
    e_out = raw_out if clip is None else np.minimum(raw_out, clip)
    return AnomalyReport(
        auroc=auroc_from_scores(e_in, e_out),
        mean_error_in=float(e_in.mean()), mean_error_out=float(e_out.mean()),
        error_difference=float(e_out.mean() - e_in.mean()), clip=clip,
        frac_clipped_in=float(np.mean(raw_in > clip)) if clip is not None else 0.0,
        frac_clipped_out=float(np.mean(raw_out > clip)) if clip is not None else 0.0,
        n_in=int(e_in.size), n_out=int(e_out.size))
