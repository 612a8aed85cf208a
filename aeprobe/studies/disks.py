"""Newson et al., "Processing simple geometric attributes with autoencoders": the disk study (Sect. 4, App. B/C).

Trains the disk autoencoder (64x64 -> one scalar -> 64x64, Table 1) with and without biases and
opens both up with the probes of :mod:`aeprobe.probes`, checking each mechanism against
:mod:`theory`:

* with biases: reconstructions, code vs radius/area over several seeds (Fig. 2, 3), interpolation
  in ``z``, integrated-gradients attribution of ``z`` (Sect. 4.2);
* without biases: positive homogeneity of the decoder (Prop. 1), rank-1 output ``h(r) f(t)``
  (Eq. 5), the learned profile ``f`` vs the Airy closed form (Prop. 2, App. B) logged per epoch,
  the training loss vs the rank-1 floor of the data, ``z`` vs ``<f, 1_Br>`` (Fig. 11);
* generalisation: training radii limited to ``R = 18`` (App. C: the profile's support stops at
  ``R``), a hole of radii 11-18 (Fig. 6), the regularisers none / psi1 / psi2 / psi3 on it (Fig. 7)
  and a psi3 weight sweep (Fig. 8).

Writes ``OUT/results.json``, ``OUT/report.md``, ``OUT/report.html``, ``OUT/profile.npz`` (``t``,
``f``) and PNGs. The eleven quick-mode trainings are independent: they run side by side in as
many single-thread processes as the run has torch threads (:mod:`aeprobe.studies.parallel`).

Quick mode trains with batches of 50 instead of Table 1's 300: on CPU the cost per image does not
depend on the batch size (measured 2900-3000 img/s for batches of 50-100 vs 2400 for 300, one
thread), so within the same time smaller batches give six times more Adam steps, which the
bias-free net needs to reach its optimum (the paper does not give its number of epochs). Full
mode uses Table 1's batch of 300.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeprobe.progress import Progress
from aeprobe.studies.disk_training import DiskJob, disk_model, train_disk_job
from aeprobe.studies.disks_report import build_report, claims, headline  # noqa: F401  (the study's interface)
from aeprobe.studies.parallel import balanced_order, default_workers, map_jobs

NAME = "disks"
STAGES = ("training (the training sets are built meanwhile)", "probes and figures")


@dataclass
class Config:
    mode: str = "quick"
    size: int = 64
    sigma: float = 1.0  # Gaussian blur of the disks, std in px (App. A; the paper gives no value)
    n_train: int = 3000  # paper: 3000 disks, radii ~ U(0, m/2)
    r_min: float = 0.5
    r_max: float = 32.0
    n_eval: int = 64
    batch_size: int = 50  # Table 1: 300 (see the module docstring)
    lr: float = 1e-3  # Table 1
    epochs_biased: int = 15
    epochs_free: int = 15
    code_seeds: tuple = (1, 2)  # extra seeds of the biased net: is z area-like for every seed? (Fig. 3)
    limited_R: float = 18.0  # App. C
    epochs_limited: int = 10
    limited_biased: bool = False  # Fig. 5 with the biased network too (full mode)
    hole: tuple = (11.0, 18.0)  # Fig. 6
    n_hole_train: int = 2000
    epochs_hole: int = 15
    # Regulariser weights in our units: the data term is the per-pixel *mean* squared error.
    # Chosen from a pilot run (seed 0, 15 epochs) so that each regulariser is active (>= 2% of the
    # objective at the end of training) without collapsing the code; see the report's table.
    lams: dict = field(default_factory=lambda: {"psi1": 1e-7, "psi2": 1e-4, "psi3": 1e-4})
    psi3_sweep: tuple = (1e-5, 1e-4, 1e-3)  # Fig. 8 (1e-3: expected to be too strong)
    hole_seeds: tuple = (0,)
    # A net whose data loss stays at >= 99% of the constant output's MSE for this many epochs
    # transmits nothing (psi3 at λ = 1e-3 collapses by epoch ~5); its training stops there and the
    # report says so. Healthy nets fall below that level in their second epoch.
    stuck_patience: int = 5
    seed: int = 0
    data_seed: int = 1234
    device: str | None = None
    attribution_disks: int = 4
    workers: int | None = None  # processes for the independent trainings (None: one per torch thread)

    @classmethod
    def for_mode(cls, mode: str) -> "Config":
        if mode == "smoke":
            return cls("smoke", n_train=96, n_eval=12, batch_size=32, epochs_biased=1, epochs_free=1,
                       epochs_limited=1, code_seeds=(1,), n_hole_train=64, epochs_hole=1, psi3_sweep=(1e-4, 1e-3),
                       attribution_disks=2)
        if mode == "full":
            return cls("full", batch_size=300, epochs_biased=300, epochs_free=150, epochs_limited=150,
                       code_seeds=(1, 2, 3, 4), limited_biased=True, n_hole_train=3000, epochs_hole=300,
                       hole_seeds=(0, 1, 2, 3, 4), psi3_sweep=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3), stuck_patience=50)
        if mode != "quick":
            raise ValueError(f"unknown mode {mode!r}; use quick, full or smoke")
        return cls("quick")


def make_config(mode: str, args: argparse.Namespace | None = None) -> Config:
    """The mode's configuration with the shared flags ``--seed`` / ``--device`` applied."""
    cfg = Config.for_mode(mode)
    if args is not None and getattr(args, "seed", None) is not None:
        cfg = replace(cfg, seed=args.seed)
    if args is not None and getattr(args, "device", None) is not None:
        cfg = replace(cfg, device=args.device)
    return cfg


def run(cfg: Config | None = None, out: str | os.PathLike = "runs/disks", *, progress: Progress | None = None) -> dict:
    """Run the study and write its outputs to ``out``; returns the results (as in results.json)."""
    import sys

    from aeprobe.studies.runner import run_study

    return run_study(sys.modules[__name__], cfg or Config.for_mode("quick"), out, progress=progress)


# ----------------------------------------------------------------------------- data


def make_disks(cfg: Config, n: int | None = None, *, radii=None, r_max: float | None = None, hole=None,
               seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Images ``[n, 1, 64, 64]`` and radii of :func:`aeprobe.data.disks` (blur ``cfg.sigma``)."""
    from aeprobe.data import disks

    b = disks(n, size=cfg.size, r_min=cfg.r_min, r_max=cfg.r_max if r_max is None else r_max, hole=hole,
              radii=radii, sigma=cfg.sigma, seed=seed)
    return b.images, b.params["radius"].cpu().double().numpy()


def jobs(cfg: Config, files: dict[str, str]) -> list[DiskJob]:
    """Every training of the study, grouped by training set (full range, hole, limited radius), the
    longest first in each group. ``files`` names the ``.npy`` / ``.npz`` files of the sets."""
    common = dict(batch_size=cfg.batch_size, lr=cfg.lr, size=cfg.size, device=cfg.device,
                  stuck_patience=cfg.stuck_patience)
    n = cfg.n_train
    out = [DiskJob("main-free", "bias-free", files["x"], n, False, cfg.epochs_free, cfg.seed,
                   airy_eval=files["airy_eval"], **common)]
    for s in (cfg.seed,) + tuple(s for s in cfg.code_seeds if s != cfg.seed):
        out.append(DiskJob(f"main-biased-s{s}", f"biased seed {s}", files["x"], n, True, cfg.epochs_biased, s,
                           **common))
    for kind in ("psi1", "none", "psi2", "psi3"):  # psi1 (two encoder passes per batch) first
        for s in cfg.hole_seeds:
            out.append(hole_job(cfg, files, kind, cfg.lams.get(kind, 0.0), cfg.seed + s))
    for lam in cfg.psi3_sweep:
        if lam != cfg.lams["psi3"]:
            out.append(hole_job(cfg, files, "psi3", lam, cfg.seed + cfg.hole_seeds[0]))
    out.append(DiskJob("limited-free", "limited bias-free", files["x_limited"], n, False, cfg.epochs_limited, cfg.seed,
                       **common))
    if cfg.limited_biased:
        out.append(DiskJob("limited-biased", "limited biased", files["x_limited"], n, True, cfg.epochs_limited,
                           cfg.seed, **common))
    return out


def build_and_yield(cfg: Config, todo: list[DiskJob], files: dict[str, str], sets: dict[str, Any]):
    """Yield the jobs in order, building each training set (into ``sets`` and its file) just before
    the first job that trains on it: the pool starts the first nets while the other sets are built.
    What the probes need from the data (the rank-1 floor and optimum) is computed while the nets train."""
    from aeprobe.probes.profile import data_optimal_profile, rank1_floor_mse

    def build(key: str) -> None:
        if key == "x":
            x, r_train = make_disks(cfg, cfg.n_train, seed=cfg.data_seed)
            xe, eval_r = make_disks(cfg, radii=np.linspace(cfg.r_min, cfg.r_max, cfg.n_eval))
            sets.update(x=x, R=float(r_train.max()), xe=xe, eval_r=eval_r)
            np.savez(files["airy_eval"], x=xe.numpy(), radii=eval_r, R=sets["R"])
        elif key == "x_hole":
            sets["x_hole"], _ = make_disks(cfg, cfg.n_hole_train, hole=tuple(cfg.hole), seed=cfg.data_seed + 3)
        else:
            xl, rl = make_disks(cfg, cfg.n_train, r_max=cfg.limited_R, seed=cfg.data_seed + 2)
            sets.update(x_limited=xl, R_limited=float(rl.max()))
        np.save(files[key], sets[key].numpy())

    key_of = {path: key for key, path in files.items()}
    for job in todo:
        if key_of[job.data] not in sets:
            build(key_of[job.data])
        yield job
    for key in ("x", "x_hole", "x_limited"):  # every set exists, even when no job needs it
        if key not in sets:
            build(key)
    sets.update(rank1_floor=rank1_floor_mse(sets["x"]), data_optimum=data_optimal_profile(sets["x"]))


def hole_job(cfg: Config, files: dict[str, str], kind: str, lam: float, seed: int) -> DiskJob:
    return DiskJob(f"hole-{kind}-{lam:g}-s{seed}", f"hole {kind}" + (f" λ={lam:g}" if kind != "none" else ""),
                   files["x_hole"], cfg.n_hole_train, True, cfg.epochs_hole, seed, cfg.batch_size, cfg.lr,
                   cfg.size, kind, lam, None, cfg.device, cfg.stuck_patience)


# ----------------------------------------------------------------------------- the study


def measure(cfg: Config, out: Path, progress: Progress) -> dict[str, Any]:
    """Train every net (side by side where possible, the training sets built meanwhile), probe them,
    draw the figures; returns the results.

    With several processes, a part's probes and figures run as soon as its nets are trained and a
    core is free (while the last nets train), else after the training.
    """
    from aeprobe.studies import disks_parts

    out = Path(out)
    res: dict[str, Any] = dict(mode=cfg.mode, seed=cfg.seed, data_seed=cfg.data_seed,
                               data=dict(n_train=cfg.n_train, r_min=cfg.r_min, r_max=cfg.r_max, size=cfg.size,
                                         sigma=cfg.sigma))
    figs: dict[str, str] = {}
    sets: dict[str, Any] = {}
    t0 = time.time()
    parts = {"main": disks_parts.main_part, "limited": disks_parts.limited_part, "hole": disks_parts.hole_part}
    done: dict[str, tuple] = {}
    probed: list[str] = []

    def probe_ready(free_core: bool) -> None:
        for name, part in parts.items():
            keys = [j.key for j in todo if j.key.startswith(name + "-")]
            if name not in probed and free_core and all(k in done for k in keys):
                probed.append(name)
                progress.note(f"probes and figures of the {name} part")
                part(cfg, out, sets, {k: done[k] for k in keys}, res, figs)
                progress.note(None)

    def on_result(i: int, result: dict, pending: int) -> None:
        job = todo[i]
        done[job.key] = (disk_model(job, result["state"]), result)
        probe_ready(workers > 1 and pending < workers)

    with tempfile.TemporaryDirectory(prefix="aeprobe-disks-") as tmp:
        files = {k: str(Path(tmp) / f"{k}.npy") for k in ("x", "x_limited", "x_hole")}
        files["airy_eval"] = str(Path(tmp) / "airy_eval.npz")
        todo = jobs(cfg, files)
        workers = cfg.workers or default_workers(len(todo))
        if workers > 1:  # an order in which the processes finish together; the first jobs train on the first set
            main = [i for i, j in enumerate(todo) if j.data == files["x"]]
            todo = [todo[i] for i in balanced_order([j.cost for j in todo], workers, first=main)]
        res["workers"] = workers
        with progress.stage(STAGES[0], work=sum(j.cost for j in todo) / 1000):
            trained = map_jobs(train_disk_job, build_and_yield(cfg, todo, files, sets), workers=workers,
                               status_dir=progress.status_dir(), on_result=on_result)
    res["probed_while_training"] = list(probed)
    res["timeline"] = [dict(key=j.key, process=t["timeline"]["process"], start=t["timeline"]["started"] - t0,
                            end=t["timeline"]["ended"] - t0) for j, t in zip(todo, trained)]
    with progress.stage(STAGES[1]):
        probe_ready(True)
    res["train_seconds"] = float(sum(t["info"]["seconds"] for t in trained))
    res["figures"] = {k: figs[k] for k in FIGURE_ORDER if k in figs}
    res["config"] = asdict(cfg)
    return res


#: the figures in report order (parts may finish in any order)
FIGURE_ORDER = ("io", "code_vs_size", "profile", "airy_per_epoch", "cross_sections", "amplitude", "interpolation",
                "attribution", "loss", "limited_profile", "limited_io", "hole_errors", "hole_io", "psi3_sweep")
