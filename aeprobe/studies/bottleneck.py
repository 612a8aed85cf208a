"""CAE bottleneck study (Manakov et al., "Walking the tightrope") at CPU scale, plus the question
they left open: does a CAE overfit in its encoder or in its decoder?

Sweep bottleneck area S/M/L x compression {1/64, 1/16, 1/4, 1} x seeds with
:class:`aeprobe.models.manakov.ManakovCAE`; record per-epoch train/test loss, the minimal test
error and its epoch, the first epoch below a training-loss threshold; Wilcoxon rank-sum tests
between areas and between compressions (paper Table 1); identity tests on complete (compression 1)
models; the encoder/decoder overfitting split for every model; seen/unseen linear probes; outlier
AUROC against a second dataset; interpolation and iteration grids. Writes ``OUT/results.json``,
``OUT/report.md``, ``OUT/report.html`` and PNGs.

Quick mode: 32x32 grey patches, ``depth=5`` (areas S/M/L = 1x1, 2x2, 4x4, the paper's
3x3/6x6/12x12 ratios at 96x96), 512 train / 512 test images, 20 epochs, batch 32, 2 seeds.

The grid runs through :func:`aeprobe.sweep` (``--backend``): ``processes`` (default with more than
one torch thread: as many single-thread processes as the run has threads, ``--workers``),
``local`` (one after the other, in this process) or ``ray`` (one Ray task per cell; a local Ray,
or the cluster of ``$RAY_ADDRESS``). Every cell is seeded on its own, so the results do not depend
on the backend (bit for bit with the same torch threads per cell). Each finished cell is stored in
``OUT/cells/`` (JSON, keyed by a hash of the cell's configuration): a killed run started again
with the same ``--out`` trains only the missing cells (``--fresh`` trains every cell again). A
cell returns its run record, the codes of the test images (for the SVCCA / CKA comparison of
codes between areas and channel counts, :mod:`aeprobe.studies.bottleneck_similarity`) and, for
the first seed, its rows of the interpolation and iteration figures.

``--data``: ``patches`` (grey natural-image patches cut from the photographs bundled with
scikit-image and scikit-learn, labelled by source photograph; the default), ``digits``
(scikit-learn digits, resized), ``folder:PATH`` (an image folder, ImageFolder layout or flat;
this is the way to use **CelebA or STL-10**: point it at a folder of their images) or
``torchvision:NAME:ROOT`` (MNIST, FashionMNIST, KMNIST, CIFAR10 or CIFAR100 already on disk in
torchvision's layout; CelebA and STL-10 are *not* read this way). Nothing is downloaded. The
outlier set (``--other``) defaults to digits for patches and to patches otherwise.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeprobe.progress import Progress, file_task
from aeprobe.studies.bottleneck_report import build_report, headline  # noqa: F401  (the study's interface)
from aeprobe.studies.bottleneck_stats import (RUN_METRICS, TEST_METRICS, claims, comp_label, first_below,  # noqa: F401
                                              ranksum_table)
from aeprobe.studies.parallel import add_sweep_arguments, default_workers

NAME = "bottleneck"
STAGES = ("data", "grid", "statistics and figures")
AREAS = ("S", "M", "L")
#: datasets :func:`aeprobe.data.torchvision_dataset` reads from disk
TORCHVISION_NAMES = ("MNIST", "FashionMNIST", "KMNIST", "CIFAR10", "CIFAR100")
COMPRESSIONS = (Fraction(1, 64), Fraction(1, 16), Fraction(1, 4), Fraction(1, 1))


@dataclass
class Config:
    mode: str = "quick"
    data: str = "patches"
    other: str | None = None
    size: int = 32
    depth: int = 5
    residual: bool = False
    norm: str = "instance"  # paper; "batch" / "none" keep per-image brightness
    areas: tuple = AREAS
    compressions: tuple = COMPRESSIONS
    seeds: tuple = (0, 1)
    n_train: int = 512
    n_test: int = 512
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    threshold: str = "auto"
    refit_epochs: int = 20
    probe_repeats: int = 3
    jacobian_points: int = 32
    jacobian_directions: int = 16
    iterations: int = 100
    device: str | None = None
    checkpoint: bool = False
    workers: int | None = None  # processes for the grid cells (None: one per torch thread)
    backend: str | None = None  # aeprobe.sweep backend: local | processes | ray (None: processes if workers > 1)
    fresh: bool = False  # train every cell again instead of reading the cells stored in OUT/cells
    svcca_keep: float = 0.99  # SVCCA: share of each code's variance kept (Raghu et al.)
    permutations: int = 5000  # permutation test of the same-area vs different-area similarity
    notes: list = field(default_factory=list)

    @classmethod
    def for_mode(cls, mode: str) -> "Config":
        if mode == "smoke":
            return cls("smoke", areas=("S", "L"), compressions=(Fraction(1, 4), Fraction(1, 1)), seeds=(0,),
                       n_train=96, n_test=64, epochs=1, batch_size=32, refit_epochs=2, probe_repeats=1,
                       jacobian_points=4, jacobian_directions=2, iterations=4, size=16, depth=3)
        if mode == "full":  # the paper's grid: 96x96 inputs, 5 strided layers, 10k/2k images, 1000 epochs, 3 seeds
            return cls("full", size=96, depth=5, residual=True, seeds=(0, 1, 2), n_train=10_000, n_test=2_000,
                       epochs=1000, batch_size=64, lr=1e-3, threshold="0.01", refit_epochs=100, probe_repeats=3,
                       jacobian_points=64, jacobian_directions=32, checkpoint=True)
        if mode != "quick":
            raise ValueError(f"unknown mode {mode!r}; use quick, full or smoke")
        return cls("quick")


def add_arguments(p) -> None:
    """The study's own flags (besides the shared ones of :func:`aeprobe.cli.shared_flags`)."""
    p.add_argument("--data", default=None,
                   help="patches (default) | digits | folder:PATH | torchvision:NAME:ROOT with NAME in MNIST, "
                        "FashionMNIST, KMNIST, CIFAR10, CIFAR100 (for CelebA or STL-10 use folder:PATH)")
    p.add_argument("--other", default=None, help="outlier dataset for the AUROC (same syntax as --data)")
    p.add_argument("--size", type=int, default=None, help="input height = width")
    p.add_argument("--depth", type=int, default=None, help="strided layers of the vanilla (area S) CAE")
    p.add_argument("--norm", choices=("instance", "batch", "none"), default=None,
                   help="normalisation after each hidden conv (default instance, as in the paper; instance norm "
                        "drops per-image brightness, which dominates the error on small grey patches)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (seed, seed+1, ...)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threshold", default=None,
                   help="training-loss threshold for 'first epoch below' (a float, or 'auto' = the highest "
                        "minimum training loss over all runs, so that every run crosses it)")
    add_sweep_arguments(p, jobs="grid cells", store="OUT/cells")


def make_config(mode: str, args: argparse.Namespace | None = None) -> Config:
    cfg = Config.for_mode(mode)
    a = vars(args) if args is not None else {}
    over = {k: a.get(k) for k in ("data", "other", "size", "depth", "epochs", "n_train", "n_test", "threshold",
                                  "device", "lr", "batch_size", "norm", "workers", "backend") if a.get(k) is not None}
    if a.get("fresh"):
        over["fresh"] = True
    seed0 = a.get("seed") or 0
    if a.get("seeds") is not None:
        over["seeds"] = tuple(range(seed0, seed0 + a["seeds"]))
    elif a.get("seed") is not None:
        over["seeds"] = tuple(range(seed0, seed0 + len(cfg.seeds)))
    return replace(cfg, **over)


def run(cfg: Config | None = None, out: str | os.PathLike = "runs/bottleneck", *,
        progress: Progress | None = None) -> dict:
    """Run the study and write its outputs to ``out``; returns the results (as in results.json)."""
    import sys

    from aeprobe.studies.runner import run_study

    return run_study(sys.modules[__name__], cfg or Config.for_mode("quick"), out, progress=progress)


def run_key(area: str, comp: Fraction, seed: int) -> str:
    return f"{area}_c{comp.numerator}-{comp.denominator}_s{seed}"


def cfg_key(area: str, comp: Fraction) -> str:
    return f"{area} {comp_label(comp)}"


# ----------------------------------------------------------------------------- data


def load_dataset(spec: str, n: int, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray | None, str, str]:
    """Images ``[N, C, size, size]`` in [0, 1], labels (or None), a name and a note on the labels.

    ``patches`` are grey (``image_patches(gray=True)``); ``digits`` are grey by nature; an image
    folder or a torchvision dataset keeps its own channels (the CAE is built for them).
    """
    from aeprobe import data as D

    def labels(y):
        return None if y is None else y.cpu().numpy()

    if spec == "patches":
        x, y = D.image_patches(n, size=size, seed=seed, gray=True)
        return x, labels(y), "natural-image patches (scikit-image/scikit-learn bundled photographs)", "source-image id"
    if spec == "digits":
        x, y = D.digits(size=size)
        return x, labels(y), f"scikit-learn digits (8x8 resized to {size}x{size})", "digit class"
    if spec.startswith("folder:"):
        path = spec.split(":", 1)[1]
        x, y = D.image_folder(path, size)
        return x, labels(y), f"image folder {path}", "class sub-folder" if y is not None else "none (flat folder)"
    if spec.startswith("torchvision:"):
        parts = spec.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"--data torchvision needs torchvision:NAME:ROOT, got {spec!r}")
        if parts[1] not in TORCHVISION_NAMES:
            raise ValueError(f"--data torchvision:{parts[1]} is not readable without torchvision; NAME must be one "
                             f"of {', '.join(TORCHVISION_NAMES)}. For CelebA or STL-10, put their images in a "
                             "folder and use --data folder:PATH")
        x, y = D.torchvision_dataset(parts[1], parts[2], train=True, size=size, n=n)
        return x, labels(y), f"torchvision {parts[1]} (train split)", "dataset labels"
    raise ValueError(f"unknown --data {spec!r}; use patches, digits, folder:PATH or torchvision:NAME:ROOT "
                     "(NAME one of MNIST, FashionMNIST, KMNIST, CIFAR10, CIFAR100; for CelebA or STL-10 "
                     "use folder:PATH on a folder of their images)")


def match_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    if x.shape[1] == c:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, c, -1, -1).contiguous()
    if c == 1:
        return x.mean(1, keepdim=True)
    raise ValueError(f"cannot convert {x.shape[1]} channels to {c}")


def prepare_data(cfg: Config) -> dict[str, Any]:
    """Train / test / outlier images, labels, names and two reference errors (deterministic)."""
    n = cfg.n_train + cfg.n_test
    x, y, name, label_note = load_dataset(cfg.data, n, cfg.size, seed=0)
    x = x.cpu()
    notes = []
    if x.shape[0] < n:
        notes.append(f"{name} has only {x.shape[0]} images; using {x.shape[0]} instead of {n}")
    n_all = x.shape[0]
    # a fixed random order (the paper takes the first 10k for training, the last 2k for testing)
    perm = torch.from_numpy(np.random.default_rng(12345).permutation(n_all))
    x = x[perm]
    y = None if y is None else y[perm.numpy()]
    if n_all >= n:
        n_train, n_test = cfg.n_train, cfg.n_test
    else:  # keep the requested train:test proportion
        n_test = max(2, int(n_all * cfg.n_test / n))
        n_train = n_all - n_test
    other_spec = cfg.other or ("digits" if cfg.data != "digits" else "patches")
    xo, _, other_name, _ = load_dataset(other_spec, n_test, cfg.size, seed=1)
    xo = xo.cpu()
    xo = match_channels(xo, x.shape[1])[torch.from_numpy(np.random.default_rng(7).permutation(xo.shape[0]))][:n_test]
    x_train, x_test = x[:n_train], x[n_all - n_test:]
    # reference errors on the test set: what a CAE has to beat to have learnt anything per image
    baselines = {"mean_image": float(((x_test - x_train.mean(0, keepdim=True)) ** 2).mean()),
                 "own_mean": float(((x_test - x_test.mean((2, 3), keepdim=True)) ** 2).mean())}
    return dict(x_train=x_train, x_test=x_test, y_train=None if y is None else y[:n_train],
                y_test=None if y is None else y[n_all - n_test:], name=name, label_note=label_note,
                x_other=xo, other_name=other_name, baselines=baselines, notes=notes)


def brightness_share(model, x: torch.Tensor, device=None) -> float:
    """Fraction of the reconstruction MSE that is error in each image's mean (per channel).

    Per image and channel, ``mean(e^2) = mean(e)^2 + var(e)`` over pixels (``e`` = output -
    input), so ``mean(mean(e)^2) / mean(e^2)`` is the share of the MSE that a per-image
    brightness correction would remove.
    """
    from aeprobe.studies.evaluate import reconstruct

    e = (reconstruct(model, x, device=device) - x).double()
    return float((e.mean((2, 3)) ** 2).mean() / (e ** 2).mean())


def blend_deviation(model, x: torch.Tensor, pairs: int = 8, steps: int = 8, device=None) -> float:
    """How far decoded code interpolations are from a pixel-space alpha blend (Fig. 7 proxy).

    For ``pairs`` pairs of images (``x[2i]``, ``x[2i+1]``) the decoded path ``f_t`` of
    :func:`aeprobe.probes.latent.interpolate` is compared with the blend of its end points,
    ``(1 - t) f_0 + t f_1``: mean over interior ``t`` and pairs of ``MSE(f_t, blend_t) /
    MSE(f_0, f_1)``. 0 = exactly an alpha blend (any linear decoder); larger = the path leaves
    the straight line in pixel space ("morphing", or artefacts).
    """
    from aeprobe.probes.latent import interpolate

    n = min(pairs, x.shape[0] // 2)
    f = torch.from_numpy(interpolate(model, x[0:2 * n:2], x[1:2 * n:2], steps, device=device)).double()
    t = torch.linspace(0, 1, steps, dtype=torch.float64).view(1, steps, 1, 1, 1)
    blend = (1 - t) * f[:, :1] + t * f[:, -1:]
    dev = ((f - blend) ** 2).mean((2, 3, 4))[:, 1:-1].mean(1)  # [pairs]
    ends = ((f[:, 0] - f[:, -1]) ** 2).mean((1, 2, 3))
    return float((dev / ends.clamp_min(1e-12)).mean())


# ----------------------------------------------------------------------------- one cell of the grid


def build_model(cfg: Config, area: str, comp: Fraction, in_channels: int, seed: int):
    from aeprobe.models.manakov import ManakovCAE

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # paper: every model initialised with the same seed
        return ManakovCAE(in_channels=in_channels, size=cfg.size, area=area, compression=comp, depth=cfg.depth,
                          residual=cfg.residual, norm=cfg.norm)


def probe_one(cfg: Config, model, data: dict, comp: Fraction, seed: int) -> dict[str, Any]:
    from aeprobe.probes.anomaly import outlier_auroc
    from aeprobe.probes.identity import identity_tests
    from aeprobe.probes.latent import iterate, iteration_drift
    from aeprobe.probes.linear import seen_unseen_probe
    from aeprobe.probes.overfitting import overfitting_split

    dev = cfg.device
    out: dict[str, Any] = {}
    out["overfitting"] = overfitting_split(model, data["x_train"], data["x_test"], epochs=cfg.refit_epochs,
                                           batch_size=cfg.batch_size, lr=cfg.lr, seed=seed, device=dev)
    if data["y_train"] is not None:
        out["probe"] = seen_unseen_probe(model, data["x_train"], data["y_train"], data["x_test"], data["y_test"],
                                         repeats=cfg.probe_repeats, seed=seed, device=dev)
    out["anomaly"] = outlier_auroc(model, data["x_test"], data["x_other"], device=dev)
    if comp == 1:
        out["identity"] = identity_tests(model, data["x_test"], y=data["y_test"],
                                         others={"other_dataset": data["x_other"]},
                                         jacobian_points=cfg.jacobian_points, directions=cfg.jacobian_directions,
                                         method="hutchinson", probe_repeats=cfg.probe_repeats, seed=seed,
                                         device=dev)
    out["brightness_share"] = brightness_share(model, data["x_test"], device=dev)
    frames = iterate(model, data["x_test"][:4], n=cfg.iterations, keep=None, device=dev)
    out["iteration_drift"] = float(np.mean([iteration_drift(frames[:, i])["to_start"][-1]
                                            for i in range(frames.shape[1])]))
    return out


@dataclass(frozen=True)
class CellJob:
    """One (area, compression, seed) of the grid, as an :func:`aeprobe.sweep` configuration: train
    the CAE, probe it. ``cfg`` is the study's configuration with the fields that do not change the
    cell blanked (:func:`cell_jobs`), so that the stored result is found again whatever the rest of
    the grid, the backend or the number of workers; ``figures``: also return the first seed's rows
    of the interpolation and iteration figures; ``checkpoints``: folder of the training checkpoints."""

    area: str
    comp: Fraction
    seed: int
    figures: bool
    cfg: Config
    checkpoints: str | None = None


def cell_jobs(cfg: Config, grid: list[tuple], out: Path) -> list[CellJob]:
    """The sweep configurations of ``grid`` (``(area, compression, seed)`` triples)."""
    base = replace(cfg, mode="", areas=(), compressions=(), seeds=(), threshold="", workers=None, backend=None,
                   fresh=False, svcca_keep=0.0, permutations=0, notes=[])
    ckpt = str(Path(out) / "checkpoints") if cfg.checkpoint else None
    return [CellJob(a, c, s, s == cfg.seeds[0], base, ckpt) for a, c, s in grid]


_DATA: dict[tuple, dict] = {}  # data per configuration, prepared once per process


def _data_key(cfg: Config) -> tuple:
    return (cfg.data, cfg.other, cfg.size, cfg.n_train, cfg.n_test)


def cell_data(cfg: Config) -> dict[str, Any]:
    """:func:`prepare_data` once per process (worker processes rebuild the same data deterministically)."""
    key = _data_key(cfg)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = prepare_data(cfg)
    return _DATA[key]


def run_cell(job: CellJob) -> dict[str, Any]:
    """Train one CAE of the grid and probe it; returns ``record`` (numbers and probe reports),
    ``codes`` (the flattened codes of the test images, float32) and ``frames`` (the figure rows of
    :func:`aeprobe.studies.bottleneck_figures.figure_frames`, or None)."""
    from aeprobe.studies.bottleneck_figures import figure_frames
    from aeprobe.studies.evaluate import codes
    from aeprobe.train import train

    cfg, area, comp, seed = job.cfg, job.area, job.comp, job.seed
    data = cell_data(cfg)
    t0 = time.perf_counter()
    model = build_model(cfg, area, comp, data["x_train"].shape[1], seed)
    ckpt = Path(job.checkpoints) / f"{run_key(area, comp, seed)}.pt" if job.checkpoints else None
    label = f"{cfg_key(area, comp)} s{seed}"
    task = file_task(run_key(area, comp, seed), label, cfg.epochs)
    res = train(model, data["x_train"], epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                x_val=data["x_test"], device=cfg.device, seed=seed, checkpoint=ckpt, progress=False,
                on_epoch_end=lambda epoch, hist, m: task.update(epoch))
    t_train = time.perf_counter() - t0
    task.label = f"{label} probes"
    task.update(cfg.epochs)
    hist = res.history
    val = hist["val_loss"]
    i_min = int(np.argmin(val))
    probes = probe_one(cfg, model, data, comp, seed)
    of = probes["overfitting"]
    p = probes.get("probe")
    ident = probes.get("identity")
    rec = dict(key=run_key(area, comp, seed), area=area, compression=comp_label(comp),
               compression_value=float(comp), seed=seed, code_shape=list(model.code_shape),
               code_volume=int(model.code_volume), input_volume=int(data["x_test"][0].numel()),
               train_loss=hist["train_loss"], test_loss=val, min_test_error=float(val[i_min]),
               min_test_epoch=i_min + 1, final_train_loss=float(hist["train_loss"][-1]),
               final_test_loss=float(val[-1]), gap=of.gap, encoder_gap=of.encoder_gap,
               decoder_gap=of.decoder_gap, encoder_gap_matched=of.encoder_gap_matched,
               decoder_gap_matched=of.decoder_gap_matched,
               refit_shortfall=None if of.refit_seen_error is None else of.refit_seen_error - of.train_error,
               overfitting=of, auroc=probes["anomaly"].auroc, anomaly=probes["anomaly"], probe=p,
               probe_acc_seen=None if p is None else p.acc_seen,
               probe_acc_unseen=None if p is None else p.acc_unseen, probe_gap=None if p is None else p.gap,
               identity=ident, identity_looks_like_copy=None if ident is None else ident.looks_like_copy(),
               iteration_drift=probes["iteration_drift"],
               blend_deviation=blend_deviation(model, data["x_test"], device=cfg.device),
               brightness_share=probes["brightness_share"], seconds_train=t_train,
               seconds_total=time.perf_counter() - t0)
    z = codes(model, data["x_test"], device=cfg.device).float().contiguous()
    frames = figure_frames(cfg, model, data["x_test"]) if job.figures else None
    task.done()
    return dict(record=rec, codes=z, frames=frames)


def sweep_grid(cfg: Config, grid: list[tuple], data: dict, out: Path, workers: int, backend: str,
               status_dir=None) -> tuple[list[dict], dict, dict, int]:
    """Run every (area, compression, seed) of ``grid`` through :func:`aeprobe.sweep` (results stored in
    ``out/cells``); returns the run records in grid order, the codes of the test images by run key,
    the first seed's figure frames by (area, compression) and the number of cells read back from
    ``out/cells`` instead of trained. Every cell is seeded on its own, so nothing depends on the
    backend or on ``workers``."""
    from aeprobe.studies.parallel import sweep_jobs

    _DATA.clear()
    _DATA[_data_key(cfg)] = data  # this process already has the data (the local backend uses it)
    jobs = cell_jobs(cfg, grid, out)
    results, reused = sweep_jobs(run_cell, jobs, backend=backend, out=Path(out) / "cells", workers=workers,
                                 fresh=cfg.fresh, status_dir=status_dir)
    frames = {(j.area, j.comp): r["frames"] for j, r in zip(jobs, results) if r["frames"] is not None}
    codes = {r["record"]["key"]: r["codes"] for r in results}
    return [r["record"] for r in results], codes, frames, reused


# ----------------------------------------------------------------------------- the study


def _mean_opt(vals):
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def summarise(cfg: Config, runs: list[dict]) -> dict[str, dict]:
    """Per configuration: mean and sd over seeds of every run metric, identity figures."""
    configs: dict[str, dict] = {}
    for a in cfg.areas:
        for c in cfg.compressions:
            rs = [r for r in runs if r["area"] == a and r["compression"] == comp_label(c)]
            summ: dict[str, Any] = dict(area=a, compression=comp_label(c), seeds=[r["seed"] for r in rs],
                                        code_shape=rs[0]["code_shape"])
            for m in RUN_METRICS:
                vals = [r[m] for r in rs if r.get(m) is not None]
                summ[m] = float(np.mean(vals)) if vals else None
                summ[m + "_sd"] = float(np.std(vals)) if len(vals) > 1 else None
            summ["first_epoch_below_reached"] = sum(r["first_epoch_below"] is not None for r in rs)
            ids = [r["identity"] for r in rs if r["identity"] is not None]
            if ids:
                summ["identity"] = {
                    "in_dist_error": float(np.mean([i.in_dist_error for i in ids])),
                    "ood_unexplained": {k: float(np.mean([i.ood_unexplained[k] for i in ids]))
                                        for k in ids[0].ood_unexplained},
                    "ood_ratios": {k: float(np.mean([i.ood_ratios[k] for i in ids])) for k in ids[0].ood_ratios},
                    "jacobian_distance": float(np.mean([i.jacobian_distance for i in ids])),
                    "jacobian_energy": float(np.mean([i.jacobian_energy for i in ids])),
                    "jacobian_trace": float(np.mean([i.jacobian_trace for i in ids])),
                    "probe_acc_codes": _mean_opt([i.probe_acc_codes for i in ids]),
                    "probe_acc_inputs": _mean_opt([i.probe_acc_inputs for i in ids]),
                    "looks_like_copy": [i.looks_like_copy() for i in ids],
                }
            configs[cfg_key(a, c)] = summ
    return configs


def grid_backend(cfg: Config, workers: int) -> str:
    """``cfg.backend``, else ``processes`` with several workers and ``local`` with one."""
    if cfg.backend is not None:
        if cfg.backend not in ("local", "processes", "ray"):
            raise ValueError(f"--backend must be local, processes or ray, got {cfg.backend!r}")
        return cfg.backend
    return "processes" if workers > 1 else "local"


def measure(cfg: Config, out: Path, progress: Progress) -> dict[str, Any]:
    from aeprobe.models.manakov import bottleneck_shape
    from aeprobe.studies.bottleneck_figures import make_figures
    from aeprobe.studies.bottleneck_similarity import similarities

    out = Path(out)
    with progress.stage(STAGES[0]):
        data = prepare_data(cfg)
        for a in cfg.areas:  # fail before any training if a cell of the grid cannot be built
            for c in cfg.compressions:
                bottleneck_shape(data["x_train"].shape[1], cfg.size, a, c, cfg.depth)
    grid = [(a, c, s) for a in cfg.areas for c in cfg.compressions for s in cfg.seeds]
    workers = cfg.workers or default_workers(len(grid))
    backend = grid_backend(cfg, workers)
    with progress.stage(STAGES[1], work=len(grid) * cfg.epochs):
        runs, codes, frames, reused = sweep_grid(cfg, grid, data, out, workers, backend, progress.status_dir())
    with progress.stage(STAGES[2]):
        if cfg.threshold == "auto":  # threshold for "first epoch below"
            thr = max(min(r["train_loss"]) for r in runs) * (1 + 1e-9)
            thr_note = (f"auto: {thr:.4g} = the highest minimum training loss over all runs, so every run "
                        "crosses it (the paper used 0.01 at 96x96 after 1000 epochs)")
        else:
            thr = float(cfg.threshold)
            thr_note = f"{thr:g} (fixed)"
        for r in runs:
            r["first_epoch_below"] = first_below(r["train_loss"], thr)
        comps = [comp_label(c) for c in cfg.compressions]
        stats = {"area": {m: ranksum_table(runs, "area", list(cfg.areas), m) for m in TEST_METRICS},
                 "compression": {m: ranksum_table(runs, "compression", comps, m) for m in TEST_METRICS}}
        configs = summarise(cfg, runs)
        sim = similarities(runs, codes, keep=cfg.svcca_keep, permutations=cfg.permutations, seed=cfg.seeds[0])
        figs = make_figures(cfg, runs, frames, data, out, sim)
    config = dict(vars(cfg), compressions=comps, notes=list(cfg.notes) + data["notes"], workers=workers,
                  backend=backend)
    return dict(config=config,
                data=dict(name=data["name"], labels=data["label_note"], other=data["other_name"],
                          n_train=int(data["x_train"].shape[0]), n_test=int(data["x_test"].shape[0]),
                          shape=list(data["x_train"].shape[1:]), baselines=data["baselines"]),
                threshold=thr, threshold_note=thr_note, configurations=configs, runs=runs, stats=stats,
                similarity=sim, figures=figs, workers=workers, backend=backend, cells_reused=reused,
                torch_threads=torch.get_num_threads())
