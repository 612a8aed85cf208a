"""Newson et al., Sect. 5 -- encoding and decoding the position of a Dirac.

Trains the 1-D position networks (``L = 6`` stride-2 size-3 conv layers of depth 1 down to one
scalar; decoder depths [1, 2, 4, 4, 4, 8] back to length 64) on triangular Diracs at continuous
positions ``a`` (Eq. 19):

* encoders trained to output the position in the orientation of Prop. 3, ``z = (2^L - a) / 2^L``:
  the network of Sect. 5.3 (biases and leaky ReLUs) and the linear bias-free network of Prop. 3.
  Fig. 9 / Eq. 13: the cosine (up to scale and sign) of every learned filter to ``[1, 2, 1]``
  on its live taps (``filter_cosine`` per layer in results.json; the last layer's left tap only
  sees zero padding, see :func:`aeprobe.probes.position_filter.filter_cosine`); Prop. 3 / Eq. 15:
  the code of the 64 one-hots against the closed form ``2^L - a`` (linear R^2, Spearman, largest
  relative deviation);
* the decoder alone, trained from the code ``(2^L - a) / 2^L`` to the Dirac (Sect. 5.4, Fig. 10):
  decoded peak position (argmax and local centroid), MSE, share of the energy at the peak; and
  the paper's contrast, the same decoder trained on the 64 one-hots only, evaluated between them;
* the full autoencoder Dirac -> z -> Dirac, reported alongside.

Why ``(2^L - a) / 2^L``: Prop. 3's encoder gives ``2^L - a``; a bias-free linear encoder cannot add
the offset that ``a`` itself would need (its code of the all-zero signal is 0), so this is the
orientation every variant can represent. It is scaled to (0, 1] for training.

The trainings are independent and run side by side in as many single-thread processes as the run
has torch threads (:mod:`aeprobe.studies.parallel`); each uses Adam with ``foreach=True`` (the
same arithmetic as the default loop, bit for bit, with less per-tensor overhead on these tiny nets).
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeprobe.progress import Progress, file_task
from aeprobe.studies.evaluate import constant_output_mse, is_stuck, stuck_at
from aeprobe.studies.parallel import default_workers, map_jobs
from aeprobe.studies.position_report import build_report, claims, headline  # noqa: F401  (the study's interface)

NAME = "position"
STAGES = ("training", "probes and figures")


@dataclass
class Config:
    mode: str = "quick"
    L: int = 6
    n_train: int = 3000
    batch_size: int = 100
    lr: float = 1e-2  # 1-D nets with ~20-200 weights: 1e-3 (Table 1) needs ~10x more epochs for the same loss
    epochs_encoder: int = 300
    epochs_decoder: int = 100
    epochs_ae: int = 100
    # the end-to-end AE collapses to the best constant output within ~10 epochs at every lr tried
    # (1e-3, 3e-3, 1e-2; loss flat to 3 digits from epoch 10 to 100): once its loss has stayed within
    # 1% of the constant output's for this many epochs, the remaining epochs are not run (reported)
    ae_stuck_patience: int = 20
    onehot_contrast: bool = True
    autoencoder: bool = True
    n_eval: int = 127
    seeds: tuple = (0,)
    data_seed: int = 4321
    device: str | None = None
    workers: int | None = None  # processes for the independent trainings (None: one per torch thread)

    @classmethod
    def for_mode(cls, mode: str) -> "Config":
        if mode == "smoke":
            return cls("smoke", n_train=64, epochs_encoder=2, epochs_decoder=2, epochs_ae=1, batch_size=32, n_eval=17)
        if mode == "full":
            return cls("full", n_train=10000, epochs_encoder=2000, epochs_decoder=500, epochs_ae=1000,
                       ae_stuck_patience=200, seeds=(0, 1, 2, 3, 4))
        if mode != "quick":
            raise ValueError(f"unknown mode {mode!r}; use quick, full or smoke")
        return cls("quick")


def make_config(mode: str, args: argparse.Namespace | None = None) -> Config:
    """The mode's configuration with ``--seed`` (the first seed) and ``--device`` applied."""
    cfg = Config.for_mode(mode)
    seed = getattr(args, "seed", None) if args is not None else None
    if seed is not None:
        cfg = replace(cfg, seeds=(seed,) + tuple(s for s in cfg.seeds[1:] if s != seed))
    if args is not None and getattr(args, "device", None) is not None:
        cfg = replace(cfg, device=args.device)
    return cfg


def run(cfg: Config | None = None, out: str | os.PathLike = "runs/position", *,
        progress: Progress | None = None) -> dict:
    """Run the study and write its outputs to ``out``; returns the results (as in results.json)."""
    import sys

    from aeprobe.studies.runner import run_study

    return run_study(sys.modules[__name__], cfg or Config.for_mode("quick"), out, progress=progress)


# ----------------------------------------------------------------------------- data and trainings


def training_data(cfg: Config) -> dict[str, Any]:
    """Triangular Diracs at uniform positions, their codes ``(2^L - a) / 2^L``, and the one-hot set."""
    from aeprobe.data import one_hots, triangular_diracs

    n = 2 ** cfg.L
    a = np.random.default_rng(cfg.data_seed).uniform(0, n - 1, cfg.n_train)
    reps = -(-cfg.n_train // n)
    a_int = np.resize(np.arange(n, dtype=float), cfg.n_train)
    return dict(x=triangular_diracs(a, n), code=torch.tensor((n - a) / n, dtype=torch.float32)[:, None],
                x_onehot=one_hots(cfg.L).repeat(reps, 1, 1)[: cfg.n_train],
                code_onehot=torch.tensor((n - a_int) / n, dtype=torch.float32)[:, None])


#: net kind -> (what it is trained on: inputs, targets)
NETS = {"encoder": ("x", "code"), "linear": ("x", "code"), "decoder": ("code", "x"),
        "decoder_onehot": ("code_onehot", "x_onehot"), "autoencoder": ("x", None)}


@dataclass(frozen=True)
class PositionJob:
    """One training: ``net`` in :data:`NETS`; the data are rebuilt from the config's seeds."""

    key: str
    label: str
    net: str
    epochs: int
    seed: int
    cfg: Config

    @property
    def cost(self) -> float:
        """Relative time of the training: epochs x seconds per epoch relative to the encoder's (measured
        2026-12-03 in a quick run, two single-thread processes: encoder 0.195 s, linear encoder 0.118,
        decoder 0.19, one-hot decoder 0.18, full autoencoder 0.395)."""
        return self.epochs * {"encoder": 1.0, "linear": 0.6, "decoder": 1.0, "decoder_onehot": 0.95,
                              "autoencoder": 2.0}[self.net]


def position_model(job: PositionJob, state: dict | None = None):
    """The job's seeded initial net, or the trained one (eval mode) when ``state`` is given."""
    from aeprobe.models import PositionAE, PositionDecoder, PositionEncoder

    L = job.cfg.L
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(job.seed)
        model = {"encoder": lambda: PositionEncoder(L, bias=True, activation=True),
                 "linear": lambda: PositionEncoder(L, bias=False, activation=False),
                 "decoder": lambda: PositionDecoder(L, bias=True),
                 "decoder_onehot": lambda: PositionDecoder(L, bias=True),
                 "autoencoder": lambda: PositionAE(L, bias=True, activation=True)}[job.net]()
    if state is not None:
        model.load_state_dict(state)
        model.eval()
    return model


def train_position_job(job: PositionJob) -> dict[str, Any]:
    """Train one net of the study; returns ``key``, the CPU ``state`` dict and a training summary."""
    from aeprobe.train import train

    cfg = job.cfg
    data = training_data(cfg)
    xin, yname = NETS[job.net]
    model = position_model(job)
    task = file_task(job.key, job.label, job.epochs)
    threshold = stuck_at(data["x"]) if job.net == "autoencoder" else math.inf  # only the end-to-end AE stops

    def on_epoch_end(epoch, hist, m):
        task.update(epoch)
        return is_stuck(hist["train_loss"], threshold, cfg.ae_stuck_patience)

    res = train(model, data[xin], None if yname is None else data[yname], epochs=job.epochs,
                batch_size=cfg.batch_size, lr=cfg.lr, device=cfg.device, seed=job.seed, progress=False,
                optimizer=lambda p: torch.optim.Adam(p, lr=cfg.lr, foreach=True), on_epoch_end=on_epoch_end)
    task.done()
    model = model.cpu()
    info = dict(label=job.label, seed=job.seed, epochs=job.epochs, seconds=res.seconds,
                epochs_run=len(res.history["train_loss"]), stopped_stuck=res.stopped_early,
                final_loss=float(res.history["train_loss"][-1]),
                loss_curve=[float(v) for v in res.history["train_loss"]])
    return dict(key=job.key, state={k: v.detach().clone() for k, v in model.state_dict().items()}, info=info)


def jobs(cfg: Config) -> list[PositionJob]:
    """Every training of the study (Sect. 5.3: "we allow the network to include non-linearities and biases")."""
    s0 = cfg.seeds[0]
    out = [PositionJob(f"encoder-s{s}", f"encoder seed {s}", "encoder", cfg.epochs_encoder, s, cfg) for s in cfg.seeds]
    out.append(PositionJob("linear", "linear encoder, no bias", "linear", cfg.epochs_encoder, s0, cfg))
    out.append(PositionJob("decoder", "decoder (continuous a)", "decoder", cfg.epochs_decoder, s0, cfg))
    if cfg.onehot_contrast and between_positions(cfg).size:
        out.append(PositionJob("decoder_onehot", "decoder (one-hots only)", "decoder_onehot", cfg.epochs_decoder, s0,
                               cfg))
    if cfg.autoencoder:
        out.append(PositionJob("autoencoder", "autoencoder", "autoencoder", cfg.epochs_ae, s0, cfg))
    return out


def eval_positions(cfg: Config) -> np.ndarray:
    return np.linspace(0, 2 ** cfg.L - 1, cfg.n_eval)


def between_positions(cfg: Config) -> np.ndarray:
    """Evaluation positions at least 0.2 from every sample (where one-hot training never looked)."""
    a = eval_positions(cfg)
    return a[np.abs(a - np.round(a)) > 0.2]


# ----------------------------------------------------------------------------- measurements


def encoder_summary(enc, L: int, eval_a: np.ndarray) -> tuple[dict, Any, Any]:
    """Filters vs [1,2,1] (Fig. 9) and codes of one-hots / continuous Diracs vs 2^L - a (Prop. 3)."""
    from aeprobe.probes.position_filter import filter_cosine, position_encoding
    from aeprobe.view import autoencoder

    if not hasattr(enc, "encoder"):
        enc = autoencoder(enc, encoder=enc)
    fc = filter_cosine(enc, input_length=2**L)
    e1 = position_encoding(enc, L)
    ec = position_encoding(enc, L, eval_a)
    return dict(filter_layers=fc.layers, filter_cosine=fc.cosines, filter_cosine_min=fc.min_cosine,
                filters=[w.reshape(-1).tolist() for w in fc.filters], onehot_encoding_r2=e1.linear_r2,
                onehot_encoding_spearman=e1.spearman, onehot_encoding_scale=e1.scale,
                onehot_encoding_max_rel_deviation=e1.max_rel_deviation, continuous_encoding_r2=ec.linear_r2,
                continuous_encoding_max_rel_deviation=ec.max_rel_deviation), fc, e1


def _codes32(z) -> torch.Tensor:
    """Codes given as numbers, in the nets' dtype (float32)."""
    return torch.as_tensor(np.asarray(z), dtype=torch.float32)


def decoding_summary(rep) -> dict:
    return dict(decoding_argmax_error=rep.argmax_error, decoding_centroid_error=rep.centroid_error,
                decoding_mse=rep.mse, decoding_peak_energy_fraction=rep.peak_energy_fraction)


def measure(cfg: Config, out: Path, progress: Progress) -> dict[str, Any]:
    """Train every net (side by side where possible), probe them, draw the figures; returns the results."""
    from aeprobe.plots import position as PP
    from aeprobe.plots.common import line_plot
    from aeprobe.probes.position_filter import dirac_decoding
    from aeprobe.view import autoencoder

    out = Path(out)
    L, n = cfg.L, 2**cfg.L
    todo = jobs(cfg)
    workers = cfg.workers or default_workers(len(todo))
    with progress.stage(STAGES[0], work=sum(j.cost for j in todo)):
        trained = map_jobs(train_position_job, todo, workers=workers, cost=lambda j: j.cost,
                           status_dir=progress.status_dir())
    nets = {j.key: (position_model(j, t["state"]), t["info"]) for j, t in zip(todo, trained)}
    data = training_data(cfg)
    x = data["x"]
    eval_a = eval_positions(cfg)
    res: dict[str, Any] = dict(mode=cfg.mode, L=L, seeds=list(cfg.seeds), data_seed=cfg.data_seed, workers=workers,
                               code="(2^L - a) / 2^L (Prop. 3's orientation, scaled to (0, 1])",
                               constant_output_mse=constant_output_mse(x))
    with progress.stage(STAGES[1]):
        per_seed, first = [], None
        for s in cfg.seeds:
            enc, info = nets[f"encoder-s{s}"]
            summ, fc, e1 = encoder_summary(enc, L, eval_a)
            per_seed.append(dict(training=info, **summ))
            first = first or (fc, e1)
        res.update({k: v for k, v in per_seed[0].items() if k != "training"})
        res["encoder_training"] = per_seed[0]["training"]
        if len(per_seed) > 1:
            res["per_seed"] = per_seed
            res["filter_cosine_min_all_seeds"] = [r["filter_cosine_min"] for r in per_seed]
        lin, info0 = nets["linear"]
        lin_summ, fc_lin, _ = encoder_summary(lin, L, eval_a)
        res["encoder_linear"] = dict(training=info0, **lin_summ)
        res["filter_cosine_linear"] = lin_summ["filter_cosine"]

        dec, dinfo = nets["decoder"]  # code -> triangular Dirac (Sect. 5.4, Fig. 10)
        drep = dirac_decoding(autoencoder(dec, decoder=dec), eval_a, n, codes=_codes32((n - eval_a)[:, None] / n))
        res.update(decoding_summary(drep))
        res["decoder_training"] = dinfo
        if "decoder_onehot" in nets:  # the paper's failure case: trained on one-hots only, tested between them
            dec1, info1 = nets["decoder_onehot"]
            between = between_positions(cfg)
            zb = (n - between)[:, None] / n
            ints = np.arange(n, dtype=float)
            res["onehot_trained_decoder"] = dict(
                training=info1, between_samples=decoding_summary(dirac_decoding(autoencoder(dec1, decoder=dec1), between, n,
                                                                 codes=_codes32(zb))),
                at_samples=decoding_summary(dirac_decoding(autoencoder(dec1, decoder=dec1), ints, n,
                                                         codes=_codes32((n - ints)[:, None] / n))))
            res["between_samples_continuous"] = decoding_summary(dirac_decoding(autoencoder(dec, decoder=dec), between, n,
                                                                             codes=_codes32(zb)))
        if "autoencoder" in nets:
            ae, ainfo = nets["autoencoder"]
            res["autoencoder"] = dict(training=ainfo, **encoder_summary(ae, L, eval_a)[0],
                                      **decoding_summary(dirac_decoding(ae, eval_a, n)))

        fc, e1 = first
        figs = {}
        figs["filters"] = PP.filters_vs_target(fc.filters, fc.layers, fc.cosines, out / "filters.png", live=fc.live,
                                               extra=(fc_lin.filters, fc_lin.cosines, "linear, no bias",
                                                      fc_lin.live)).name
        figs["encoding"] = PP.encoding_plot(e1.positions, e1.z, e1.closed_form, out / "encoding.png",
                                            scale=e1.scale, r2=e1.linear_r2).name
        figs["decoding"] = PP.dirac_decoding_plot(drep.outputs, drep.positions, drep.codes,
                                                  out / "dirac_decoding.png").name
        curves = {t["info"]["label"]: (np.arange(1, len(t["info"]["loss_curve"]) + 1), t["info"]["loss_curve"])
                  for t in trained}
        figs["loss"] = line_plot(curves, out / "loss.png", xlabel="epoch", ylabel="training MSE", logy=True).name
    res["train_seconds"] = float(sum(t["info"]["seconds"] for t in trained))
    res["figures"] = figs
    res["config"] = asdict(cfg)
    return res
