"""Figures of the zoo study (from the kinds' records and the arrays their jobs returned) and the CSV
results table."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

__all__ = ["make_figures", "write_csv"]


def make_figures(cfg, kinds: dict, arrays: dict, ups: dict | None, data: dict, out: Path,
                 pixel_probe: dict) -> dict[str, str]:
    from aeprobe.plots.zoo import bar_chart, grouped_bars, image_rows, latent_scatter, loss_curves, roc_curves

    figs: dict[str, str] = {}
    names = list(kinds)
    loss_curves({k: (kinds[k]["test_bce_curve"], None) for k in names}, out / "test_bce_curves.png",
                ylabel="test BCE (summed per image)", title="test reconstruction error per epoch "
                "(stacked: its greedy stages in turn)")
    figs["test_bce_curves"] = "test_bce_curves.png"
    rows = {"input": data["x_test"][:10]}
    rows.update({k: arrays[k]["_recon"] for k in names})
    image_rows(rows, out / "reconstructions.png", suptitle="test images and their reconstructions")
    figs["reconstructions"] = "reconstructions.png"
    samp = {k: arrays[k]["_samples"][:10] for k in names if "_samples" in arrays[k]}
    if samp:
        image_rows(samp, out / "samples.png", suptitle="unconditional samples (VAEs: z ~ N(0, I); VQ: uniform codes)")
        figs["samples"] = "samples.png"
    frames = {k: arrays[k]["_frames"] for k in names}
    image_rows(frames, out / "interpolation.png", titles=[f"t={t:.2f}" for t in np.linspace(0, 1, cfg.steps)],
               suptitle="decoded linear interpolation between two test codes")
    figs["interpolation"] = "interpolation.png"
    y = data["y_test"]
    latent_scatter({k: arrays[k]["_pca"] for k in names}, y, out / "latent_pca.png", method="PCA",
                   notes={k: f"silhouette {kinds[k]['pca_silhouette']:.2f}" for k in names})
    figs["latent_pca"] = "latent_pca.png"
    if all("_umap" in arrays[k] for k in names):
        latent_scatter({k: arrays[k]["_umap"] for k in names}, y, out / "latent_umap.png", method="UMAP")
        figs["latent_umap"] = "latent_umap.png"
    bar_chart({k: kinds[k]["probe_acc"] for k in names}, out / "classification.png",
              errors={k: kinds[k]["probe_sd"] for k in names}, ylabel="test accuracy",
              title=f"linear probe on codes, {kinds[names[0]]['probe_labels']} labels",
              reference=("raw pixels, same probe", pixel_probe["accuracy"]))
    figs["classification"] = "classification.png"
    roc_curves({k: (*arrays[k]["_roc"], kinds[k]["auroc"]) for k in names}, out / "anomaly_roc.png",
               title=f"class {cfg.heldout} held out of training, latent {cfg.latent_anomaly}; score = reconstruction MSE")
    figs["anomaly_roc"] = "anomaly_roc.png"
    if ups is not None:
        grouped_bars({"constant codes": {k: v["probe"].constant.nyquist_fraction for k, v in ups["kinds"].items()},
                      "random codes": {k: v["probe"].random.nyquist_fraction for k, v in ups["kinds"].items()},
                      "reconstructions": {k: v["recon"].nyquist_fraction for k, v in ups["kinds"].items()}},
                     out / "upsampling_alias.png", ylabel="Nyquist energy / non-DC energy", logy=True,
                     title="checkerboard probe per decoder upsampling (0 drawn at the floor)")
        figs["upsampling_alias"] = "upsampling_alias.png"
        imgs = {k: torch.stack([v["_images"][0], v["_images"][1]]) for k, v in ups["kinds"].items()}
        lo = min(float(t.min()) for t in imgs.values())
        hi = max(float(t.max()) for t in imgs.values())
        image_rows(imgs, out / "upsampling_outputs.png", titles=["constant code", "random code"],
                   suptitle="decoder outputs (interior crop)", vmin=lo, vmax=hi)
        figs["upsampling_outputs"] = "upsampling_outputs.png"
    return figs


def write_csv(path: Path, header, rows) -> None:
    """The results table as CSV (atomically)."""
    from aeprobe.reporting import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in r])
    atomic_write_text(path, buf.getvalue())
