"""Figures of the bottleneck study: area x compression heatmaps (paper Fig. 2, 4, 6), loss curves
(Fig. 1), interpolation (Fig. 7) and iteration (Fig. 8) grids of the first seed's models (their
frames are computed where each model is trained: :func:`figure_frames`), and the similarity of
the codes of every pair of models (SVCCA, CKA)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["HEATMAPS", "cell_matrix", "figure_inputs", "iteration_keep", "figure_frames", "make_figures"]

#: heatmaps: metric, title, higher is better, number format
HEATMAPS = [("min_test_error", "minimal test MSE", False, ".3g"),
            ("min_test_epoch", "epoch of minimal test MSE", True, ".3g"),
            ("first_epoch_below", "first epoch with training MSE below threshold", False, ".3g"),
            ("gap", "generalisation gap: test - train MSE of the final model", False, ".2g"),
            ("encoder_gap_matched", "encoder part of the gap (MSE, matched refit)", False, ".2g"),
            ("decoder_gap_matched", "decoder part of the gap (MSE, matched refit)", False, ".2g"),
            ("auroc", "outlier AUROC (other dataset)", True, ".3f"),
            ("probe_acc_unseen", "linear-probe accuracy on unseen codes", True, ".3f")]


def cell_matrix(areas, comps: list[str], runs: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) over seeds of ``metric`` per (area, compression label); NaN where missing."""
    v = np.full((len(areas), len(comps)), np.nan)
    sd = np.full_like(v, np.nan)
    for i, a in enumerate(areas):
        for j, c in enumerate(comps):
            vals = [r[metric] for r in runs if r["area"] == a and r["compression"] == c and r.get(metric) is not None]
            if vals:
                v[i, j] = np.mean(vals)
                sd[i, j] = np.std(vals) if len(vals) > 1 else np.nan
    return v, sd


def figure_inputs(x_test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The interpolation pair and the iteration start image: textured but not extreme test images
    (pixel sd at the 90th/80th/85th percentile): flat patches show nothing, the most contrasted
    ones are saturated black/white edges."""
    sd_order = torch.argsort(x_test.reshape(x_test.shape[0], -1).std(1))
    pick = [int(sd_order[int(q * (len(sd_order) - 1))]) for q in (0.9, 0.8, 0.85)]
    xa, xb, xi = (x_test[i:i + 1] for i in pick)
    return xa, xb, xi


def iteration_keep(iterations: int) -> list[int]:
    """The iterates shown in the iteration grid."""
    return [k for k in (0, 1, 2, 5, 10, 20, 50, 100) if k < iterations] + [iterations]


def figure_frames(cfg, model, x_test: torch.Tensor) -> dict[str, np.ndarray]:
    """One model's row of the interpolation grid (``[8, C, H, W]``) and of the iteration grid
    (``[len(iteration_keep), C, H, W]``), on the images of :func:`figure_inputs`."""
    from aeprobe.probes.latent import interpolate, iterate

    xa, xb, xi = figure_inputs(x_test)
    return dict(interpolation=interpolate(model, xa, xb, 8, device=cfg.device)[0],
                iteration=iterate(model, xi, n=cfg.iterations, keep=iteration_keep(cfg.iterations),
                                  device=cfg.device)[:, 0])


def make_figures(cfg, runs, frames, data, out: Path, similarity: dict | None = None) -> dict[str, str]:
    """Every figure of the study; ``frames``: ``{(area, compression): figure_frames(...)}`` of the
    first seed's models; ``similarity``: :func:`aeprobe.studies.bottleneck_similarity.similarities`."""
    from aeprobe.plots.bottleneck import (area_compression_heatmap, interpolation_grid, iteration_grid,
                                          loss_curve_panels, similarity_figure)
    from aeprobe.studies.bottleneck_stats import comp_label

    figs: dict[str, str] = {}
    comps = [comp_label(c) for c in cfg.compressions]
    for metric, title, hib, fmt in HEATMAPS:
        if all(r.get(metric) is None for r in runs):
            continue
        v, sd = cell_matrix(cfg.areas, comps, runs, metric)
        path = out / f"heatmap_{metric}.png"
        area_compression_heatmap(v, path, areas=list(cfg.areas), compressions=comps, title=title, fmt=fmt,
                                 higher_is_better=hib, std=sd)
        figs[f"heatmap_{metric}"] = path.name
    panels = {}
    for c in comps:
        curves = {}
        for a in cfg.areas:
            rs = [r for r in runs if r["area"] == a and r["compression"] == c]
            curves[f"area {a}"] = (np.mean([r["train_loss"] for r in rs], 0), np.mean([r["test_loss"] for r in rs], 0))
        panels[f"compression {c}"] = curves
    loss_curve_panels(panels, out / "loss_curves.png",
                      suptitle=f"train (dashed) / test (solid), mean over {len(cfg.seeds)} seed(s)")
    figs["loss_curves"] = "loss_curves.png"
    # interpolation / iteration grids of the first seed's models, rows grouped by area
    keys = [(a, c) for a in cfg.areas for c in cfg.compressions if (a, c) in frames]
    labels = [f"{a} {comp_label(c)}" for a, c in keys]
    xa, xb, _ = figure_inputs(data["x_test"])
    inter = np.stack([np.asarray(frames[k]["interpolation"]) for k in keys])
    t = np.linspace(0, 1, 8).reshape(-1, 1, 1, 1)
    blend = ((1 - t) * xa[0].numpy() + t * xb[0].numpy())[None].astype(np.float32)  # reference row
    interpolation_grid(np.concatenate([blend, inter]), out / "interpolation.png",
                       row_labels=["inputs: pixel blend"] + labels,
                       title="latent interpolation (seed %d); first row: alpha blend of the two inputs" % cfg.seeds[0])
    its = np.stack([np.asarray(frames[k]["iteration"]) for k in keys], 1)
    iteration_grid(its, out / "iteration.png", steps=iteration_keep(cfg.iterations), row_labels=labels,
                   title=f"AE iteration x_(k+1) = f(x_k), {cfg.iterations} steps (seed {cfg.seeds[0]}); iter 1 = "
                         "reconstruction")
    figs["interpolation"], figs["iteration"] = "interpolation.png", "iteration.png"
    if similarity is not None and len(similarity["names"]) > 1:
        from aeprobe.studies.bottleneck_similarity import GROUPS, pair_groups

        sim = similarity
        similarity_figure({f"SVCCA (keep {sim['keep']:g})": np.array(sim["matrices"]["svcca"]),
                           "linear CKA (debiased)": np.array(sim["matrices"]["cka_debiased"])},
                          out / "code_similarity.png", names=sim["names"], blocks=sim["areas"],
                          groups=pair_groups(sim["areas"], sim["compressions"]), group_names=GROUPS,
                          title=f"codes of the {sim['n_inputs']} test images, every pair of models")
        figs["code_similarity"] = "code_similarity.png"
    return figs
