"""CAE bottleneck study (Manakov et al., "Walking the tightrope") at CPU scale, plus the
question they left open: does a CAE overfit in its encoder or in its decoder?

Sweep bottleneck area S/M/L x compression {1/64, 1/16, 1/4, 1} x seeds with
:class:`aeprobe.models.manakov.ManakovCAE`; record per-epoch train/test loss, the minimal
test error and its epoch, the first epoch below a training-loss threshold; Wilcoxon
rank-sum tests between areas and between compressions (paper Table 1); identity tests on
complete (compression 1) models; the encoder/decoder overfitting split for every model;
seen/unseen linear probes; outlier AUROC against a second dataset; interpolation and
iteration grids. Writes ``OUT/results.json``, ``OUT/report.md`` and PNGs.

    python experiments/bottleneck.py --quick --out runs/bottleneck        # ~5 min on 2 CPU cores
    python experiments/bottleneck.py --smoke --out /tmp/bn                # seconds (tests)
    python experiments/bottleneck.py --full --data folder:/data/celeba --out runs/bn_full   # paper grid (GPU)

Quick mode: 32x32 grey patches, ``depth=5`` (areas S/M/L = 1x1, 2x2, 4x4, the paper's
3x3/6x6/12x12 ratios at 96x96), 512 train / 512 test images, 20 epochs, batch 32, 2 seeds, two
worker processes of one torch thread each.

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
import itertools
import math
import sys
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aeprobe.device import torch_threads  # noqa: E402
from aeprobe.reporting import MarkdownReport, to_jsonable, write_json  # noqa: E402

AREAS = ("S", "M", "L")
NORM_NOTE = {
    "instance": "The CAE normalises every hidden layer per image (instance norm, as in the paper), which removes "
                "each map's mean and scale (--norm batch or none keeps them).",
    "batch": "The CAE uses batch norm (not the paper's instance norm), which keeps per-image brightness.",
    "none": "The CAE has no normalisation layers (not the paper's instance norm), which keeps per-image brightness.",
}
#: datasets :func:`aeprobe.data.torchvision_dataset` reads from disk
TORCHVISION_NAMES = ("MNIST", "FashionMNIST", "KMNIST", "CIFAR10", "CIFAR100")
COMPRESSIONS = (Fraction(1, 64), Fraction(1, 16), Fraction(1, 4), Fraction(1, 1))


# ----------------------------------------------------------------------------- configuration


@dataclass
class Config:
    mode: str
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
    progress: bool = True
    checkpoint: bool = False
    workers: int = 1
    notes: list = field(default_factory=list)


def make_config(args: argparse.Namespace) -> Config:
    if args.smoke:
        cfg = Config("smoke", areas=("S", "L"), compressions=(Fraction(1, 4), Fraction(1, 1)), seeds=(0,), n_train=96,
                     n_test=64, epochs=1, batch_size=32, refit_epochs=2, probe_repeats=1, jacobian_points=4,
                     jacobian_directions=2, iterations=4, size=16, depth=3)
    elif args.full:
        # the paper's grid: 96x96 inputs, 5 strided layers, 10k/2k images, 1000 epochs, 3 seeds
        cfg = Config("full", size=96, depth=5, residual=True, seeds=(0, 1, 2), n_train=10_000, n_test=2_000,
                     epochs=1000, batch_size=64, lr=1e-3, threshold="0.01", refit_epochs=100, probe_repeats=3,
                     jacobian_points=64, jacobian_directions=32, checkpoint=True)
    else:
        cfg = Config("quick", workers=2)
    over = {k: v for k, v in dict(data=args.data, other=args.other, size=args.size, depth=args.depth,
                                  epochs=args.epochs, n_train=args.n_train, n_test=args.n_test,
                                  threshold=args.threshold, device=args.device, lr=args.lr,
                                  batch_size=args.batch_size, norm=args.norm).items() if v is not None}
    if args.seeds is not None:
        over["seeds"] = tuple(range(args.seeds))
    if args.workers is not None:
        over["workers"] = args.workers
    if args.no_progress:
        over["progress"] = False
    return replace(cfg, **over)


def comp_label(c: Fraction) -> str:
    return "1" if c == 1 else f"1/{c.denominator}" if c.numerator == 1 else str(c)


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
    n = cfg.n_train + cfg.n_test
    x, y, name, label_note = load_dataset(cfg.data, n, cfg.size, seed=0)
    x = x.cpu()
    if x.shape[0] < n:
        cfg.notes.append(f"{name} has only {x.shape[0]} images; using {x.shape[0]} instead of {n}")
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
                x_other=xo, other_name=other_name, baselines=baselines)


def brightness_share(model, x: torch.Tensor, device=None) -> float:
    """Fraction of the reconstruction MSE that is error in each image's mean (per channel).

    Per image and channel, ``mean(e^2) = mean(e)^2 + var(e)`` over pixels (``e`` = output -
    input), so ``mean(mean(e)^2) / mean(e^2)`` is the share of the MSE that a per-image
    brightness correction would remove.
    """
    from aeprobe.view import autoencoder

    e = (autoencoder(model).reconstructions(x, device=device) - x).double()
    return float((e.mean((2, 3)) ** 2).mean() / (e ** 2).mean())


# ----------------------------------------------------------------------------- one run


def first_below(losses, threshold: float) -> int | None:
    for i, v in enumerate(losses):
        if v < threshold:
            return i + 1
    return None


def train_one(cfg: Config, area: str, comp: Fraction, seed: int, data: dict, out: Path):
    from aeprobe.models.manakov import ManakovCAE
    from aeprobe.train import train

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # paper: every model initialised with the same seed
        model = ManakovCAE(in_channels=data["x_train"].shape[1], size=cfg.size, area=area, compression=comp,
                           depth=cfg.depth, residual=cfg.residual, norm=cfg.norm)
    ckpt = out / "checkpoints" / f"{run_key(area, comp, seed)}.pt" if cfg.checkpoint else None
    res = train(model, data["x_train"], epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                x_val=data["x_test"], device=cfg.device, seed=seed, checkpoint=ckpt, progress=False)
    return model, res


def probe_one(cfg: Config, model, data: dict, comp: Fraction, seed: int) -> dict[str, Any]:
    from aeprobe.probes.anomaly import outlier_auroc
    from aeprobe.probes.identity import identity_tests
    from aeprobe.probes.latent import iterate, iteration_drift
    from aeprobe.probes.linear import seen_unseen_probe
    from aeprobe.probes.overfitting import overfitting_split

    dev = cfg.device
    out: dict[str, Any] = {}
    of = overfitting_split(model, data["x_train"], data["x_test"], epochs=cfg.refit_epochs,
                           batch_size=cfg.batch_size, lr=cfg.lr, seed=seed, device=dev)
    out["overfitting"] = of
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


# ----------------------------------------------------------------------------- statistics


def ranksum_table(runs: list[dict], factor: str, levels: list, metric: str) -> list[dict]:
    """Wilcoxon rank-sum tests of ``metric`` between every pair of levels of ``factor``,
    pooling the other factor and the seeds (paper Table 1)."""
    from scipy.stats import ranksums

    rows = []
    for a, b in itertools.combinations(levels, 2):
        va = [r[metric] for r in runs if r[factor] == a and r.get(metric) is not None]
        vb = [r[metric] for r in runs if r[factor] == b and r.get(metric) is not None]
        row = dict(factor=factor, metric=metric, a=str(a), b=str(b), n_a=len(va), n_b=len(vb),
                   median_a=float(np.median(va)) if va else None, median_b=float(np.median(vb)) if vb else None,
                   statistic=None, p_value=None)
        if len(va) >= 1 and len(vb) >= 1 and len(set(va) | set(vb)) > 1:
            st = ranksums(va, vb)
            row["statistic"], row["p_value"] = float(st.statistic), float(st.pvalue)
        rows.append(row)
    return rows


def _p(p) -> str:
    return "n/a" if p is None else format(p, ".2g")


def verdict(rows: list[dict], direction: str, alpha: float = 0.05) -> tuple[str, str]:
    """Judge the claim "``b`` has a ``direction`` ("lower"/"higher") median than ``a``" for every
    pair (``a`` before ``b`` in the paper's order). Returns (verdict, evidence text)."""
    sign = -1 if direction == "lower" else 1
    ok = sig_ok = sig_bad = 0
    parts = []
    for r in rows:
        if r["median_a"] is None or r["median_b"] is None:
            continue
        good = sign * (r["median_b"] - r["median_a"]) > 0
        p = r["p_value"]
        ok += good
        if p is not None and p < alpha:
            sig_ok += good
            sig_bad += not good
        parts.append(f"{r['a']}->{r['b']}: median {r['median_a']:.4g}->{r['median_b']:.4g}, p={_p(p)} "
                     f"(n={r['n_a']}+{r['n_b']})")
    n = len(parts)
    if n == 0:
        return "not testable", "no data"
    direction_note = f"direction as claimed in {ok}/{n} pairs"
    if sig_bad:
        v = f"contradicted ({sig_bad}/{n} pairs significant in the opposite direction; {direction_note})"
    elif sig_ok == n:
        v = "supported"
    elif sig_ok > 0:
        v = f"partly supported ({sig_ok}/{n} pairs significant in the claimed direction, none against; {direction_note})"
    else:
        v = f"not supported (no pair significant; {direction_note})"
    return v, "; ".join(parts)


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="CPU scale (default): 32x32 grey inputs, depth 5, 512/512 images, 20 epochs, 2 seeds")
    mode.add_argument("--full", action="store_true", help="the paper's grid: 96x96, 1000 epochs, 3 seeds (GPU days)")
    mode.add_argument("--smoke", action="store_true", help="tiny: areas S/L, compressions 1/4 and 1, 1 seed, 1 epoch")
    p.add_argument("--out", required=True, type=Path, help="output folder (results.json, report.md, PNGs)")
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
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (0..K-1)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threshold", default=None,
                   help="training-loss threshold for 'first epoch below' (a float, or 'auto' = the highest "
                        "minimum training loss over all runs, so that every run crosses it)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process (default 1, see main())")
    p.add_argument("--workers", type=int, default=None,
                   help="processes training grid cells in parallel (quick: 2, one per core; smoke/full: 1)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = make_config(args)
    # one intra-op thread by default: on a shared machine torch's OpenMP pool spin-waits and a
    # 2-thread run of these small CAEs was measured 4-14x slower than a 1-thread run
    with torch_threads(args.threads):
        return _run(cfg, args.out)


def run_cell(cfg: Config, area: str, comp: Fraction, seed: int, data: dict, out: Path) -> tuple[dict, Any]:
    """Train one CAE of the grid and probe it; returns (run record, the trained model)."""
    t0 = time.perf_counter()
    model, res = train_one(cfg, area, comp, seed, data, out)
    t_train = time.perf_counter() - t0
    hist = res.history
    val = hist["val_loss"]
    i_min = int(np.argmin(val))
    probes = probe_one(cfg, model, data, comp, seed)
    of = probes["overfitting"]
    p = probes.get("probe")
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
               identity=probes.get("identity"), iteration_drift=probes["iteration_drift"],
               blend_deviation=blend_deviation(model, data["x_test"], device=cfg.device),
               brightness_share=probes["brightness_share"], seconds_train=t_train,
               seconds_total=time.perf_counter() - t0)
    return rec, model


_WORKER: dict[str, Any] = {}


def _worker_init(cfg: Config, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER["cfg"], _WORKER["data"] = cfg, prepare_data(cfg)  # deterministic: the same data as the parent's


def _worker_cell(area: str, comp: Fraction, seed: int, out: Path) -> tuple[dict, dict | None]:
    cfg = _WORKER["cfg"]
    rec, model = run_cell(cfg, area, comp, seed, _WORKER["data"], out)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()} if seed == cfg.seeds[0] else None
    return rec, state


def sweep(cfg: Config, grid: list[tuple], data: dict, out: Path) -> tuple[list[dict], dict]:
    """Run every (area, compression, seed) of ``grid``; returns the run records in grid order and
    the first seed's models by (area, compression). With ``cfg.workers > 1`` the cells run in that
    many spawned processes (one torch thread each); every run is seeded on its own, so the
    records do not depend on the number of workers. Workers need the script to be run as a
    program (``python experiments/bottleneck.py``), not loaded under another module name."""
    from tqdm.auto import tqdm

    from aeprobe.models.manakov import ManakovCAE

    runs: dict[tuple, dict] = {}
    models: dict[tuple, Any] = {}
    bar = tqdm(total=len(grid), desc="bottleneck sweep", disable=not cfg.progress)
    if cfg.workers <= 1:
        for area, comp, seed in grid:
            runs[(area, comp, seed)], model = run_cell(cfg, area, comp, seed, data, out)
            if seed == cfg.seeds[0]:
                models[(area, comp)] = model
            bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                 initargs=(replace(cfg, notes=[]), torch.get_num_threads())) as pool:
            futs = {pool.submit(_worker_cell, a, c, s, out): (a, c, s) for a, c, s in grid}
            for fut in as_completed(futs):
                area, comp, seed = futs[fut]
                rec, state = fut.result()
                runs[(area, comp, seed)] = rec
                if state is not None:
                    model = ManakovCAE(in_channels=data["x_train"].shape[1], size=cfg.size, area=area,
                                       compression=comp, depth=cfg.depth, residual=cfg.residual,
                                       norm=cfg.norm)
                    model.load_state_dict(state)
                    models[(area, comp)] = model.eval()
                bar.update()
    bar.close()
    return [runs[k] for k in grid], models


RUN_METRICS = ["min_test_error", "min_test_epoch", "first_epoch_below", "final_train_loss", "final_test_loss", "gap",
               "encoder_gap", "decoder_gap", "encoder_gap_matched", "decoder_gap_matched", "refit_shortfall",
               "auroc", "probe_acc_seen", "probe_acc_unseen", "probe_gap", "iteration_drift", "blend_deviation",
               "brightness_share"]
TEST_METRICS = ["min_test_error", "min_test_epoch", "first_epoch_below", "gap", "encoder_gap_matched",
                "decoder_gap_matched", "auroc", "probe_gap", "iteration_drift", "blend_deviation"]


def _run(cfg: Config, out: Path) -> dict:
    from aeprobe.models.manakov import bottleneck_shape

    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = prepare_data(cfg)
    for a in cfg.areas:  # fail before any training if a cell of the grid cannot be built
        for c in cfg.compressions:
            bottleneck_shape(data["x_train"].shape[1], cfg.size, a, c, cfg.depth)

    grid = [(a, c, s) for a in cfg.areas for c in cfg.compressions for s in cfg.seeds]
    runs, models = sweep(cfg, grid, data, out)

    # threshold for "first epoch below"
    if cfg.threshold == "auto":
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

    # per configuration summary (mean/sd over seeds)
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

    figs = make_figures(cfg, runs, models, data, out)
    seconds = time.perf_counter() - t_start
    results = dict(config={k: v for k, v in vars(cfg).items()},
                   data=dict(name=data["name"], labels=data["label_note"], other=data["other_name"],
                             n_train=int(data["x_train"].shape[0]), n_test=int(data["x_test"].shape[0]),
                             shape=list(data["x_train"].shape[1:]), baselines=data["baselines"]),
                   threshold=thr, threshold_note=thr_note, configurations=configs, runs=runs, stats=stats,
                   figures=figs, seconds=seconds, torch_threads=torch.get_num_threads())
    results["claims"] = judge_claims(cfg, runs, stats)
    results["readings"] = figure_readings(cfg, results)
    write_json(out / "results.json", _jsonable_cfg(results))
    write_report(cfg, results, out)
    return results


def _mean_opt(vals):
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _jsonable_cfg(results: dict) -> dict:
    cfg = dict(results["config"])
    cfg["compressions"] = [comp_label(c) for c in cfg["compressions"]]
    results = dict(results, config=cfg)
    return to_jsonable(results)


def _nan(v):
    return float("nan") if v is None else float(v)


# ----------------------------------------------------------------------------- figures

#: heatmaps: metric, title, higher is better, number format
HEATMAPS = [("min_test_error", "minimal test MSE", False, ".3g"),
            ("min_test_epoch", "epoch of minimal test MSE", True, ".3g"),
            ("first_epoch_below", "first epoch with training MSE below threshold", False, ".3g"),
            ("gap", "generalisation gap: test - train MSE of the final model", False, ".2g"),
            ("encoder_gap_matched", "encoder part of the gap (MSE, matched refit)", False, ".2g"),
            ("decoder_gap_matched", "decoder part of the gap (MSE, matched refit)", False, ".2g"),
            ("auroc", "outlier AUROC (other dataset)", True, ".3f"),
            ("probe_acc_unseen", "linear-probe accuracy on unseen codes", True, ".3f")]


def cell_matrix(cfg: Config, runs: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) over seeds of ``metric`` per (area, compression); NaN where missing."""
    v = np.full((len(cfg.areas), len(cfg.compressions)), np.nan)
    sd = np.full_like(v, np.nan)
    for i, a in enumerate(cfg.areas):
        for j, c in enumerate(cfg.compressions):
            vals = [r[metric] for r in runs if r["area"] == a and r["compression"] == comp_label(c)
                    and r.get(metric) is not None]
            if vals:
                v[i, j] = np.mean(vals)
                sd[i, j] = np.std(vals) if len(vals) > 1 else np.nan
    return v, sd


def make_figures(cfg: Config, runs, models, data, out: Path) -> dict[str, str]:
    from aeprobe.plots.bottleneck import (area_compression_heatmap, interpolation_grid, iteration_grid,
                                          loss_curve_panels)
    from aeprobe.probes.latent import interpolate, iterate

    figs: dict[str, str] = {}
    comps = [comp_label(c) for c in cfg.compressions]
    for metric, title, hib, fmt in HEATMAPS:
        if all(r.get(metric) is None for r in runs):
            continue
        v, sd = cell_matrix(cfg, runs, metric)
        path = out / f"heatmap_{metric}.png"
        area_compression_heatmap(v, path, areas=list(cfg.areas), compressions=comps, title=title, fmt=fmt,
                                 higher_is_better=hib, std=sd)
        figs[f"heatmap_{metric}"] = path.name
    panels = {}
    for c in cfg.compressions:
        curves = {}
        for a in cfg.areas:
            rs = [r for r in runs if r["area"] == a and r["compression"] == comp_label(c)]
            curves[f"area {a}"] = (np.mean([r["train_loss"] for r in rs], 0), np.mean([r["test_loss"] for r in rs], 0))
        panels[f"compression {comp_label(c)}"] = curves
    loss_curve_panels(panels, out / "loss_curves.png",
                      suptitle=f"train (dashed) / test (solid), mean over {len(cfg.seeds)} seed(s)")
    figs["loss_curves"] = "loss_curves.png"
    # interpolation / iteration grids of the first seed's models, rows grouped by area
    keys = [(a, c) for a in cfg.areas for c in cfg.compressions if (a, c) in models]
    labels = [cfg_key(a, c) for a, c in keys]
    # textured but not extreme test images (pixel sd at the 90th/80th/85th percentile): flat
    # patches show nothing, the most contrasted ones are saturated black/white edges
    sd_order = torch.argsort(data["x_test"].reshape(data["x_test"].shape[0], -1).std(1))
    pick = [int(sd_order[int(q * (len(sd_order) - 1))]) for q in (0.9, 0.8, 0.85)]
    xa, xb, xi = (data["x_test"][i:i + 1] for i in pick)
    inter = np.stack([interpolate(models[k], xa, xb, 8, device=cfg.device)[0] for k in keys])
    t = np.linspace(0, 1, 8).reshape(-1, 1, 1, 1)
    blend = ((1 - t) * xa[0].numpy() + t * xb[0].numpy())[None].astype(np.float32)  # reference row
    interpolation_grid(np.concatenate([blend, inter]), out / "interpolation.png",
                       row_labels=["inputs: pixel blend"] + labels,
                       title="latent interpolation (seed %d); first row: alpha blend of the two inputs" % cfg.seeds[0])
    steps = [k for k in (0, 1, 2, 5, 10, 20, 50, 100) if k < cfg.iterations] + [cfg.iterations]
    its = np.stack([iterate(models[k], xi, n=cfg.iterations, keep=steps, device=cfg.device)[:, 0] for k in keys], 1)
    iteration_grid(its, out / "iteration.png", steps=steps, row_labels=labels,
                   title=f"AE iteration x_(k+1) = f(x_k), {cfg.iterations} steps (seed {cfg.seeds[0]}); iter 1 = "
                         "reconstruction")
    figs["interpolation"], figs["iteration"] = "interpolation.png", "iteration.png"
    return figs


# ----------------------------------------------------------------------------- readings (computed)


def _fmt(v, fmt=".3g") -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)


def heatmap_reading(cfg: Config, runs: list[dict], metric: str, higher_is_better: bool, fmt: str) -> str:
    """Best and worst cell, area and compression means, and their ranges, from the cell means."""
    v, _ = cell_matrix(cfg, runs, metric)
    if not np.isfinite(v).any():
        return "no data"
    comps = [comp_label(c) for c in cfg.compressions]
    flat = np.where(np.isfinite(v), v, -np.inf if higher_is_better else np.inf)
    bi = np.unravel_index(np.argmax(flat) if higher_is_better else np.argmin(flat), v.shape)
    flat = np.where(np.isfinite(v), v, np.inf if higher_is_better else -np.inf)
    wi = np.unravel_index(np.argmin(flat) if higher_is_better else np.argmax(flat), v.shape)
    with np.errstate(all="ignore"):
        am, cm = np.nanmean(v, 1), np.nanmean(v, 0)
    order = " < ".join(cfg.areas[i] for i in np.argsort(am))
    return (f"best cell {cfg.areas[bi[0]]} {comps[bi[1]]} ({_fmt(v[bi], fmt)}), worst {cfg.areas[wi[0]]} "
            f"{comps[wi[1]]} ({_fmt(v[wi], fmt)}). Area means over compressions: "
            + ", ".join(f"{a} {_fmt(m, fmt)}" for a, m in zip(cfg.areas, am))
            + f" (ascending: {order}); compression means over areas: "
            + ", ".join(f"{c} {_fmt(m, fmt)}" for c, m in zip(comps, cm))
            + f". Range of area means {_fmt(np.nanmax(am) - np.nanmin(am), fmt)} vs range of compression means "
            f"{_fmt(np.nanmax(cm) - np.nanmin(cm), fmt)}.")


def figure_readings(cfg: Config, results: dict) -> dict[str, str]:
    runs = results["runs"]
    n = len(runs)
    rd: dict[str, str] = {}
    for metric, _, hib, fmt in HEATMAPS:
        if f"heatmap_{metric}" in results["figures"]:
            rd[f"heatmap_{metric}"] = heatmap_reading(cfg, runs, metric, hib, fmt)
    last = sum(r["min_test_epoch"] == len(r["test_loss"]) for r in runs)
    rd["heatmap_min_test_epoch"] += (f" The minimum fell on the last epoch ({cfg.epochs}) in {last}/{n} runs: "
                                     "there the test error was still falling and the epoch is censored.")
    rd["heatmap_first_epoch_below"] += f" Threshold {results['threshold_note']}."
    shortf = [r["refit_shortfall"] for r in runs if r["refit_shortfall"] is not None]
    if shortf:
        rd["heatmap_encoder_gap_matched"] += (f" Refit shortfall (fresh decoder on seen codes minus the original "
                                              f"training MSE): median {np.median(shortf):.3g} over {len(shortf)} "
                                              "runs; see the split table below.")
    # loss curves (Fig. 1)
    parts = []
    for a in cfg.areas:
        rs = [r for r in runs if r["area"] == a]
        parts.append(f"{a}: final train {np.mean([r['final_train_loss'] for r in rs]):.3g} / final test "
                     f"{np.mean([r['final_test_loss'] for r in rs]):.3g} / minimal test "
                     f"{np.mean([r['min_test_error'] for r in rs]):.3g}")
    rising = sum(r["final_test_loss"] > 1.05 * r["min_test_error"] for r in runs)
    rd["loss_curves"] = ("Mean over compressions and seeds, by area -- " + "; ".join(parts)
                         + f". The final test MSE exceeds the run's minimum by more than 5% in {rising}/{n} runs "
                         f"(overfitting visible as a rising test curve); the minimum is at the last epoch in "
                         f"{last}/{n} runs.")
    for key, metric, what in [("interpolation", "blend_deviation",
                               "deviation of the decoded interpolation path from a pixel-space alpha blend of its "
                               "end points (0 = alpha blend; 8 pairs of test images, every model)"),
                              ("iteration", "iteration_drift",
                               f"MSE between iterate {cfg.iterations} and the start image (4 test images, every "
                               "model; larger = drifted further)")]:
        am = {a: np.mean([r[metric] for r in runs if r["area"] == a]) for a in cfg.areas}
        rows = results["stats"]["area"][metric]
        rd[key] = (f"Grid: seed {cfg.seeds[0]}, one image (pair). Number: {what} -- area means "
                   + ", ".join(f"{a} {v:.3g}" for a, v in am.items()) + "; rank-sum p "
                   + ", ".join(f"{r['a']}-{r['b']} {_p(r['p_value'])}" for r in rows) + ".")
    return rd


# ----------------------------------------------------------------------------- claims


def _secondary_claim(stats: dict, metric: str, cid: str, text: str, alpha: float = 0.05) -> dict:
    """"The compression matters less than the area for ``metric``": compare the ranges of the
    pooled group medians and the smallest p-values of the two factors."""
    def spread(rows):
        meds = {}
        for r in rows:
            for k in ("a", "b"):
                if r[f"median_{k}"] is not None:
                    meds[r[k]] = r[f"median_{k}"]
        return (max(meds.values()) - min(meds.values())) if meds else float("nan")

    ra, rc = stats["area"][metric], stats["compression"][metric]
    sa, sc = spread(ra), spread(rc)
    pa = min((r["p_value"] for r in ra if r["p_value"] is not None), default=None)
    pc = min((r["p_value"] for r in rc if r["p_value"] is not None), default=None)
    if not (math.isfinite(sa) and math.isfinite(sc)) or pa is None or pc is None:
        v = "not testable"
    elif sa > sc and pa < alpha and pc >= alpha:
        v = "supported"
    elif sa > sc and pa < alpha:
        v = "partly supported (area range larger, but some compression pair is significant too)"
    elif sa > sc:
        v = "not supported (area range larger, but no area pair significant)"
    else:
        v = "not supported (compression range >= area range)"
    return dict(id=cid, metric=metric, claim=text, verdict=v,
                evidence=f"range of the area medians {sa:.4g} vs of the compression medians {sc:.4g}; smallest "
                         f"area-pair p={_p(pa)}, smallest compression-pair p={_p(pc)}")


def judge_claims(cfg: Config, runs: list[dict], stats: dict, alpha: float = 0.05) -> list[dict]:
    from scipy.stats import spearmanr, wilcoxon

    claims = []
    n_runs = len(runs)

    def area_claim(cid, text, metric, direction):
        v, ev = verdict(stats["area"][metric], direction, alpha)
        claims.append(dict(id=cid, claim=text, verdict=v, evidence=ev, metric=metric))

    area_claim("area_generalisation", "Larger bottleneck area gives a lower minimal test error (Sec. 4.1)",
               "min_test_error", "lower")
    claims.append(_secondary_claim(stats, "min_test_error", "channels_secondary",
                                   "The number of channels (compression) matters less than the area for the "
                                   "minimal test error (Sec. 4.1)", alpha))
    area_claim("area_speed", "Larger bottleneck area reaches the training-loss threshold in fewer epochs (Sec. 4.1)",
               "first_epoch_below", "lower")
    claims.append(_secondary_claim(stats, "first_epoch_below", "channels_secondary_speed",
                                   "Training speed depends on the area, hardly on the number of channels "
                                   "(Sec. 4.1)", alpha))
    area_claim("area_overfits_later", "Larger bottleneck area reaches its minimal test error later (Sec. 4.1)",
               "min_test_epoch", "higher")
    at_end = sum(r["min_test_epoch"] == len(r["test_loss"]) for r in runs)
    if at_end:
        claims[-1]["evidence"] += (f"; the minimum is at the last epoch in {at_end}/{n_runs} runs (test error still "
                                   "falling: epoch of the minimum censored at the run length)")
        if 2 * at_end > n_runs:
            claims[-1]["verdict"] = (f"not testable at this run length (minimum censored in {at_end}/{n_runs} "
                                     f"runs; uncensored test: {claims[-1]['verdict']})")
    area_claim("area_outlier", "Smaller bottleneck area gives a higher outlier AUROC (Sec. 4.4)", "auroc", "lower")

    ids = [r["identity"] for r in runs if r["identity"] is not None]
    if ids:
        copies = sum(i.looks_like_copy() for i in ids)
        te = np.mean([r["min_test_error"] for r in runs if r["identity"] is not None])
        v = "supported" if copies == 0 else ("contradicted" if copies == len(ids) else "partly supported")
        claims.append(dict(id="no_identity", metric="identity", verdict=v,
                           claim="Complete CAEs (compression 1) do not learn an identity mapping (Sec. 4.1)",
                           evidence=f"{copies}/{len(ids)} complete models look like a copy (tol 0.1); unexplained "
                                    f"fraction of uniform noise {np.mean([i.ood_unexplained['uniform_noise'] for i in ids]):.3g}, "
                                    f"of shuffled pixels {np.mean([i.ood_unexplained['shuffled_pixels'] for i in ids]):.3g} "
                                    f"(copy: 0, constant output: 1); Jacobian tr(J)/d "
                                    f"{np.mean([i.jacobian_trace for i in ids]):.3g} (copy: 1), ||J||_F^2/d "
                                    f"{np.mean([i.jacobian_energy for i in ids]):.3g} (copy: 1); minimal test MSE "
                                    f"{te:.3g} (copy: 0); means over {len(ids)} models"))
        pc = [(i.probe_acc_codes, i.probe_acc_inputs) for i in ids if i.probe_acc_codes is not None]
        if pc:
            d = np.array([a - b for a, b in pc])
            p = float(wilcoxon(d).pvalue) if d.size >= 2 and np.any(d != 0) else None
            better = int((d > 0).sum())
            if p is not None and p < alpha:
                v = "supported" if np.median(d) > 0 else "contradicted (pixels significantly better)"
            else:
                v = f"not supported (codes > pixels in {better}/{len(pc)}, not significant)"
            claims.append(dict(id="codes_beat_pixels", metric="probe", verdict=v,
                               claim="A linear probe on codes of complete CAEs beats one on the raw pixels (Sec. 4.3)",
                               evidence=f"codes > pixels in {better}/{len(pc)} complete models; mean accuracy codes "
                                        f"{np.mean([a for a, _ in pc]):.3f} vs pixels {np.mean([b for _, b in pc]):.3f}; "
                                        f"Wilcoxon signed-rank p={_p(p)}"))

    pr = [r for r in runs if r["probe_gap"] is not None]
    if pr:
        g = np.array([r["probe_gap"] for r in pr], float)
        half = 1.96 * g.std(ddof=1) / np.sqrt(g.size) if g.size > 1 else float("inf")
        lo, hi = g.mean() - half, g.mean() + half
        if -0.05 < lo and hi < 0.05:
            v = "supported (seen-unseen gap within +-0.05)"
            if lo > 0:
                v += ", although seen codes are significantly better"
        elif lo > 0.05 or hi < -0.05:
            v = "not supported (seen and unseen differ by more than 0.05)"
        else:
            v = "inconclusive (confidence interval reaches beyond +-0.05)"
        rg = np.array([r["gap"] for r in pr], float)
        rho, p_rho = spearmanr(rg, g) if g.size > 2 else (float("nan"), None)
        chance = np.mean([r["probe"].chance for r in pr])
        claims.append(dict(id="probe_seen_unseen", metric="probe_gap", verdict=v,
                           claim="Linear probes are about as accurate on unseen as on seen codes (Sec. 4.3)",
                           evidence=f"mean seen-unseen accuracy gap {g.mean():+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}] over "
                                    f"{g.size} models (accuracy seen {np.mean([r['probe_acc_seen'] for r in pr]):.3f}, "
                                    f"unseen {np.mean([r['probe_acc_unseen'] for r in pr]):.3f}, chance {chance:.3f}); "
                                    f"Spearman correlation of the probe gap with the reconstruction gap "
                                    f"rho={rho:.2f}, p={_p(None if p_rho is None else float(p_rho))}; criterion: "
                                    "the CI lies inside +-0.05"))
    else:
        claims.append(dict(id="probe_seen_unseen", metric="probe_gap", verdict="not testable",
                           claim="Linear probes are about as accurate on unseen as on seen codes (Sec. 4.3)",
                           evidence="no labels for this dataset"))

    for cid, metric, text, direction in [
            ("interp_blend", "blend_deviation", "Larger area: interpolations closer to alpha blending (Sec. 4.4, "
             "Fig. 7; qualitative in the paper, proxy measured here)", "lower"),
            ("iteration_dissolves", "iteration_drift", "Larger area: 100 AE iterations drift further from the "
             "image (Sec. 4.4, Fig. 8; qualitative in the paper, proxy measured here)", "higher")]:
        area_claim(cid, text, metric, direction)

    ok = [r for r in runs if r["encoder_gap_matched"] is not None and r["gap"] > 0]
    if ok:
        eg = np.array([r["encoder_gap_matched"] for r in ok])
        dg = np.array([r["decoder_gap_matched"] for r in ok])
        sf = np.array([r["refit_shortfall"] for r in ok])
        gap = np.array([r["gap"] for r in ok])
        diff = dg - eg
        p = float(wilcoxon(diff).pvalue) if diff.size >= 2 and np.any(diff != 0) else None
        who = "decoder" if np.median(diff) > 0 else "encoder"
        sig = p is not None and p < alpha
        reliable = sf < 0.5 * gap
        rel_txt = ""
        if reliable.sum() >= 2:
            dr = diff[reliable]
            pr_ = float(wilcoxon(dr).pvalue) if np.any(dr != 0) else None
            rel_txt = (f"; restricted to the {int(reliable.sum())} runs whose refit shortfall is under half their gap: "
                       f"median encoder part {np.median(eg[reliable]):.3g}, decoder part {np.median(dg[reliable]):.3g}, "
                       f"p={_p(pr_)}")
        else:
            rel_txt = f"; only {int(reliable.sum())} runs have a refit shortfall under half their gap"
        claims.append(dict(id="open_question_encoder_vs_decoder", metric="encoder_gap_matched",
                           claim="Open question (Sec. 4.3/5): does overfitting happen mainly in the decoder?",
                           verdict=(f"measured: mostly in the {who}" + ("" if sig else " (not significant)")),
                           evidence=f"{len(ok)}/{n_runs} runs with a positive gap (median {np.median(gap):.3g}); "
                                    f"median encoder part {np.median(eg):.3g}, decoder part {np.median(dg):.3g} "
                                    f"(budget-matched refit; encoder part larger in {int((diff < 0).sum())}/{len(ok)}); "
                                    f"Wilcoxon signed-rank of decoder - encoder p={_p(p)}; median refit shortfall "
                                    f"{np.median(sf):.3g}" + rel_txt))
    return claims


# ----------------------------------------------------------------------------- report


def _context(cfg: Config, results: dict) -> list[str]:
    """Computed context lines: reference errors, brightness share, caveats of this data."""
    runs, d = results["runs"], results["data"]
    b = d["baselines"]
    mins = [c["min_test_error"] for c in results["configurations"].values()]
    beat_own = sum(m < b["own_mean"] for m in mins)
    beat_img = sum(m < b["mean_image"] for m in mins)
    bs = np.array([r["brightness_share"] for r in runs])
    lines = [f"Reference test MSEs: the training-set mean image {b['mean_image']:.4g}; each test image's own mean "
             f"value (what a one-number-per-channel code could give) {b['own_mean']:.4g}. The minimal test MSE of "
             f"the configurations (mean over seeds) lies in [{min(mins):.4g}, {max(mins):.4g}]: {beat_img}/{len(mins)} "
             f"beat the mean image, {beat_own}/{len(mins)} beat the per-image mean.",
             f"Share of the final models' test MSE that is error in each image's mean value (brightness): median "
             f"{np.median(bs):.2f} (range {bs.min():.2f}-{bs.max():.2f}) over {len(runs)} runs. " + NORM_NOTE[cfg.norm]
             + " A large share means the reconstructions are mainly wrong in brightness."]
    if cfg.data == "patches":
        lines.append("Train and test patches are cut at random positions from the same 10 photographs, so an "
                     "unseen patch can overlap seen ones: 'unseen' is weaker here than for separate images, which "
                     "shrinks generalisation gaps and seen/unseen differences.")
    lines.append("Probes, AUROC, identity tests and the overfitting split use each run's final model (after "
                 f"{cfg.epochs} epochs), not the model at its minimal test error.")
    return lines


def write_report(cfg: Config, results: dict, out: Path) -> None:
    rep = MarkdownReport("CAE bottleneck study (Manakov et al.) at CPU scale")
    d = results["data"]
    rep.paragraph(f"Mode **{cfg.mode}**: data {d['name']} ({d['n_train']} train / {d['n_test']} test images of shape "
                  f"{d['shape']}), outliers from {d['other']}; areas {', '.join(cfg.areas)} x compressions "
                  f"{', '.join(comp_label(c) for c in cfg.compressions)} x seeds {list(cfg.seeds)}; {cfg.epochs} epochs, "
                  f"batch {cfg.batch_size}, Adam lr {cfg.lr}; input {cfg.size}x{cfg.size}, depth {cfg.depth}, residual "
                  f"blocks {cfg.residual}, {cfg.norm} norm. Run time {results['seconds']:.0f} s with {cfg.workers} worker process(es) of "
                  f"{results['torch_threads']} torch thread(s). Probe labels: {d['labels']}.")
    if cfg.notes:
        rep.bullets(cfg.notes)
    rep.paragraph("At this scale the paper's effects may be weaker or absent; every figure below is what was "
                  "measured, nothing was tuned to match the paper. p-values are two-sided Wilcoxon rank-sum tests "
                  "(scipy.stats.ranksums) between levels, pooled over the other factor and the seeds, uncorrected "
                  "for multiple comparisons; paired comparisons use the Wilcoxon signed-rank test.")
    rep.heading("Which of the paper's claims the measurements support")
    rep.table(["claim", "verdict", "evidence"], [[c["claim"], c["verdict"], c["evidence"]] for c in results["claims"]])
    import re

    groups: dict[str, list[str]] = {}
    for c in results["claims"]:
        head = c["verdict"].split(" (")[0].split(",")[0]
        groups.setdefault(head, []).append(re.sub(r" \(Sec\.[^)]*\)", "", c["claim"]))
    rank = ["supported", "partly supported", "not supported", "contradicted", "inconclusive"]
    heads = sorted(groups, key=lambda h: (rank.index(h) if h in rank else len(rank), h))
    rep.paragraph("In short:")
    rep.bullets([f"**{h}**: " + "; ".join(groups[h]) for h in heads])
    rep.paragraph("Verdict rule for the ordered area claims: *supported* = every pair of areas differs in the "
                  "claimed direction with p < 0.05; *contradicted* = some pair differs significantly in the opposite "
                  "direction; *partly supported* = some but not all pairs significant in the claimed direction, none "
                  "against; *not supported* = no pair significant. Medians are over the pooled runs of a level.")
    rep.heading("Context for reading the numbers")
    rep.bullets(_context(cfg, results))
    rep.heading("Per configuration (mean over seeds)")
    rows = []
    for k, c in results["configurations"].items():
        rows.append([k, "x".join(map(str, c["code_shape"])), c["min_test_error"], c["min_test_epoch"],
                     c["first_epoch_below"], c["final_train_loss"], c["gap"], c["encoder_gap_matched"],
                     c["decoder_gap_matched"], c["auroc"], c["probe_acc_seen"], c["probe_acc_unseen"],
                     c["brightness_share"]])
    rep.table(["config", "code CxHxW", "min test MSE", "epoch of min", "first epoch < thr", "final train MSE",
               "gap", "enc part (matched)", "dec part (matched)", "AUROC", "probe seen", "probe unseen",
               "brightness share"], rows)
    rd = results["readings"]
    for name, caption in [("heatmap_min_test_error", "Minimal test error (paper Fig. 2, middle)"),
                          ("heatmap_min_test_epoch", "Epoch of the minimal test error (paper Fig. 2, right)"),
                          ("heatmap_first_epoch_below", "First epoch below the training-loss threshold (paper Fig. 2, left)"),
                          ("loss_curves", "Loss curves (paper Fig. 1)"),
                          ("heatmap_gap", "Generalisation gap of the final model"),
                          ("heatmap_encoder_gap_matched", "Encoder part of the generalisation gap"),
                          ("heatmap_decoder_gap_matched", "Decoder part of the generalisation gap"),
                          ("heatmap_auroc", "Outlier AUROC (paper Fig. 6)"),
                          ("heatmap_probe_acc_unseen", "Linear-probe accuracy on unseen codes (paper Fig. 4)"),
                          ("interpolation", "Latent interpolation (paper Fig. 7)"),
                          ("iteration", "AE iteration (paper Fig. 8)")]:
        if name in results["figures"]:
            rep.figure(results["figures"][name], caption, rd.get(name))
    rep.paragraph("Heatmaps: cell = mean over seeds (± sd under it); marginals = mean ± sd of the cell means of a "
                  "row / column; brighter = better, as in the paper.")

    rep.heading("Identity tests on complete models (compression 1)")
    irows = []
    for k, c in results["configurations"].items():
        if "identity" in c:
            i = c["identity"]
            irows.append([k, i["in_dist_error"], i["ood_unexplained"].get("uniform_noise"),
                          i["ood_unexplained"].get("shuffled_pixels"), i["ood_unexplained"].get("other_dataset"),
                          i["jacobian_trace"], i["jacobian_energy"], i["jacobian_distance"], i["probe_acc_codes"],
                          i["probe_acc_inputs"], str(i["looks_like_copy"])])
    rep.table(["config", "test MSE", "unexplained: noise", "unexplained: shuffled", "unexplained: other data",
               "tr(J)/d", "||J||²/d", "||J-I||²/d", "probe codes", "probe pixels", "looks like copy"], irows)
    rep.paragraph("A copy function scores: unexplained 0 on every set, tr(J)/d = 1, ||J||²/d = 1, ||J-I||²/d = 0, "
                  "probe codes = probe pixels. Unexplained fraction = OOD MSE / OOD variance (1 = no better than "
                  "a constant output). Jacobian figures are Hutchinson estimates with Rademacher directions at "
                  f"{cfg.jacobian_points} test points, {cfg.jacobian_directions} directions each "
                  "(`aeprobe.probes.identity`).")

    rep.heading("Encoder vs decoder: the overfitting split of every model")
    rep.paragraph("`aeprobe.probes.overfitting.overfitting_split`: the encoder is frozen and a fresh, re-initialised "
                  "decoder is fit on codes of half of the test images (A) and scored on the other half (B): "
                  "*refit unseen*. The same refit on codes of training images, scored on other training images, "
                  "gives *refit seen*. Encoder part (matched) = refit unseen - refit seen: error that codes of unseen "
                  "images force on a decoder fit with the same budget; decoder part = gap - encoder part. "
                  "Shortfall = refit seen - train MSE: how far the refit falls short of the original decoder on "
                  "codes it could read; when it is comparable to the gap, the refit sees only coarse content and "
                  "the split is unreliable (biased towards the decoder).")
    orows = []
    for r in results["runs"]:
        of = r["overfitting"]
        orows.append([r["key"], of.train_error, of.test_error, of.gap, of.refit_seen_error, of.refit_error,
                      r["encoder_gap_matched"], r["decoder_gap_matched"], r["refit_shortfall"],
                      r["probe_gap"]])
    rep.table(["run", "train MSE", "test MSE (B)", "gap", "refit seen", "refit unseen", "enc part", "dec part",
               "shortfall", "probe gap (seen-unseen)"], orows)

    rep.heading("Rank-sum tests (paper Table 1)")
    srows = []
    for factor in ("area", "compression"):
        for metric in TEST_METRICS:
            for r in results["stats"][factor][metric]:
                srows.append([factor, metric, f"{r['a']} vs {r['b']}", r["median_a"], r["median_b"], r["p_value"],
                              f"{r['n_a']}+{r['n_b']}"])
    rep.table(["factor", "metric", "pair", "median a", "median b", "p", "n"], srows)
    rep.write(out / "report.md")


if __name__ == "__main__":
    main()
