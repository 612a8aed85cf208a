"""The autoencoder zoo ("The Great Autoencoder Bake Off", seed 004) under aeprobe's probes, plus the
decoder-upsampling and progressive-resizing practices of seed 003.

For every kind of :mod:`aeprobe.models.zoo` (shallow, vanilla, stacked, sparse, denoising, VAE,
strict/loose beta-VAE, VQ-VAE), on one dense backbone:

* the article's tasks: training time, test reconstruction error (BCE summed per image, and
  MSE), unconditional samples (VAEs, VQ-VAE), latent interpolation, 2-D latent structure
  (PCA; UMAP when ``umap-learn`` is installed), linear classification on codes with few labels,
  anomaly AUROC of a 2-D-latent model trained with one class held out;
* the mechanistic probes: identity tests (:mod:`aeprobe.probes.identity`), the encoder/decoder
  split of the generalisation gap (:mod:`aeprobe.probes.overfitting`) and homogeneity of the
  decoder with its biases ablated (:mod:`aeprobe.probes.homogeneity` inside
  :func:`aeprobe.ablation.remove_biases`).

Then a small fully-convolutional AE (:class:`aeprobe.models.conv.ConvAE`) with each decoder
upsampling choice, scored by the checkerboard probe (:mod:`aeprobe.probes.checkerboard`), and
progressive resizing (:func:`aeprobe.schedules.progressive_resize`) against direct training.

Writes ``OUT/results.json``, ``OUT/results.csv`` (the results table), ``OUT/report.md`` and PNGs.

    python experiments/zoo.py --quick --out runs/zoo              # ~2 min on 2 CPU cores (digits)
    python experiments/zoo.py --smoke --out /tmp/zoo              # seconds (tests)
    python experiments/zoo.py --full --out runs/zoo_full          # longer training, more repeats
    python experiments/zoo.py --quick --data torchvision:MNIST:/data --out runs/zoo_mnist

``--data``: ``digits`` (scikit-learn's 8x8 digits, bundled; default) or ``torchvision:NAME:ROOT``
(MNIST, FashionMNIST, KMNIST, CIFAR10/100 already on disk in torchvision's layout; nothing is
downloaded).
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aeprobe.device import torch_threads  # noqa: E402
from aeprobe.reporting import MarkdownReport, to_jsonable, write_json  # noqa: E402

# (label, upsample kind, kernel size) of the upsampling comparison
UPSAMPLERS: tuple = (("transposed k3", "transposed", 3), ("transposed k4", "transposed", 4),
                     ("nearest", "nearest", 3), ("bilinear", "bilinear", 3), ("pixel_shuffle", "pixel_shuffle", 3))


# ----------------------------------------------------------------------------- configuration


@dataclass
class Config:
    mode: str
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
    progress: bool = True
    notes: list = field(default_factory=list)


def make_config(args: argparse.Namespace) -> Config:
    from aeprobe.models.zoo import KINDS

    other = args.data is not None and args.data != "digits"
    if args.smoke:
        cfg = Config("smoke", kinds=KINDS, epochs=3, n_train=240, n_test=120, n_labels=40, probe_repeats=1,
                     spread_seeds=2, refit_epochs=2, jacobian_points=2, jacobian_directions=2, n_pairs=2,
                     steps=4, n_samples=8, conv_channels=(4, 8), conv_epochs=1, cb_codes=4)
    elif args.full:
        cfg = Config("full", kinds=KINDS, epochs=400 if not other else 60, probe_repeats=10, spread_seeds=5,
                     refit_epochs=200, jacobian_points=64, jacobian_directions=32, n_pairs=50, n_samples=256,
                     conv_epochs=100, cb_codes=128)
    else:
        cfg = Config("quick", kinds=KINDS, epochs=100 if not other else 30,
                     n_train=None if not other else 5000, n_test=None if not other else 1000)
    over = {k: v for k, v in dict(data=args.data, epochs=args.epochs, latent=args.latent, heldout=args.heldout,
                                  device=args.device, n_train=args.n_train, n_test=args.n_test,
                                  batch_size=args.batch_size, lr=args.lr, seed=args.seed).items() if v is not None}
    if args.kinds:
        bad = [k for k in args.kinds if k not in KINDS]
        if bad:
            raise SystemExit(f"unknown kinds {bad}; choose from {list(KINDS)}")
        over["kinds"] = tuple(args.kinds)
    if args.no_progress:
        over["progress"] = False
    return replace(cfg, **over)


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


# ----------------------------------------------------------------------------- training


def train_zoo(cfg: Config, kind: str, latent: int, x_train, x_test, seed: int, device):
    """Build and train one zoo model; returns (model, seconds, per-epoch test BCE curve, train history)."""
    from aeprobe.models.zoo import build, greedy_pretrain, zoo_loss_fn
    from aeprobe.train import train

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(kind, tuple(x_train.shape[1:]), latent)
    curve: list[float] = []

    def on_epoch_end(epoch, history, _trained):  # the full model's test BCE, also during greedy stages
        curve.append(float(recon_errors(model, x_test, device)[0].mean()))

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
    from aeprobe.view import autoencoder
    from aeprobe.probes.latent import interpolate
    from aeprobe.probes.linear import linear_probe

    x_tr, x_te, y_te = data["x_train"], data["x_test"], data["y_test"]
    out: dict[str, Any] = {}
    bce_te, mse_te = recon_errors(model, x_te, device)
    bce_tr, mse_tr = recon_errors(model, x_tr, device)
    out.update(test_bce=float(bce_te.mean()), test_mse=float(mse_te.mean()), train_bce=float(bce_tr.mean()),
               train_mse=float(mse_tr.mean()))
    z = autoencoder(model).codes(x_te, device=device)
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
        out["_codes"] = z
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
    from aeprobe.view import autoencoder
    from aeprobe.probes.homogeneity import decoder_homogeneity
    from aeprobe.probes.identity import identity_tests
    from aeprobe.probes.overfitting import overfitting_split

    x_tr, x_te, y_te = data["x_train"], data["x_test"], data["y_test"]
    ident = identity_tests(model, x_te, y=y_te, jacobian_points=cfg.jacobian_points,
                           directions=cfg.jacobian_directions, probe_repeats=cfg.probe_repeats, seed=cfg.seed,
                           device=device)
    of = overfitting_split(model, x_tr, x_te, epochs=cfg.refit_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           seed=cfg.seed, device=device)
    z = autoencoder(model).codes(x_te, device=device)
    h_bias = decoder_homogeneity(model, data_codes=z, device=device)
    with remove_biases(model, ["decoder"]):
        h_nobias = decoder_homogeneity(model, data_codes=z, device=device)
        h_logits = decoder_homogeneity(LogitDecoder(model), data_codes=z, device=device)
    return dict(identity=ident, overfitting=of, homogeneity=dict(
        with_biases=h_bias.max_rel_error, no_biases=h_nobias.max_rel_error, no_biases_logits=h_logits.max_rel_error,
        signs_used=h_nobias.signs_used))


# ----------------------------------------------------------------------------- practices (seed 003)


def upsampling_study(cfg: Config, data: dict, device) -> dict[str, Any]:
    """ConvAE with each decoder upsampling choice: test MSE, time, checkerboard probe."""
    from aeprobe.models.conv import ConvAE
    from aeprobe.view import autoencoder
    from aeprobe.probes.checkerboard import alias_stats, checkerboard_probe, constant_codes, random_codes
    from aeprobe.train import train

    xtr, xte = data["xc_train"], data["xc_test"]
    c = xtr.shape[1]
    out: dict[str, Any] = {"data": alias_stats(xte), "kinds": {}, "size": data["conv_size"]}
    for label, kind, k in UPSAMPLERS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            m = ConvAE(in_channels=c, channels=cfg.conv_channels, latent_channels=cfg.conv_latent, upsample=kind,
                       kernel_size=k)
        res = train(m, xtr, epochs=cfg.conv_epochs, batch_size=cfg.batch_size, lr=cfg.conv_lr, seed=cfg.seed,
                    device=device, progress=False)
        m.eval()
        zc = autoencoder(m).codes(xte, device=device, flatten=False)
        big = (zc.shape[1], zc.shape[2] * cfg.cb_scale, zc.shape[3] * cfg.cb_scale)
        out_size = big[1] * m.factor
        crop = out_size // 4  # keep the central half: away from the zero-padding borders
        rep = checkerboard_probe(m, data_codes=zc, code_shape=big, n=cfg.cb_codes, crop=crop, seed=cfg.seed,
                                 device=device)
        with torch.no_grad():
            dev = next(m.parameters()).device
            img_c = m.decode(constant_codes(1, big, data_codes=zc, seed=cfg.seed).to(dev)).cpu()
            img_r = m.decode(random_codes(1, big, data_codes=zc, seed=cfg.seed + 1).to(dev)).cpu()
        out["kinds"][label] = dict(
            upsample=kind, kernel_size=k, seconds=res.seconds, final_train_mse=res.final_loss,
            test_mse=float(autoencoder(m).per_sample_mse(xte, device=device).mean()), probe=rep,
            recon=alias_stats(autoencoder(m).reconstructions(xte, device=device)),
            _images=(img_c[0, :, crop:out_size - crop, crop:out_size - crop],
                     img_r[0, :, crop:out_size - crop, crop:out_size - crop]))
    return out


def progressive_study(cfg: Config, data: dict, device) -> dict[str, Any]:
    """Same ConvAE, same number of epochs: direct training at full size vs progressive resizing."""
    from aeprobe.models.conv import ConvAE
    from aeprobe.view import autoencoder
    from aeprobe.schedules import progressive_resize
    from aeprobe.train import train

    xtr, xte = data["xc_train"], data["xc_test"]
    size = xtr.shape[-1]
    small = max(4, (size // 2) // 4 * 4)
    e1 = max(1, cfg.conv_epochs // 2)
    e2 = max(1, cfg.conv_epochs - e1)

    def fresh():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return ConvAE(in_channels=xtr.shape[1], channels=cfg.conv_channels, latent_channels=cfg.conv_latent,
                          upsample="nearest")

    kw = dict(batch_size=cfg.batch_size, lr=cfg.conv_lr, device=device, progress=False)
    m1 = fresh()
    r1 = train(m1, xtr, epochs=e1 + e2, seed=cfg.seed, **kw)
    m2 = fresh()
    r2 = progressive_resize(m2, xtr, sizes=[small, size], epochs_per_size=[e1, e2], seed=cfg.seed, **kw)
    return dict(sizes=[small, size], epochs=[e1, e2],
                direct=dict(seconds=r1.seconds, test_mse=float(autoencoder(m1).per_sample_mse(xte, device=device).mean())),
                progressive=dict(seconds=r2.seconds, test_mse=float(autoencoder(m2).per_sample_mse(xte, device=device).mean()),
                                 seconds_per_size=[r.seconds for r in r2.results]))


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU scale, a few minutes (default)")
    mode.add_argument("--full", action="store_true", help="longer training and more repeats")
    mode.add_argument("--smoke", action="store_true", help="tiny: seconds, for tests")
    p.add_argument("--out", required=True, type=Path, help="output folder (results.json, results.csv, report.md, PNGs)")
    p.add_argument("--data", default=None, help="digits (default) | torchvision:NAME:ROOT")
    p.add_argument("--kinds", nargs="+", default=None, help="subset of the zoo kinds")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--latent", type=int, default=None, help="latent size of the main models (article: 20)")
    p.add_argument("--heldout", type=int, default=None, help="class held out for anomaly detection (article: 1)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: these models are tiny and a shared machine's "
                        "OpenMP spin-waits make more threads slower)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = make_config(args)
    with torch_threads(args.threads):
        return run(cfg, args.out)


def run(cfg: Config, out: Path) -> dict:
    from tqdm.auto import tqdm

    from aeprobe.device import resolve_device
    from aeprobe.probes.linear import linear_probe

    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    data = load_data(cfg)
    pairs = interpolation_pairs(data["y_test"], cfg.n_pairs, cfg.seed)
    keep_in = data["y_train"] != cfg.heldout
    x_train_anom = data["x_train"][keep_in]

    kinds: dict[str, dict] = {}
    private: dict[str, dict] = {}
    steps = [("kind", k) for k in cfg.kinds] + [("spread", s) for s in range(1, cfg.spread_seeds)] + \
            [("upsampling", None), ("progressive", None)]
    bar = tqdm(steps, desc="zoo", disable=not cfg.progress)
    spread_runs = []
    ups = prog = None
    for what, arg in bar:
        bar.set_postfix_str(f"{what} {arg if arg is not None else ''}")
        if what == "kind":
            kind = arg
            t0 = time.perf_counter()
            model, secs, curve, hist = train_zoo(cfg, kind, cfg.latent, data["x_train"], data["x_test"], cfg.seed, device)
            task = task_metrics(cfg, model, data, device, pairs=pairs, figures=True)
            mech = mechanistic_metrics(cfg, model, data, device)
            am, secs_anom, _, _ = train_zoo(cfg, kind, cfg.latent_anomaly, x_train_anom, data["x_test"], cfg.seed, device)
            anom = anomaly_metrics(cfg, am, data, device)
            rec = {k: v for k, v in task.items() if not k.startswith("_")}
            rec.update(seconds_train=secs, seconds_train_anomaly=secs_anom, test_bce_curve=curve, history=hist,
                       auroc=anom["auroc"], auroc_bce=anom["auroc_bce"], anomaly=anom["report"], **mech,
                       seconds_total=time.perf_counter() - t0)
            kinds[kind] = rec
            with torch.no_grad():
                recon = model(data["x_test"][:10].to(device)).cpu()
            private[kind] = dict(task, _roc=anom["_roc"], _recon=recon)
        elif what == "spread":  # vanilla with another seed: the yardstick for seed-to-seed noise
            s = cfg.seed + arg
            model, secs, _, _ = train_zoo(cfg, "vanilla", cfg.latent, data["x_train"], data["x_test"], s, device)
            c = replace(cfg, seed=s)
            task = task_metrics(c, model, data, device, pairs=pairs, figures=False)
            am, _, _, _ = train_zoo(cfg, "vanilla", cfg.latent_anomaly, x_train_anom, data["x_test"], s, device)
            spread_runs.append(dict(seed=s, seconds_train=secs, auroc=anomaly_metrics(c, am, data, device)["auroc"],
                                    **{k: v for k, v in task.items() if not k.startswith("_")}))
        elif what == "upsampling":
            ups = upsampling_study(cfg, data, device)
        else:
            prog = progressive_study(cfg, data, device)

    n_lab = min(cfg.n_labels, data["x_test"].shape[0] // 2)
    pp = linear_probe(data["x_test"].reshape(data["x_test"].shape[0], -1), data["y_test"],
                      test_size=1 - n_lab / data["x_test"].shape[0], repeats=cfg.probe_repeats, seed=cfg.seed)
    pixel_probe = dict(accuracy=pp.accuracy, std=pp.std, chance=pp.chance, labels=n_lab)
    spread = seed_spread(cfg, kinds, spread_runs)
    claims = judge_claims(cfg, kinds, spread)
    figs = make_figures(cfg, kinds, private, ups, data, out, pixel_probe)
    seconds = time.perf_counter() - t_start
    results = dict(config=vars(cfg), data=dict(name=data["name"], shape=list(data["shape"]),
                                               n_train=int(data["x_train"].shape[0]), n_test=int(data["x_test"].shape[0]),
                                               n_train_anomaly=int(x_train_anom.shape[0]), conv_size=data["conv_size"]),
                   kinds=kinds, pixel_probe=pixel_probe, spread=spread, claims=claims, upsampling=_public(ups), progressive=prog,
                   figures=figs, seconds=seconds, device=str(device), threads=torch.get_num_threads())
    write_json(out / "results.json", results)
    header, rows = results_table(cfg, kinds)
    write_csv(out / "results.csv", header, rows)
    write_report(cfg, results, out, header, rows)
    return to_jsonable(results)


def _public(obj):
    """Drop private (``_``-prefixed) entries (image arrays for figures) before writing JSON."""
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not str(k).startswith("_")}
    return obj


# ----------------------------------------------------------------------------- seed spread and claims


SPREAD_METRICS = ("test_bce", "test_mse", "probe_acc", "auroc", "pca_silhouette", "interp_nn_mse")


def seed_spread(cfg: Config, kinds: dict, runs: list[dict]) -> dict[str, Any]:
    """Standard deviation over seeds of vanilla's metrics (seed ``cfg.seed`` plus the extra runs)."""
    if "vanilla" not in kinds or not runs:
        return {"seeds": 1, "sd": {}}
    base = kinds["vanilla"]
    sd = {}
    for m in SPREAD_METRICS:
        vals = [base[m]] + [r[m] for r in runs]
        sd[m] = float(np.std(vals, ddof=1))
    return {"seeds": 1 + len(runs), "sd": sd, "runs": runs}


def _rank(kinds: dict, metric: str, higher_better: bool) -> list[str]:
    names = [k for k in kinds if kinds[k].get(metric) is not None]
    return sorted(names, key=lambda k: kinds[k][metric], reverse=higher_better)


def _noise_note(gap: float, sd: float | None) -> str:
    if sd is None or not math.isfinite(sd) or sd == 0:
        return ""
    r = abs(gap) / sd
    return " (within 2 sd of the seed noise)" if r < 2 else f" (gap {r:.1f} sd of the seed noise)" if r < 10 else \
        f" (gap {r:.0f} sd of the seed noise)"


def judge_best(kinds: dict, spread: dict, kind: str, metric: str, higher_first: bool, what: str) -> tuple[str, str]:
    """Verdict on "``kind`` comes first when kinds are ordered by ``metric``" (``higher_first``:
    descending order); ``what`` names the ordering for the evidence text (e.g. "highest AUROC")."""
    if kind not in kinds:
        return "not testable", f"{kind} was not run"
    order = _rank(kinds, metric, higher_first)
    sd = spread.get("sd", {}).get(metric)
    v = kinds[kind][metric]
    if order[0] == kind:
        second = order[1] if len(order) > 1 else None
        if second is None:
            return "agrees", f"{kind} is the only kind measured"
        gap = v - kinds[second][metric]
        return ("agrees" + _noise_note(gap, sd),
                f"{kind} has the {what} ({v:.4g}); next is {second} ({kinds[second][metric]:.4g})")
    first = order[0]
    gap = v - kinds[first][metric]
    return ("disagrees" + _noise_note(gap, sd),
            f"{kind} ranks {order.index(kind) + 1} of {len(order)} by {what} ({v:.4g}); first is {first} "
            f"({kinds[first][metric]:.4g})")


def judge_claims(cfg: Config, kinds: dict, spread: dict) -> list[dict]:
    """The article's findings (seed 004, MNIST) checked against this run's numbers."""
    claims = []

    def add(cid, claim, verdict, evidence):
        claims.append(dict(id=cid, claim=claim, verdict=verdict, evidence=evidence))

    v, e = judge_best(kinds, spread, "shallow", "test_bce", True, "highest test BCE")
    add("shallow_worst_recon", "The shallow AE reconstructs worst (article: BCE 123 vs <= 88 for the others)", v, e)
    if all(k in kinds for k in ("vae", "beta_vae_strict", "beta_vae_loose")):
        b = {k: kinds[k]["test_bce"] for k in ("beta_vae_loose", "vae", "beta_vae_strict")}
        ok = b["beta_vae_loose"] < b["vae"] < b["beta_vae_strict"]
        sd = spread.get("sd", {}).get("test_bce")
        gaps = min(b["vae"] - b["beta_vae_loose"], b["beta_vae_strict"] - b["vae"])
        add("beta_orders_recon", "A larger beta gives a worse reconstruction: loose < VAE < strict in BCE "
            "(article: 69.5 < 76.1 < 86.1)", ("agrees" if ok else "disagrees") + (_noise_note(gaps, sd) if ok else ""),
            f"BCE loose {b['beta_vae_loose']:.4g}, VAE {b['vae']:.4g}, strict {b['beta_vae_strict']:.4g}")
    if "stacked" in kinds and "vanilla" in kinds:
        s, va = kinds["stacked"]["test_bce"], kinds["vanilla"]["test_bce"]
        add("stacked_worse_than_vanilla", "Greedy layer-wise training (stacked) reconstructs worse than end-to-end "
            "(vanilla) (article: 87.9 vs 63.9)", ("agrees" if s > va else "disagrees")
            + _noise_note(s - va, spread.get("sd", {}).get("test_bce")), f"BCE stacked {s:.4g}, vanilla {va:.4g}")
    samplers = {k: kinds[k] for k in kinds if kinds[k].get("sample_nn_mse") is not None}
    if "beta_vae_strict" in samplers:
        v, e = judge_best(samplers, {}, "beta_vae_strict", "sample_nn_mse", False,
                          "lowest nearest-training-image MSE of its samples")
        add("strict_samples_best", "The strict beta-VAE gives the most data-like unconditional samples (article: "
            "visual judgement; here: mean MSE of a sample to its nearest training image)", v, e)
    if "vq" in samplers:
        order = _rank(samplers, "sample_nn_mse", False)
        add("vq_samples_worst", "Uniformly drawn VQ-VAE codes decode to the least data-like samples (article: "
            "\"do not resemble MNIST digits at all\")", "agrees" if order[-1] == "vq" else "disagrees",
            f"sample NN-MSE: " + ", ".join(f"{k} {samplers[k]['sample_nn_mse']:.4g}" for k in order))
    v, e = judge_best(kinds, spread, "denoising", "probe_acc", True, "highest few-label probe accuracy")
    add("denoising_best_probe", "The denoising AE's codes classify best with few labels (article: 0.805)", v, e)
    v, e = judge_best(kinds, spread, "sparse", "probe_acc", False, "lowest few-label probe accuracy")
    add("sparse_worst_probe", "The sparse AE's codes classify worst (article: 0.222, below the baseline)", v, e)
    v, e = judge_best(kinds, spread, "shallow", "auroc", True, "highest anomaly AUROC")
    add("shallow_best_anomaly", f"The shallow AE detects the held-out class best (article: AUROC 0.91 for ones, "
        f"latent 2; here class {cfg.heldout})", v, e)
    if "vae" in kinds and "vanilla" in kinds:
        a, b = kinds["vae"]["interp_nn_mse"], kinds["vanilla"]["interp_nn_mse"]
        add("vae_interpolates_better", "VAE interpolations look more like digits than vanilla ones (article: visual; "
            "here: MSE of interior frames to the nearest training image)",
            ("agrees" if a < b else "disagrees") + _noise_note(a - b, spread.get("sd", {}).get("interp_nn_mse")),
            f"interpolation NN-MSE VAE {a:.4g}, vanilla {b:.4g}")
    return claims


# ----------------------------------------------------------------------------- table, figures, report


COLUMNS = [
    ("kind", None, None),
    ("train s", "seconds_train", ".3g"),
    ("test BCE", "test_bce", ".4g"),
    ("test MSE", "test_mse", ".3g"),
    ("probe acc", "probe_acc", ".3f"),
    ("AUROC", "auroc", ".3f"),
    ("PCA silh.", "pca_silhouette", ".3f"),
    ("interp NN-MSE", "interp_nn_mse", ".3g"),
    ("sample NN-MSE", "sample_nn_mse", ".3g"),
    ("||J-I||²/d", ("identity", "jacobian_distance"), ".3f"),
    ("noise unexpl.", ("identity", "ood_unexplained", "uniform_noise"), ".3f"),
    ("enc gap", ("overfitting", "encoder_gap_matched"), ".2g"),
    ("dec gap", ("overfitting", "decoder_gap_matched"), ".2g"),
    ("homog. err (no bias)", ("homogeneity", "no_biases"), ".2g"),
]


def _get(rec: dict, path):
    if isinstance(path, str):
        return rec.get(path)
    v: Any = rec
    for p in path:
        if v is None:
            return None
        v = getattr(v, p) if not isinstance(v, dict) else v.get(p)
    return v


def results_table(cfg: Config, kinds: dict) -> tuple[list[str], list[list]]:
    header = [c[0] for c in COLUMNS]
    rows = []
    for k, rec in kinds.items():
        rows.append([k] + [_get(rec, path) for _, path, _ in COLUMNS[1:]])
    return header, rows


def write_csv(path: Path, header, rows) -> None:
    from aeprobe.reporting import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in r])
    atomic_write_text(path, buf.getvalue())


def make_figures(cfg: Config, kinds: dict, private: dict, ups: dict | None, data: dict, out: Path,
                 pixel_probe: dict) -> dict[str, str]:
    from aeprobe.plots.zoo import bar_chart, grouped_bars, image_rows, latent_scatter, loss_curves, roc_curves

    figs: dict[str, str] = {}
    names = list(kinds)
    loss_curves({k: (kinds[k]["test_bce_curve"], None) for k in names}, out / "test_bce_curves.png",
                ylabel="test BCE (summed per image)", title="test reconstruction error per epoch "
                "(stacked: its greedy stages in turn)")
    figs["test_bce_curves"] = "test_bce_curves.png"
    rows = {"input": data["x_test"][:10]}
    rows.update({k: private[k]["_recon"] for k in names})
    image_rows(rows, out / "reconstructions.png", suptitle="test images and their reconstructions")
    figs["reconstructions"] = "reconstructions.png"
    samp = {k: private[k]["_samples"][:10] for k in names if "_samples" in private[k]}
    if samp:
        image_rows(samp, out / "samples.png", suptitle="unconditional samples (VAEs: z ~ N(0, I); VQ: uniform codes)")
        figs["samples"] = "samples.png"
    frames = {k: private[k]["_frames"] for k in names}
    image_rows(frames, out / "interpolation.png", titles=[f"t={t:.2f}" for t in np.linspace(0, 1, cfg.steps)],
               suptitle="decoded linear interpolation between two test codes")
    figs["interpolation"] = "interpolation.png"
    y = data["y_test"]
    latent_scatter({k: private[k]["_pca"] for k in names}, y, out / "latent_pca.png", method="PCA",
                   notes={k: f"silhouette {kinds[k]['pca_silhouette']:.2f}" for k in names})
    figs["latent_pca"] = "latent_pca.png"
    if all("_umap" in private[k] for k in names):
        latent_scatter({k: private[k]["_umap"] for k in names}, y, out / "latent_umap.png", method="UMAP")
        figs["latent_umap"] = "latent_umap.png"
    bar_chart({k: kinds[k]["probe_acc"] for k in names}, out / "classification.png",
              errors={k: kinds[k]["probe_sd"] for k in names}, ylabel="test accuracy",
              title=f"linear probe on codes, {kinds[names[0]]['probe_labels']} labels",
              reference=("raw pixels, same probe", pixel_probe["accuracy"]))
    figs["classification"] = "classification.png"
    roc_curves({k: (*private[k]["_roc"], kinds[k]["auroc"]) for k in names}, out / "anomaly_roc.png",
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


def _fmt(v, f=".4g") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, f)


def write_report(cfg: Config, results: dict, out: Path, header, rows) -> None:
    kinds, spread, d = results["kinds"], results["spread"], results["data"]
    rep = MarkdownReport("Autoencoder zoo: the bake-off under aeprobe's probes")
    rep.paragraph(
        f"Mode **{cfg.mode}**: {d['name']}, {d['n_train']} training / {d['n_test']} test images of shape "
        f"{d['shape']}. Every kind shares one dense backbone (BatchNorm + ReLU hidden layers, sigmoid output, "
        f"BCE summed per image), latent size {cfg.latent} (anomaly detection: {cfg.latent_anomaly}, trained "
        f"without class {cfg.heldout}, {d['n_train_anomaly']} images); {cfg.epochs} epochs, batch {cfg.batch_size}, "
        f"Adam lr {cfg.lr}; stacked = greedy layer-wise, {cfg.epochs} epochs split over its layers, no fine-tuning. "
        f"Total run time {results['seconds']:.0f} s on {results['device']} ({results['threads']} thread(s)).")
    rep.paragraph(
        "One training run per kind, as in the article. The seed-to-seed noise is gauged by training *vanilla* "
        f"with {spread['seeds']} seeds (init and batch order; a rough estimate from few seeds): its standard deviation is "
        + (", ".join(f"{k} {v:.3g}" for k, v in spread["sd"].items()) if spread["sd"] else "not measured")
        + ". Differences between kinds smaller than about twice that are not distinguishable in this run.")
    rep.heading("Results table")
    rep.table(header, rows)
    rep.bullets([
        "**train s**: training time (seconds of the training loop only; stacked: all greedy stages).",
        "**test BCE / MSE**: reconstruction error of held-out images, BCE summed per image (article's measure), "
        "MSE per pixel. VAEs are evaluated at the mean code (no sampling), unlike the article.",
        f"**probe acc**: standardised logistic regression on the codes of {kinds[next(iter(kinds))]['probe_labels']} "
        f"randomly chosen labelled test images, scored on the other test images, mean of {cfg.probe_repeats} draws "
        "(`aeprobe.probes.linear.linear_probe`).",
        f"**AUROC**: class {cfg.heldout} held out of training (latent {cfg.latent_anomaly}), score = per-image "
        "reconstruction MSE (`aeprobe.probes.anomaly.outlier_auroc`); results.json also has the BCE-scored AUROC.",
        "**PCA silh.**: silhouette score of the classes in the 2-D PCA projection of the test codes (-1..1, higher = "
        "better separated).",
        "**interp / sample NN-MSE**: mean MSE of interior interpolation frames / of unconditional samples to their "
        "nearest training image (lower = more data-like).",
        "**||J-I||²/d, noise unexpl.**: identity tests (`aeprobe.probes.identity`): 0 for a copy machine, 1 for a "
        "constant map; an unexplained fraction above 1 means the output for uniform noise is farther from the noise "
        "than the noise's own mean would be (the AE maps noise to digit-like images).",
        "**enc gap / dec gap**: budget-matched encoder and decoder shares of the test-train MSE gap "
        "(`aeprobe.probes.overfitting`).",
        "**homog. err (no bias)**: max relative violation of D(lz) = l D(z) for l in 1e-3..1e3 with the decoder's "
        "biases zeroed (`aeprobe.probes.homogeneity` inside `aeprobe.ablation.remove_biases`).",
    ])
    rep.heading("The article's findings, checked")
    rep.table(["claim", "verdict", "evidence"], [[c["claim"], c["verdict"], c["evidence"]] for c in results["claims"]])
    rep.paragraph("The article used MNIST and 60 epochs; a verdict here is about this dataset and budget only.")

    rep.heading("Figures")
    for name, caption, reading in figure_readings(cfg, results):
        if name in results["figures"]:
            rep.figure(results["figures"][name], caption, reading)

    rep.heading("Mechanistic probes")
    mrows = []
    for k, r in kinds.items():
        i, o, h = r["identity"], r["overfitting"], r["homogeneity"]
        mrows.append([k, i.in_dist_error, i.ood_unexplained.get("uniform_noise"), i.ood_unexplained.get("shuffled_pixels"),
                      i.jacobian_distance, i.probe_acc_codes, i.probe_acc_inputs, o.gap, o.encoder_gap_matched,
                      o.decoder_gap_matched, h["with_biases"], h["no_biases"], h["no_biases_logits"]])
    rep.table(["kind", "test MSE", "unexpl. noise", "unexpl. shuffled", "||J-I||²/d", "probe codes", "probe pixels",
               "gap", "enc gap (matched)", "dec gap (matched)", "homog. (biases)", "homog. (no biases)",
               "homog. (no biases, logits)"], mrows, floatfmt=".3g")
    for s in mechanistic_readings(results):
        rep.paragraph(s)

    ups = results.get("upsampling")
    if ups:
        rep.heading("Decoder upsampling and the checkerboard probe (seed 003)")
        urows = []
        for k, v in ups["kinds"].items():
            p = v["probe"]
            urows.append([k, v["seconds"], v["test_mse"], p.constant.alias_rms, p.constant.nyquist_fraction,
                          p.random.alias_rms, p.random.nyquist_fraction, v["recon"].nyquist_fraction])
        urows.append(["(test images)", None, None, None, None, None, None, ups["data"].nyquist_fraction])
        rep.paragraph(
            f"ConvAE (channels {list(cfg.conv_channels)}, {cfg.conv_latent} code channels) on the images resized to "
            f"{ups['size']}x{ups['size']}, {cfg.conv_epochs} epochs, MSE, Adam lr {cfg.conv_lr}, identical seeds; only "
            f"the decoder's upsampling differs. Checkerboard probe (`aeprobe.probes.checkerboard`) on {cfg.cb_codes} "
            f"constant and {cfg.cb_codes} random codes {cfg.cb_scale}x larger in space than the data codes, central "
            "half of the output only (zero-padding borders excluded).")
        rep.table(["upsampling", "train s", "test MSE", "alias rms (const)", "Nyquist frac (const)",
                   "alias rms (random)", "Nyquist frac (random)", "Nyquist frac (recon)"], urows, floatfmt=".3g")
        for s in upsampling_readings(ups):
            rep.paragraph(s)
    prog = results.get("progressive")
    if prog:
        rep.heading("Progressive resizing (seed 003)")
        dr, pr = prog["direct"], prog["progressive"]
        rep.table(["schedule", "epochs", "train s", "test MSE (full size)"],
                  [["direct", f"{sum(prog['epochs'])} at {prog['sizes'][1]}", dr["seconds"], dr["test_mse"]],
                   ["progressive", f"{prog['epochs'][0]} at {prog['sizes'][0]} + {prog['epochs'][1]} at "
                    f"{prog['sizes'][1]}", pr["seconds"], pr["test_mse"]]])
        rep.paragraph(progressive_reading(prog))
    rep.write(out / "report.md")


def figure_readings(cfg: Config, results: dict) -> list[tuple[str, str, str]]:
    """(figure, caption, one honest sentence computed from the numbers)."""
    kinds, spread = results["kinds"], results["spread"]
    sd = spread.get("sd", {})
    out = []
    names = list(kinds)
    curves = {k: kinds[k]["test_bce_curve"] for k in names}
    still = [k for k, c in curves.items() if len(c) >= 4 and c[-1] < 0.99 * c[-1 - max(1, len(c) // 10)]]
    out.append(("test_bce_curves", "Test BCE per epoch",
                f"{len(still)} of {len(names)} kinds were still improving by more than 1% over the last 10% of the "
                f"epochs ({', '.join(still) if still else 'none'}), so longer training could change their ranking."))
    order = _rank(kinds, "test_bce", False)
    out.append(("reconstructions", "Test images (top row) and reconstructions",
                f"Lowest test BCE: {order[0]} ({kinds[order[0]]['test_bce']:.4g}); highest: {order[-1]} "
                f"({kinds[order[-1]]['test_bce']:.4g}); the spread between kinds is "
                f"{kinds[order[-1]]['test_bce'] - kinds[order[0]]['test_bce']:.3g} against a seed sd of "
                f"{_fmt(sd.get('test_bce'), '.3g')}."))
    samp = [k for k in names if kinds[k].get("sample_nn_mse") is not None]
    if samp:
        so = sorted(samp, key=lambda k: kinds[k]["sample_nn_mse"])
        out.append(("samples", "Unconditional samples",
                    f"Mean MSE of a sample to its nearest training image: " + ", ".join(
                        f"{k} {kinds[k]['sample_nn_mse']:.3g}" for k in so) + f" (best {so[0]}, worst {so[-1]})."))
    io = _rank(kinds, "interp_nn_mse", False)
    out.append(("interpolation", "Latent interpolation (first pair shown)",
                f"Interior frames are most data-like for {io[0]} (NN-MSE {kinds[io[0]]['interp_nn_mse']:.3g}) and "
                f"least for {io[-1]} ({kinds[io[-1]]['interp_nn_mse']:.3g}), averaged over {cfg.n_pairs} pairs."))
    so = _rank(kinds, "pca_silhouette", True)
    top = kinds[so[0]]["pca_silhouette"]
    out.append(("latent_pca", "Test codes projected to 2-D by PCA, coloured by class",
                f"Classes are best separated in 2-D for {so[0]} (silhouette {top:.2f}) and worst for {so[-1]} "
                f"({kinds[so[-1]]['pca_silhouette']:.2f}); "
                + ("even the best value means strongly overlapping clusters in two linear dimensions (0 = no "
                   "separation)." if top < 0.25 else "the best value means partly separated clusters (1 = perfect).")))
    if "latent_umap" in results["figures"]:
        out.append(("latent_umap", "Test codes embedded in 2-D by UMAP", "Qualitative only (no number computed)."))
    po = _rank(kinds, "probe_acc", True)
    pix = results["pixel_probe"]
    better = [k for k in names if kinds[k]["probe_acc"] > pix["accuracy"]]
    out.append(("classification", "Few-label linear probe accuracy (error bars: sd over label draws; dashed: the "
                "same probe on raw pixels)",
                f"Best: {po[0]} ({kinds[po[0]]['probe_acc']:.3f}), worst: {po[-1]} ({kinds[po[-1]]['probe_acc']:.3f}); "
                f"the same probe on raw pixels reaches {pix['accuracy']:.3f} (sd {pix['std']:.3f}), and "
                f"{len(better)} of {len(names)} kinds' codes beat it ({', '.join(better) if better else 'none'}); "
                f"chance is {pix['chance']:.3f}."))
    ao = _rank(kinds, "auroc", True)
    out.append(("anomaly_roc", f"ROC of class {cfg.heldout} against the rest",
                f"Highest AUROC: {ao[0]} ({kinds[ao[0]]['auroc']:.3f}); lowest: {ao[-1]} ({kinds[ao[-1]]['auroc']:.3f}); "
                f"{sum(kinds[k]['auroc'] > 0.5 for k in names)} of {len(names)} kinds reconstruct the held-out class "
                f"worse than the training classes (AUROC > 0.5). Seed sd of vanilla's AUROC: "
                f"{_fmt(sd.get('auroc'), '.3f')}."))
    ups = results.get("upsampling")
    if ups:
        u = ups["kinds"]
        out.append(("upsampling_alias", "Nyquist fraction of the decoder output per upsampling choice",
                    upsampling_readings(ups)[0]))
        out.append(("upsampling_outputs", "Decoded constant and random codes (interior)",
                    "Rows are upsampling choices; a visible 2-pixel periodic texture in the constant-code column is "
                    "the checkerboard artifact; its measured rms amplitude is "
                    + ", ".join(f"{k} {v['probe'].constant.alias_rms:.2g}" for k, v in u.items()) + "."))
    return out


def mechanistic_readings(results: dict) -> list[str]:
    kinds = results["kinds"]
    names = list(kinds)
    jd = {k: kinds[k]["identity"].jacobian_distance for k in names}
    copy_like = [k for k in names if kinds[k]["identity"].looks_like_copy()]
    s1 = (f"Identity: no kind behaves like a copy machine (tolerance 0.1); " if not copy_like else
          f"Identity: {', '.join(copy_like)} look(s) like a copy (tolerance 0.1); ") + \
        f"||J-I||_F^2/d ranges from {min(jd.values()):.3f} ({min(jd, key=jd.get)}) to {max(jd.values()):.3f} " \
        f"({max(jd, key=jd.get)}); uniform noise is left {min(kinds[k]['identity'].ood_unexplained['uniform_noise'] for k in names):.2f}-" \
        f"{max(kinds[k]['identity'].ood_unexplained['uniform_noise'] for k in names):.2f} unexplained."
    enc = {k: kinds[k]["overfitting"].encoder_gap_matched for k in names}
    dec = {k: kinds[k]["overfitting"].decoder_gap_matched for k in names}
    gaps = {k: kinds[k]["overfitting"].gap for k in names}
    dec_major = [k for k in names if enc[k] is not None and dec[k] is not None and gaps[k] > 0 and dec[k] > enc[k]]
    pos = [k for k in names if gaps[k] > 0]
    s2 = (f"Overfitting split: the test-train MSE gap is positive for {len(pos)} of {len(names)} kinds; where it is, "
          f"the decoder's (budget-matched) share exceeds the encoder's for {len(dec_major)} of {len(pos)} "
          f"({', '.join(dec_major) if dec_major else 'none'}). For scale: the largest gap is {max(gaps.values()):.2g} "
          f"against a mean test MSE of {np.mean([kinds[k]['test_mse'] for k in names]):.2g}.")
    h = {k: kinds[k]["homogeneity"] for k in names}
    hom = [k for k in names if h[k]["no_biases"] <= 1e-4]
    hom_l = [k for k in names if h[k]["no_biases_logits"] <= 1e-4]
    rest_l = [h[k]["no_biases_logits"] for k in names if k not in hom_l]
    s3 = (f"Homogeneity (Newson et al. Prop. 1: bias-free linear layers + (leaky) ReLUs give D(lz) = l D(z)): with the "
          f"bias parameters zeroed, {len(hom)} of {len(names)} decoders satisfy it to 1e-4 "
          f"({', '.join(hom) if hom else 'none'}); the output sigmoid alone breaks it (D(0) = 1/2). Before the "
          f"sigmoid, {len(hom_l)} of {len(names)} satisfy it ({', '.join(hom_l) if hom_l else 'none'})"
          + (f"; the others violate it by at least {min(rest_l):.2g}: their BatchNorm layers keep subtracting running "
             "means (an implicit bias that zeroing the bias parameters does not remove)"
             + (", and the VQ decoder quantises its input first." if "vq" in names and "vq" not in hom_l else ".")
             if rest_l else ".")
          + " Zeroing biases changes the decoder's output too, so these are properties of the ablated network.")
    return [s1, s2, s3]


def upsampling_readings(ups: dict) -> list[str]:
    u = ups["kinds"]
    const = {k: v["probe"].constant.alias_rms for k, v in u.items()}
    rand = {k: v["probe"].random.nyquist_fraction for k, v in u.items()}
    flat = [k for k, v in const.items() if v < 1e-6]
    worst_c = max(const, key=const.get)
    worst_r, best_r = max(rand, key=rand.get), min(rand, key=rand.get)
    s = (f"On constant codes the interior output is constant (alias rms < 1e-6) for {', '.join(flat) if flat else 'none'}; "
         f"the largest period-2 amplitude is {worst_c}'s ({const[worst_c]:.2g}). On random codes the Nyquist fraction "
         f"is highest for {worst_r} ({rand[worst_r]:.2g}) and lowest for {best_r} ({rand[best_r]:.2g}).")
    if "transposed k3" in u and "nearest" in u:
        t, n = u["transposed k3"]["probe"], u["nearest"]["probe"]
        ratio = t.random.nyquist_fraction / n.random.nyquist_fraction if n.random.nyquist_fraction > 0 else float("inf")
        verdict = "worse" if (t.constant.alias_rms > n.constant.alias_rms and ratio > 1) else "not worse"
        s2 = (f"Transposed k3 (kernel not divisible by the stride) scores {verdict} than nearest resize + conv: "
              f"constant-code alias rms {t.constant.alias_rms:.2g} vs {n.constant.alias_rms:.2g}, random-code Nyquist "
              f"fraction {ratio:.3g}x nearest's. Test MSE: {u['transposed k3']['test_mse']:.3g} vs "
              f"{u['nearest']['test_mse']:.3g}; on the reconstructions of real images the fractions are "
              f"{u['transposed k3']['recon'].nyquist_fraction:.2g} vs {u['nearest']['recon'].nyquist_fraction:.2g} "
              f"(test images themselves: {ups['data'].nyquist_fraction:.2g}). " + recon_clause(ups))
        return [s, s2]
    return [s]


def recon_clause(ups: dict) -> str:
    """Does the artifact survive on real images? Compare the reconstructions' Nyquist fraction with
    the test images' own and with the random-code one (computed, not asserted)."""
    u, data = ups["kinds"], ups["data"].nyquist_fraction
    excess = {k: v["recon"].nyquist_fraction / data for k, v in u.items() if data > 0}
    if not excess:
        return ""
    high = [k for k, r in excess.items() if r > 2]
    if not high:
        return (f"On real images every decoder's reconstructions stay within 2x of the test images' own period-2 "
                f"energy (ratios {min(excess.values()):.2g}-{max(excess.values()):.2g}): training on data suppresses "
                "the artifact where the data are, and it shows only off the data (constant-code alias rms up to "
                f"{max(v['probe'].constant.alias_rms for v in u.values()):.2g}).")
    return (f"On real images the reconstructions of {', '.join(high)} carry more than 2x the test images' own "
            f"period-2 energy (up to {max(excess.values()):.3g}x): the artifact survives on the data too.")


def progressive_reading(prog: dict) -> str:
    dr, pr = prog["direct"], prog["progressive"]
    speed = dr["seconds"] / pr["seconds"] if pr["seconds"] > 0 else float("nan")
    rel = (pr["test_mse"] - dr["test_mse"]) / dr["test_mse"]
    return (f"With the same number of epochs, progressive resizing trained in {pr['seconds']:.3g} s vs "
            f"{dr['seconds']:.3g} s ({speed:.2f}x {'faster' if speed > 1 else 'slower'}) and reached a test MSE "
            f"{abs(rel) * 100:.1f}% {'higher' if rel > 0 else 'lower'} than direct training ({pr['test_mse']:.3g} vs "
            f"{dr['test_mse']:.3g}). One seed each and no seed spread measured for this comparison.")


if __name__ == "__main__":
    main()
