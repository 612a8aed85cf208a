"""The autoencoder zoo ("The Great Autoencoder Bake Off", seed 004) under aeprobe's probes, plus the
decoder-upsampling and progressive-resizing practices of seed 003.

For every kind of :mod:`aeprobe.models.zoo` (shallow, vanilla, stacked, sparse, denoising, VAE,
strict/loose beta-VAE, VQ-VAE), on one dense backbone:

* the article's tasks: training time, test reconstruction error (BCE summed per image, and
  MSE), unconditional samples (VAEs, VQ-VAE), latent interpolation, 2-D latent structure
  (PCA; UMAP when ``umap-learn`` is installed), linear classification on codes with few labels,
  anomaly AUROC of a 2-D-latent model trained with one class held out;
* the mechanistic probes: identity tests (:mod:`aeprobe.probes.identity`), the encoder/decoder
  split of the generalisation gap (:mod:`aeprobe.probes.overfitting`), homogeneity of the
  decoder with its biases ablated (:mod:`aeprobe.probes.homogeneity` inside
  :func:`aeprobe.ablation.remove_biases`), and the code statistics of the sparse-autoencoder
  tool-makers (:func:`aeprobe.probes.code.code_stats` on the test images: dead units, L0, the
  fraction of variance explained and the effective dimension of the code).

Then a small fully-convolutional AE (:class:`aeprobe.models.conv.ConvAE`) with each decoder
upsampling choice, scored by the checkerboard probe (:mod:`aeprobe.probes.checkerboard`), and
progressive resizing (:func:`aeprobe.schedules.progressive_resize`) against direct training
(:mod:`aeprobe.studies.zoo_practices`). Each kind, each extra seed and each practice is one
independent job, run through :func:`aeprobe.sweep` (``--backend local|processes|ray``; default:
as many single-thread processes as the run has torch threads); each finished job is stored in
``OUT/jobs/`` and read back by a later run with the same ``--out`` (``--fresh``: run them all
again). Writes ``OUT/results.json``, ``OUT/results.csv`` (the results table),
``OUT/report.md``, ``OUT/report.html`` and PNGs.

``--data``: ``digits`` (scikit-learn's 8x8 digits, bundled; default) or ``torchvision:NAME:ROOT``
(MNIST, FashionMNIST, KMNIST, CIFAR10/100 already on disk in torchvision's layout; nothing is
downloaded).
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aeprobe.progress import Progress, file_task
from aeprobe.studies.parallel import add_sweep_arguments, default_workers
from aeprobe.studies.zoo_report import build_report, claims, headline, results_table  # noqa: F401  (interface)

NAME = "zoo"
STAGES = ("data", "training and probes", "figures")
SPREAD_METRICS = ("test_bce", "test_mse", "probe_acc", "auroc", "pca_silhouette", "interp_nn_mse")


@dataclass
class Config:
    mode: str = "quick"
    data: str = "digits"
    kinds: tuple = ()
    latent: int = 20  # article: 20 for every task except anomaly detection
    latent_anomaly: int = 2  # article: 2 for anomaly detection
    heldout: int = 1  # article: the ones are excluded from training
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    n_train: int | None = None  # None = all
    n_test: int | None = None
    test_fraction: float = 0.2  # digits: stratified train/test split
    n_labels: int = 100  # labelled codes for the linear probe (article: 550 of 55k MNIST images)
    probe_repeats: int = 5
    spread_seeds: int = 3  # vanilla trained with this many seeds to gauge seed-to-seed noise
    refit_epochs: int = 50
    jacobian_points: int = 16
    jacobian_directions: int = 16
    n_pairs: int = 10  # interpolation pairs
    steps: int = 8
    n_samples: int = 64
    conv_size: int | None = None  # None: 16 for 8x8 digits, else the data size rounded down to a multiple of 4
    conv_channels: tuple = (16, 32)
    conv_latent: int = 4
    conv_epochs: int = 30
    conv_lr: float = 3e-3
    cb_codes: int = 32
    cb_scale: int = 4  # checkerboard codes are cb_scale x larger in space than the data codes
    seed: int = 0
    device: str | None = None
    code_threshold: float = 0.01  # code_stats: a unit is active on an input when |z_k| > this
    workers: int | None = None  # processes for the independent jobs (None: one per torch thread)
    backend: str | None = None  # aeprobe.sweep backend: local | processes | ray (None: processes if workers > 1)
    fresh: bool = False  # run every job again instead of reading the jobs stored in OUT/jobs
    notes: list = field(default_factory=list)

    @classmethod
    def for_mode(cls, mode: str, *, other_data: bool = False) -> "Config":
        from aeprobe.models.zoo import KINDS

        if mode == "smoke":
            return cls("smoke", kinds=KINDS, epochs=3, n_train=240, n_test=120, n_labels=40, probe_repeats=1,
                       spread_seeds=2, refit_epochs=2, jacobian_points=2, jacobian_directions=2, n_pairs=2,
                       steps=4, n_samples=8, conv_channels=(4, 8), conv_epochs=1, cb_codes=4)
        if mode == "full":
            return cls("full", kinds=KINDS, epochs=400 if not other_data else 60, probe_repeats=10, spread_seeds=5,
                       refit_epochs=200, jacobian_points=64, jacobian_directions=32, n_pairs=50, n_samples=256,
                       conv_epochs=100, cb_codes=128)
        if mode != "quick":
            raise ValueError(f"unknown mode {mode!r}; use quick, full or smoke")
        return cls("quick", kinds=KINDS, epochs=100 if not other_data else 30,
                   n_train=None if not other_data else 5000, n_test=None if not other_data else 1000)


def add_arguments(p) -> None:
    p.add_argument("--data", default=None, help="digits (default) | torchvision:NAME:ROOT")
    p.add_argument("--kinds", nargs="+", default=None, help="subset of the zoo kinds")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--latent", type=int, default=None, help="latent size of the main models (article: 20)")
    p.add_argument("--heldout", type=int, default=None, help="class held out for anomaly detection (article: 1)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    add_sweep_arguments(p, jobs="jobs", store="OUT/jobs")


def make_config(mode: str, args: argparse.Namespace | None = None) -> Config:
    from aeprobe.models.zoo import KINDS

    a = vars(args) if args is not None else {}
    other = a.get("data") is not None and a.get("data") != "digits"
    cfg = Config.for_mode(mode, other_data=other)
    over = {k: a.get(k) for k in ("data", "epochs", "latent", "heldout", "device", "n_train", "n_test", "batch_size",
                                  "lr", "seed", "workers", "backend") if a.get(k) is not None}
    if a.get("fresh"):
        over["fresh"] = True
    if a.get("kinds"):
        bad = [k for k in a["kinds"] if k not in KINDS]
        if bad:
            raise ValueError(f"unknown --kinds {bad}; choose from {list(KINDS)}")
        over["kinds"] = tuple(a["kinds"])
    return replace(cfg, **over)


def run(cfg: Config | None = None, out: str | os.PathLike = "runs/zoo", *, progress: Progress | None = None) -> dict:
    """Run the study and write its outputs to ``out``; returns the results (as in results.json)."""
    import sys

    from aeprobe.studies.runner import run_study

    return run_study(sys.modules[__name__], cfg or Config.for_mode("quick"), out, progress=progress)


# ----------------------------------------------------------------------------- data


def load_data(cfg: Config) -> dict[str, Any]:
    """Train/test images in [0, 1] and labels, from ``aeprobe.data``."""
    from aeprobe import data as D

    if cfg.data == "digits":
        from sklearn.model_selection import train_test_split

        x, y = D.digits()
        idx = np.arange(x.shape[0])
        tr, te = train_test_split(idx, test_size=cfg.test_fraction, stratify=y.numpy(), random_state=12345)
        x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
        name = "scikit-learn digits (8x8, 1797 images, bundled)"
    elif cfg.data.startswith("torchvision:"):
        parts = cfg.data.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"--data torchvision needs torchvision:NAME:ROOT, got {cfg.data!r}")
        x_tr, y_tr = D.torchvision_dataset(parts[1], parts[2], train=True, n=cfg.n_train)
        x_te, y_te = D.torchvision_dataset(parts[1], parts[2], train=False, n=cfg.n_test)
        name = f"torchvision {parts[1]} from {parts[2]}"
    else:
        raise ValueError(f"unknown --data {cfg.data!r}; use digits or torchvision:NAME:ROOT")
    rng = np.random.default_rng(cfg.seed + 99)
    if cfg.n_train is not None and x_tr.shape[0] > cfg.n_train:
        keep = np.sort(rng.permutation(x_tr.shape[0])[:cfg.n_train])
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if cfg.n_test is not None and x_te.shape[0] > cfg.n_test:
        keep = np.sort(rng.permutation(x_te.shape[0])[:cfg.n_test])
        x_te, y_te = x_te[keep], y_te[keep]
    x_tr, x_te = x_tr.float().cpu().contiguous(), x_te.float().cpu().contiguous()
    y_tr, y_te = y_tr.cpu(), y_te.cpu()
    if cfg.heldout not in set(y_te.tolist()):
        raise ValueError(f"held-out class {cfg.heldout} does not occur in the test labels")
    h = x_tr.shape[-1]
    conv_size = cfg.conv_size or (16 if h == 8 else max(8, h - h % 4))
    xc_tr, xc_te = D.resize(x_tr, conv_size), D.resize(x_te, conv_size)
    return dict(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, name=name, shape=tuple(x_tr.shape[1:]),
                xc_train=xc_tr, xc_test=xc_te, conv_size=conv_size)


_DATA: dict[tuple, dict] = {}  # data per configuration, loaded once per process


def job_data(cfg: Config) -> dict[str, Any]:
    """:func:`load_data` once per process (worker processes rebuild the same data deterministically)."""
    key = (cfg.data, cfg.n_train, cfg.n_test, cfg.seed, cfg.heldout, cfg.test_fraction, cfg.conv_size)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_data(cfg)
    return _DATA[key]


# ----------------------------------------------------------------------------- measuring helpers


@torch.no_grad()
def recon_errors(model, x: torch.Tensor, device, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per-image BCE (summed over pixels, the article's loss) and MSE (mean over pixels), eval mode."""
    from aeprobe.utils import eval_mode

    bce, mse = [], []
    with eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(device)
            logits = model.decode_logits(model.encode(xb))
            bce.append(torch.nn.functional.binary_cross_entropy_with_logits(logits, xb, reduction="none")
                       .flatten(1).sum(1).cpu())
            mse.append(((torch.sigmoid(logits) - xb) ** 2).flatten(1).mean(1).cpu())
    return torch.cat(bce).double().numpy(), torch.cat(mse).double().numpy()


def nn_mse(images: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """Per-image MSE to the nearest reference image (how much an image looks like real data)."""
    a = images.reshape(images.shape[0], -1).double().cpu()
    b = reference.reshape(reference.shape[0], -1).double().cpu()
    d = torch.cdist(a, b) ** 2 / a.shape[1]
    return d.min(1).values.numpy()


def interpolation_pairs(y: torch.Tensor, n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` (seeded) pairs of test indices with different labels; the first pair is a 2 and a 7
    when both occur (the article's example), else the first two different labels."""
    yy = y.numpy()
    pairs = []
    if (yy == 2).any() and (yy == 7).any():
        pairs.append((int(np.flatnonzero(yy == 2)[0]), int(np.flatnonzero(yy == 7)[0])))
    rng = np.random.default_rng(seed)
    while len(pairs) < n:
        i, j = (int(v) for v in rng.choice(len(yy), 2, replace=False))
        if yy[i] != yy[j]:
            pairs.append((i, j))
    return pairs[:n]


class LogitDecoder(nn.Module):
    """``decode(z) = ae.decode_logits(z)``: the zoo decoder without its output sigmoid."""

    def __init__(self, ae: nn.Module):
        super().__init__()
        self.ae = ae

    def decode(self, z):
        return self.ae.decode_logits(z)


def train_zoo(cfg: Config, kind: str, latent: int, x_train, x_test, seed: int, device, task=None):
    """Build and train one zoo model; returns (model, seconds, per-epoch test BCE curve, train history)."""
    from aeprobe.models.zoo import build, greedy_pretrain, zoo_loss_fn
    from aeprobe.train import train

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(kind, tuple(x_train.shape[1:]), latent)
    curve: list[float] = []

    def on_epoch_end(epoch, history, _trained):  # the full model's test BCE, also during greedy stages
        curve.append(float(recon_errors(model, x_test, device)[0].mean()))
        if task is not None:
            task.update(len(curve))

    kw = dict(batch_size=cfg.batch_size, lr=cfg.lr, seed=seed, device=device, progress=False,
              on_epoch_end=on_epoch_end)
    if kind == "stacked":
        out = greedy_pretrain(model, x_train, epochs=cfg.epochs, **kw)
        seconds = out["seconds"]
        hist = {f"stage{k}_loss": r.history["train_loss"] for k, r in enumerate(out["stages"])}
    else:
        res = train(model, x_train, epochs=cfg.epochs, loss_fn=zoo_loss_fn, **kw)
        seconds, hist = res.seconds, res.history
    model.eval()
    return model, seconds, curve, hist


def task_metrics(cfg: Config, model, data: dict, device, *, pairs, figures: bool) -> dict[str, Any]:
    """The article's tasks on a trained latent-``cfg.latent`` model (everything but anomaly detection)."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    from aeprobe.models.zoo import SAMPLERS
    from aeprobe.probes.latent import interpolate
    from aeprobe.probes.linear import linear_probe
    from aeprobe.studies.evaluate import codes

    x_tr, x_te, y_te = data["x_train"], data["x_test"], data["y_test"]
    out: dict[str, Any] = {}
    bce_te, mse_te = recon_errors(model, x_te, device)
    bce_tr, mse_tr = recon_errors(model, x_tr, device)
    out.update(test_bce=float(bce_te.mean()), test_mse=float(mse_te.mean()), train_bce=float(bce_tr.mean()),
               train_mse=float(mse_tr.mean()))
    z = codes(model, x_te, device=device)
    n_lab = min(cfg.n_labels, x_te.shape[0] // 2)
    pr = linear_probe(z, y_te, test_size=1 - n_lab / x_te.shape[0], repeats=cfg.probe_repeats, seed=cfg.seed)
    out.update(probe_acc=pr.accuracy, probe_sd=pr.std, probe_labels=n_lab)
    pca = PCA(n_components=2, random_state=0)
    p2 = pca.fit_transform(z.double().numpy())
    out.update(pca_silhouette=float(silhouette_score(p2, y_te.numpy())),
               pca_explained=float(pca.explained_variance_ratio_.sum()))
    # interpolation: decoded codes on the segment between two test codes; realism = MSE of the
    # interior frames (0 < t < 1) to their nearest training image
    xa = torch.stack([x_te[i] for i, _ in pairs])
    xb = torch.stack([x_te[j] for _, j in pairs])
    frames = torch.from_numpy(interpolate(model, xa, xb, cfg.steps, device=device))  # [B, steps, C, H, W]
    inner = frames[:, 1:-1].reshape(-1, *x_te.shape[1:])
    out["interp_nn_mse"] = float(nn_mse(inner, x_tr).mean())
    if model.kind in SAMPLERS:
        with torch.random.fork_rng(devices=[]):
            g = torch.Generator(device=next(model.parameters()).device).manual_seed(cfg.seed)
            s = model.sample(cfg.n_samples, generator=g).cpu()
        out["sample_nn_mse"] = float(nn_mse(s, x_tr).mean())
        out["_samples"] = s
    if figures:
        out["_frames"] = frames[0]
        out["_pca"] = p2
        try:  # optional: UMAP when umap-learn is installed
            import umap  # type: ignore

            out["_umap"] = umap.UMAP(n_components=2, random_state=0).fit_transform(z.double().numpy())
        except Exception:  # noqa: BLE001 - not installed or failed: PCA only
            pass
    return out


def anomaly_metrics(cfg: Config, model, data: dict, device) -> dict[str, Any]:
    """AUROC of the held-out class against the other test images (outliers positive)."""
    from sklearn.metrics import roc_curve

    from aeprobe.probes.anomaly import auroc_from_scores, clipped_errors, outlier_auroc

    x_te, y_te = data["x_test"], data["y_test"]
    out_mask = y_te == cfg.heldout
    x_in, x_out = x_te[~out_mask], x_te[out_mask]
    rep = outlier_auroc(model, x_in, x_out, device=device)
    e_in, e_out = clipped_errors(model, x_in, device=device), clipped_errors(model, x_out, device=device)
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(e_in.size), np.ones(e_out.size)], np.r_[e_in, e_out])
    b_in, b_out = recon_errors(model, x_in, device)[0], recon_errors(model, x_out, device)[0]
    return dict(auroc=rep.auroc, auroc_bce=auroc_from_scores(b_in, b_out), report=rep, _roc=(fpr, tpr))


def mechanistic_metrics(cfg: Config, model, data: dict, device) -> dict[str, Any]:
    """Identity tests, encoder/decoder overfitting split, decoder homogeneity with biases ablated."""
    from aeprobe.ablation import remove_biases
    from aeprobe.probes.homogeneity import decoder_homogeneity
    from aeprobe.probes.identity import identity_tests
    from aeprobe.probes.overfitting import overfitting_split
    from aeprobe.studies.evaluate import codes

    x_tr, x_te, y_te = data["x_train"], data["x_test"], data["y_test"]
    ident = identity_tests(model, x_te, y=y_te, jacobian_points=cfg.jacobian_points,
                           directions=cfg.jacobian_directions, probe_repeats=cfg.probe_repeats, seed=cfg.seed,
                           device=device)
    of = overfitting_split(model, x_tr, x_te, epochs=cfg.refit_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           seed=cfg.seed, device=device)
    z = codes(model, x_te, device=device)
    h_bias = decoder_homogeneity(model, data_codes=z, device=device)
    with remove_biases(model, ["decoder"]):
        h_nobias = decoder_homogeneity(model, data_codes=z, device=device)
        h_logits = decoder_homogeneity(LogitDecoder(model), data_codes=z, device=device)
    return dict(identity=ident, identity_looks_like_copy=ident.looks_like_copy(), overfitting=of, homogeneity=dict(
        with_biases=h_bias.max_rel_error, no_biases=h_nobias.max_rel_error, no_biases_logits=h_logits.max_rel_error,
        signs_used=h_nobias.signs_used), code=code_metrics(cfg, model, x_te, device))


def code_metrics(cfg: Config, model, x: torch.Tensor, device) -> dict[str, Any]:
    """:func:`aeprobe.probes.code.code_stats` of the model's code on ``x`` (reconstruction
    ``decode(encode(x))``): dead units, L0 and the share of dead units at ``cfg.code_threshold``, the
    fraction of variance explained (FVE) and the effective dimension (participation ratio)."""
    from aeprobe.probes.code import code_stats

    st = code_stats(model, x, threshold=cfg.code_threshold, device=device)
    return dict(threshold=st.threshold, code_size=st.code_size, dead_units=int(st.dead.size),
                dead_fraction=st.dead_fraction, l0=st.l0, fve=st.fve, effective_dim=st.effective_dim,
                spectrum=[float(v) for v in st.spectrum])


# ----------------------------------------------------------------------------- jobs


def job_config(cfg: Config) -> Config:
    """``cfg`` with the fields that no job reads blanked: the jobs' :func:`aeprobe.sweep` keys then do not
    change with the list of kinds, the number of seeds, the backend or the number of workers."""
    return replace(cfg, mode="", kinds=(), spread_seeds=0, workers=None, backend=None, fresh=False, notes=[])


@dataclass(frozen=True)
class ZooJob:
    """``what``: "kind" (one kind: its main and anomaly models, every probe), "spread" (vanilla with
    seed ``cfg.seed + arg``), "upsampling" or "progressive" (:mod:`aeprobe.studies.zoo_practices`)."""

    what: str
    arg: Any
    cfg: Config

    @property
    def cost(self) -> float:
        return {"kind": 3.0, "spread": 2.0, "upsampling": 1.5, "progressive": 0.6}[self.what]


def run_zoo_job(job: ZooJob) -> dict[str, Any]:
    """One job of the zoo study; returns its record (numbers) and, for kinds, the arrays the figures need."""
    from aeprobe.device import resolve_device
    from aeprobe.studies.zoo_practices import progressive_study, upsampling_study

    cfg, device = job.cfg, resolve_device(job.cfg.device)
    data = job_data(cfg)
    if job.what == "upsampling":
        return upsampling_study(cfg, data, device, task=file_task("upsampling", "upsampling ConvAEs",
                                                                  cfg.conv_epochs * 5))
    if job.what == "progressive":
        return progressive_study(cfg, data, device, task=file_task("progressive", "progressive resizing",
                                                                   cfg.conv_epochs * 2))
    pairs = interpolation_pairs(data["y_test"], cfg.n_pairs, cfg.seed)
    x_train_anom = data["x_train"][data["y_train"] != cfg.heldout]
    kind = job.arg if job.what == "kind" else "vanilla"
    seed = cfg.seed if job.what == "kind" else cfg.seed + job.arg
    label = kind if job.what == "kind" else f"vanilla seed {seed}"
    task = file_task(f"{job.what}-{job.arg}", label, 2 * cfg.epochs)
    t0 = time.perf_counter()
    model, secs, curve, hist = train_zoo(cfg, kind, cfg.latent, data["x_train"], data["x_test"], seed, device, task)
    c = replace(cfg, seed=seed)
    task.label = f"{label} probes"
    task.update(cfg.epochs)
    tm = task_metrics(c, model, data, device, pairs=pairs, figures=job.what == "kind")
    mech = mechanistic_metrics(cfg, model, data, device) if job.what == "kind" else {}
    task.label = f"{label} (anomaly, latent {cfg.latent_anomaly})"
    am, secs_anom, _, _ = train_zoo(cfg, kind, cfg.latent_anomaly, x_train_anom, data["x_test"], seed, device)
    task.update(2 * cfg.epochs)
    anom = anomaly_metrics(c, am, data, device)
    rec = {k: v for k, v in tm.items() if not k.startswith("_")}
    task.done()
    if job.what == "spread":
        return dict(seed=seed, seconds_train=secs, auroc=anom["auroc"], **rec)
    rec.update(seconds_train=secs, seconds_train_anomaly=secs_anom, test_bce_curve=curve, history=hist,
               auroc=anom["auroc"], auroc_bce=anom["auroc_bce"], anomaly=anom["report"], **mech,
               seconds_total=time.perf_counter() - t0)
    with torch.no_grad():
        recon = model(data["x_test"][:10].to(device)).cpu()
    arrays = {k: v for k, v in tm.items() if k.startswith("_")}
    return dict(record=rec, arrays=dict(arrays, _roc=anom["_roc"], _recon=recon))


def seed_spread(kinds: dict, runs: list[dict]) -> dict[str, Any]:
    """Standard deviation over seeds of vanilla's metrics (seed ``cfg.seed`` plus the extra runs)."""
    if "vanilla" not in kinds or not runs:
        return {"seeds": 1, "sd": {}}
    base = kinds["vanilla"]
    sd = {m: float(np.std([base[m]] + [r[m] for r in runs], ddof=1)) for m in SPREAD_METRICS}
    return {"seeds": 1 + len(runs), "sd": sd, "runs": runs}


def _public(obj):
    """Drop private (``_``-prefixed) entries (image arrays for figures) before writing JSON."""
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not str(k).startswith("_")}
    return obj


def run_jobs(jobs: list[ZooJob], out: Path, *, workers: int, backend: str, fresh: bool = False,
             status_dir=None) -> tuple[list[dict], int]:
    """Every job through :func:`aeprobe.sweep` (stored in ``out/jobs``), submitted longest first so that
    the processes finish together; returns the results in the order of ``jobs`` and the number read
    back from ``out/jobs`` instead of run. Every job is seeded on its own: nothing depends on the
    backend or on ``workers``."""
    from aeprobe.studies.parallel import balanced_order, sweep_jobs

    order = balanced_order([j.cost for j in jobs], workers) if backend != "local" else list(range(len(jobs)))
    res, reused = sweep_jobs(run_zoo_job, [jobs[i] for i in order], backend=backend, out=Path(out) / "jobs",
                             workers=workers, fresh=fresh, status_dir=status_dir)
    done: list[Any] = [None] * len(jobs)
    for i, r in zip(order, res):
        done[i] = r
    return done, reused


def measure(cfg: Config, out: Path, progress: Progress) -> dict[str, Any]:
    from aeprobe.device import resolve_device
    from aeprobe.probes.linear import linear_probe
    from aeprobe.studies.zoo_figures import make_figures, write_csv

    out = Path(out)
    device = resolve_device(cfg.device)
    with progress.stage(STAGES[0]):
        data = load_data(cfg)
    _DATA.clear()
    _DATA[(cfg.data, cfg.n_train, cfg.n_test, cfg.seed, cfg.heldout, cfg.test_fraction, cfg.conv_size)] = data
    jc = job_config(cfg)
    jobs = ([ZooJob("kind", k, jc) for k in cfg.kinds] + [ZooJob("spread", s, jc) for s in range(1, cfg.spread_seeds)]
            + [ZooJob("upsampling", None, jc), ZooJob("progressive", None, jc)])
    workers = cfg.workers or default_workers(len(jobs))
    backend = cfg.backend or ("processes" if workers > 1 else "local")
    with progress.stage(STAGES[1], work=sum(j.cost for j in jobs)):
        done, reused = run_jobs(jobs, out, workers=workers, backend=backend, fresh=cfg.fresh,
                                status_dir=progress.status_dir())
    kinds, arrays, spread_runs, ups, prog = {}, {}, [], None, None
    for job, r in zip(jobs, done):
        if job.what == "kind":
            kinds[job.arg], arrays[job.arg] = r["record"], r["arrays"]
        elif job.what == "spread":
            spread_runs.append(r)
        elif job.what == "upsampling":
            ups = r
        else:
            prog = r
    n_lab = min(cfg.n_labels, data["x_test"].shape[0] // 2)
    pp = linear_probe(data["x_test"].reshape(data["x_test"].shape[0], -1), data["y_test"],
                      test_size=1 - n_lab / data["x_test"].shape[0], repeats=cfg.probe_repeats, seed=cfg.seed)
    pixel_probe = dict(accuracy=pp.accuracy, std=pp.std, chance=pp.chance, labels=n_lab)
    with progress.stage(STAGES[2]):
        figs = make_figures(cfg, kinds, arrays, ups, data, out, pixel_probe)
    n_anom = int((data["y_train"] != cfg.heldout).sum())
    results = dict(config=vars(cfg), data=dict(name=data["name"], shape=list(data["shape"]),
                                               n_train=int(data["x_train"].shape[0]),
                                               n_test=int(data["x_test"].shape[0]),
                                               n_train_anomaly=n_anom, conv_size=data["conv_size"]),
                   kinds=kinds, pixel_probe=pixel_probe, spread=seed_spread(kinds, spread_runs), upsampling=_public(ups),
                   progressive=prog, figures=figs, device=str(device), workers=workers, backend=backend,
                   jobs_reused=reused)
    write_csv(out / "results.csv", *results_table(kinds))
    return results
