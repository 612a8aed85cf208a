"""Newson et al., Sect. 5 -- encoding and decoding the position of a Dirac.

Trains the 1-D position networks (``L = 6`` stride-2 size-3 conv layers of depth 1 down to one
scalar; decoder depths [1, 2, 4, 4, 4, 8] back to length 64) on triangular Diracs at continuous
positions ``a`` (Eq. 19):

* encoders trained to output the position in the orientation of Prop. 3, ``z = (2^L - a) / 2^L``:
  the network of Sect. 5.3 (biases and leaky ReLUs) and the linear bias-free network of Prop. 3.
  Fig. 9 / Eq. 13: the cosine (up to scale and sign) of every learned filter to ``[1, 2, 1]``
  on its live taps (``filter_cosine`` per layer in results.json; the last layer's left tap only
  sees zero padding, see :func:`aeprobe.probes.position_filter.filter_cosine`); Prop. 3 / Eq. 15: the code of the 64 one-hots
  against the closed form ``2^L - a`` (linear R^2, Spearman, largest relative deviation);
* the decoder alone, trained from the code ``(2^L - a) / 2^L`` to the Dirac (Sect. 5.4, Fig. 10):
  decoded peak position (argmax and local centroid), MSE, share of the energy at the peak; and
  the paper's contrast, the same decoder trained on the 64 one-hots only, evaluated between them;
* the full autoencoder Dirac -> z -> Dirac, reported alongside.

Why ``(2^L - a) / 2^L``: Prop. 3's encoder gives ``2^L - a``; a bias-free linear encoder cannot add
the offset that ``a`` itself would need (its code of the all-zero signal is 0), so this is the
orientation every variant can represent. It is scaled to (0, 1] for training.

    python experiments/position.py --quick --out runs/position    # < 1 min on 2 CPU cores
    python experiments/position.py --smoke --out /tmp/position
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aeprobe.data import one_hots, triangular_diracs  # noqa: E402
from aeprobe.device import choose_threads, torch_threads  # noqa: E402
from aeprobe.models import PositionAE, PositionDecoder, PositionEncoder  # noqa: E402
from aeprobe.plots import position as PP  # noqa: E402
from aeprobe.plots.common import line_plot  # noqa: E402
from aeprobe.probes.position_filter import dirac_decoding, filter_cosine, position_encoding  # noqa: E402
from aeprobe.view import autoencoder  # noqa: E402
from aeprobe.reporting import MarkdownReport, write_json  # noqa: E402
from aeprobe.train import train  # noqa: E402


@dataclass
class Config:
    mode: str
    L: int = 6
    n_train: int = 3000
    batch_size: int = 100
    lr: float = 1e-2  # 1-D nets with ~20-200 weights: 1e-3 (Table 1) needs ~10x more epochs for the same loss
    epochs_encoder: int = 300
    epochs_decoder: int = 100
    epochs_ae: int = 100
    onehot_contrast: bool = True
    autoencoder: bool = True
    n_eval: int = 127
    seeds: tuple = (0,)
    data_seed: int = 4321
    device: str | None = None
    progress: bool = True


def make_config(args) -> Config:
    if args.smoke:
        cfg = Config("smoke", n_train=64, epochs_encoder=2, epochs_decoder=2, epochs_ae=1, batch_size=32, n_eval=17)
    elif args.full:
        cfg = Config("full", n_train=10000, epochs_encoder=2000, epochs_decoder=500, epochs_ae=1000,
                     seeds=(0, 1, 2, 3, 4))
    else:
        cfg = Config("quick")
    if args.seed is not None:
        cfg = replace(cfg, seeds=(args.seed,) + tuple(s for s in cfg.seeds[1:] if s != args.seed))
    if args.device is not None:
        cfg = replace(cfg, device=args.device)
    if args.no_progress:
        cfg = replace(cfg, progress=False)
    return cfg


def fit(cfg: Config, model, x: torch.Tensor, y: torch.Tensor | None, *, epochs: int, seed: int, label: str):
    res = train(model, x, y, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, device=cfg.device, seed=seed,
                progress=cfg.progress)
    model = model.cpu().eval()
    return model, dict(label=label, seed=seed, epochs=epochs, seconds=res.seconds,
                       final_loss=float(res.history["train_loss"][-1]),
                       loss_curve=[float(v) for v in res.history["train_loss"]])


def encoder_summary(enc, L: int, eval_a: np.ndarray) -> tuple[dict, Any, Any]:
    """Filters vs [1, 2, 1] (Fig. 9) and codes of one-hots / continuous Diracs vs 2^L - a (Prop. 3)."""
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
    return torch.as_tensor(np.asarray(z), dtype=torch.float32)


def decoding_summary(rep) -> dict:
    return dict(decoding_argmax_error=rep.argmax_error, decoding_centroid_error=rep.centroid_error,
                decoding_mse=rep.mse, decoding_peak_energy_fraction=rep.peak_energy_fraction)


def main(argv=None) -> dict:
    """Run the experiment (CLI arguments in ``argv``); restores torch's thread count afterwards."""
    args = build_parser().parse_args(argv)
    with torch_threads(choose_threads(args.threads)):
        return _main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU scale, under a minute (default)")
    mode.add_argument("--full", action="store_true", help="longer training, 5 seeds")
    mode.add_argument("--smoke", action="store_true", help="tiny run for tests")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 if busy, else 2)")
    return p


def _main(args: argparse.Namespace) -> dict:
    cfg = make_config(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load0 = [round(v, 2) for v in os.getloadavg()]

    L, n = cfg.L, 2**cfg.L
    a_train = np.random.default_rng(cfg.data_seed).uniform(0, n - 1, cfg.n_train)
    x = triangular_diracs(a_train, n)
    constant_mse = float(((x - x.mean(0, keepdim=True)) ** 2).mean())  # MSE of the best constant output
    code = torch.tensor((n - a_train) / n, dtype=torch.float32)[:, None]  # Prop. 3's orientation, scaled
    eval_a = np.linspace(0, n - 1, cfg.n_eval)

    res: dict[str, Any] = dict(mode=cfg.mode, L=L, seeds=list(cfg.seeds), data_seed=cfg.data_seed,
                               threads=torch.get_num_threads(), load_average_start=load0,
                               code="(2^L - a) / 2^L (Prop. 3's orientation, scaled to (0, 1])",
                               constant_output_mse=constant_mse)
    trainings, per_seed = [], []
    first = None
    for s in cfg.seeds:  # Sect. 5.3: "we allow the network to include non-linearities and biases"
        torch.manual_seed(s)
        enc, info = fit(cfg, PositionEncoder(L, bias=True, activation=True), x, code, epochs=cfg.epochs_encoder,
                        seed=s, label=f"encoder seed {s}")
        summ, fc, e1 = encoder_summary(enc, L, eval_a)
        trainings.append(info)
        per_seed.append(dict(training=info, **summ))
        first = first or (fc, e1)
    res.update({k: v for k, v in per_seed[0].items() if k != "training"})
    res["encoder_training"] = per_seed[0]["training"]
    if len(per_seed) > 1:
        res["per_seed"] = per_seed
        res["filter_cosine_min_all_seeds"] = [r["filter_cosine_min"] for r in per_seed]
    # Prop. 3's network: linear, bias-free
    torch.manual_seed(cfg.seeds[0])
    lin, info0 = fit(cfg, PositionEncoder(L, bias=False, activation=False), x, code, epochs=cfg.epochs_encoder,
                     seed=cfg.seeds[0], label="linear encoder, no bias")
    trainings.append(info0)
    lin_summ, fc_lin, _ = encoder_summary(lin, L, eval_a)
    res["encoder_linear"] = dict(training=info0, **lin_summ)
    res["filter_cosine_linear"] = lin_summ["filter_cosine"]

    # decoder: code -> triangular Dirac (Sect. 5.4, Fig. 10)
    torch.manual_seed(cfg.seeds[0])
    dec, dinfo = fit(cfg, PositionDecoder(L, bias=True), code, x, epochs=cfg.epochs_decoder, seed=cfg.seeds[0],
                     label="decoder (continuous a)")
    trainings.append(dinfo)
    drep = dirac_decoding(autoencoder(dec, decoder=dec), eval_a, n, codes=_codes32((n - eval_a)[:, None] / n))
    res.update(decoding_summary(drep))
    res["decoder_training"] = dinfo
    between = eval_a[np.abs(eval_a - np.round(eval_a)) > 0.2]
    if cfg.onehot_contrast and between.size:
        # the paper's failure case: train on the one-hots only (integer positions), test between them
        reps = -(-cfg.n_train // n)
        x1 = one_hots(L).repeat(reps, 1, 1)[: cfg.n_train]
        a_int = np.resize(np.arange(n, dtype=float), cfg.n_train)
        torch.manual_seed(cfg.seeds[0])
        dec1, info1 = fit(cfg, PositionDecoder(L, bias=True), torch.tensor((n - a_int) / n, dtype=torch.float32)[:, None],
                          x1, epochs=cfg.epochs_decoder, seed=cfg.seeds[0], label="decoder (one-hots only)")
        trainings.append(info1)
        zb = (n - between)[:, None] / n
        ints = np.arange(n, dtype=float)
        res["onehot_trained_decoder"] = dict(
            training=info1, between_samples=decoding_summary(dirac_decoding(autoencoder(dec1, decoder=dec1), between, n, codes=_codes32(zb))),
            at_samples=decoding_summary(dirac_decoding(autoencoder(dec1, decoder=dec1), ints, n,
                                                     codes=_codes32((n - ints)[:, None] / n))))
        res["between_samples_continuous"] = decoding_summary(dirac_decoding(autoencoder(dec, decoder=dec), between, n,
                                                                         codes=_codes32(zb)))
    if cfg.autoencoder:
        torch.manual_seed(cfg.seeds[0])
        ae, ainfo = fit(cfg, PositionAE(L, bias=True, activation=True), x, None, epochs=cfg.epochs_ae,
                        seed=cfg.seeds[0], label="autoencoder")
        trainings.append(ainfo)
        res["autoencoder"] = dict(training=ainfo, **encoder_summary(ae, L, eval_a)[0],
                                  **decoding_summary(dirac_decoding(ae, eval_a, n)))

    fc, e1 = first
    figs = {}
    figs["filters"] = PP.filters_vs_target(fc.filters, fc.layers, fc.cosines, out / "filters.png", live=fc.live,
                                           extra=(fc_lin.filters, fc_lin.cosines, "linear, no bias", fc_lin.live)).name
    figs["encoding"] = PP.encoding_plot(e1.positions, e1.z, e1.closed_form, out / "encoding.png",
                                        scale=e1.scale, r2=e1.linear_r2).name
    figs["decoding"] = PP.dirac_decoding_plot(drep.outputs, drep.positions, drep.codes, out / "dirac_decoding.png").name
    curves = {t["label"]: (np.arange(1, len(t["loss_curve"]) + 1), t["loss_curve"]) for t in trainings}
    figs["loss"] = line_plot(curves, out / "loss.png", xlabel="epoch", ylabel="training MSE", logy=True).name

    res["train_seconds"] = float(sum(t["seconds"] for t in trainings))
    res["wall_seconds"] = time.perf_counter() - t0
    res["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    res["figures"] = figs
    res["config"] = asdict(cfg)
    res["targets"] = [
        dict(target="learned encoder filters vs [1,2,1] (biases + leaky ReLU), min abs cos over layers",
             goal="close to 1 (paper: 'remarkably well')", measured=f"{res['filter_cosine_min']:.4f}", met=None),
        dict(target="same, linear bias-free encoder (Prop. 3's network)", goal="close to 1",
             measured=f"{min(res['filter_cosine_linear']):.4f}", met=None),
        dict(target="one-hot codes vs 2^L - a: linear R² (biased encoder)", goal="> 0.999",
             measured=f"{res['onehot_encoding_r2']:.5f}", met=res["onehot_encoding_r2"] > 0.999),
        dict(target="decoded peak vs position, mean abs(argmax - a)", goal="< 1 sample",
             measured=f"{res['decoding_argmax_error']:.3f}", met=res["decoding_argmax_error"] < 1),
    ]
    if cfg.mode == "quick":
        res["targets"].append(dict(target="quick run wall time", goal="<= 120 s", measured=f"{res['wall_seconds']:.0f} s",
                                   met=res["wall_seconds"] <= 120))
    write_report(cfg, out, res, figs)
    write_json(out / "results.json", res)
    return res


def _cos(cs) -> str:
    return ", ".join(f"{c:.3f}" for c in cs)


def write_report(cfg: Config, out: Path, res: dict, figs: dict) -> None:
    rep = MarkdownReport("Newson et al. position: encoding and decoding a Dirac")
    et, dt = res["encoder_training"], res["decoder_training"]
    rep.paragraph(
        f"Mode **{cfg.mode}**; seeds {list(cfg.seeds)}, data seed {cfg.data_seed}; {cfg.n_train} triangular Diracs "
        f"(Eq. 19) at positions a uniform in [0, {2**cfg.L - 1}], length {2**cfg.L}; L = {cfg.L} layers of depth 1; "
        f"Adam lr {cfg.lr}, batch {cfg.batch_size}. Code z = (2^L − a)/2^L. Encoder (biases, leaky ReLU 0.2) "
        f"{et['epochs']} epochs, final MSE {et['final_loss']:.3g}; linear bias-free encoder final MSE "
        f"{res['encoder_linear']['training']['final_loss']:.3g}; decoder {dt['epochs']} epochs, final MSE "
        f"{dt['final_loss']:.3g}. Wall {res['wall_seconds']:.0f} s, training {res['train_seconds']:.0f} s, "
        f"{res['threads']} thread(s), load average at start {res['load_average_start']}.")
    rep.heading("Targets")
    rep.table(["target", "goal", "measured", "met?"],
              [[t["target"], t["goal"], t["measured"], {True: "yes", False: "**no**", None: "(reported)"}[t["met"]]]
               for t in res["targets"]])
    lin = res["encoder_linear"]
    rows = [["filter abs cos to [1,2,1] per layer, biases + leaky ReLU", _cos(res["filter_cosine"])],
            ["filter abs cos per layer, linear bias-free", _cos(res["filter_cosine_linear"])],
            ["one-hot code vs 2^L − a: linear R² / Spearman / max rel. deviation (biases)",
             f"{res['onehot_encoding_r2']:.5f} / {res['onehot_encoding_spearman']:.4f} / "
             f"{res['onehot_encoding_max_rel_deviation']:.3g}"],
            ["same, linear bias-free", f"{lin['onehot_encoding_r2']:.5f} / {lin['onehot_encoding_spearman']:.4f} / "
                                       f"{lin['onehot_encoding_max_rel_deviation']:.3g}"],
            ["continuous-Dirac code vs 2^L − a: linear R² (biases / linear)",
             f"{res['continuous_encoding_r2']:.5f} / {lin['continuous_encoding_r2']:.5f}"],
            ["decoder: abs(argmax − a) / abs(local centroid − a) (samples), MSE, peak energy share",
             f"{res['decoding_argmax_error']:.3f} / {res['decoding_centroid_error']:.3f}, {res['decoding_mse']:.3g}, "
             f"{res['decoding_peak_energy_fraction']:.3f}"]]
    if "filter_cosine_min_all_seeds" in res:
        rows.append(["min abs cos per seed", _cos(res["filter_cosine_min_all_seeds"])])
    if "onehot_trained_decoder" in res:
        o = res["onehot_trained_decoder"]["between_samples"]
        c = res["between_samples_continuous"]
        rows.append(["between samples (continuous a vs one-hots only): MSE",
                     f"{c['decoding_mse']:.3g} vs {o['decoding_mse']:.3g}"])
        rows.append(["between samples: abs(local centroid − a)", f"{c['decoding_centroid_error']:.3f} vs "
                                                              f"{o['decoding_centroid_error']:.3f}"])
        rows.append(["between samples: peak energy share", f"{c['decoding_peak_energy_fraction']:.3f} vs "
                                                           f"{o['decoding_peak_energy_fraction']:.3f}"])
    if "autoencoder" in res:
        a = res["autoencoder"]
        rows.append(["full autoencoder: final MSE / filter abs cos per layer / abs(local centroid − a)",
                     f"{a['training']['final_loss']:.3g} / {_cos(a['filter_cosine'])} / {a['decoding_centroid_error']:.2f}"])
    rep.heading("Key numbers")
    rep.table(["quantity", "value"], rows)
    rep.heading("Figures")
    good = res["filter_cosine_min"] > 0.95
    good_lin = min(res["filter_cosine_linear"]) > 0.95
    rep.figure(figs["filters"], "Learned encoder filters (scaled, sign-aligned) vs [1, 2, 1] (Fig. 9)",
               f"abs cos per layer with biases {_cos(res['filter_cosine'])}, linear {_cos(res['filter_cosine_linear'])}: "
               + {(True, True): "both encoders found the hand-crafted filter in every layer.",
                  (True, False): "the biased encoder found it in every layer, the linear one not in every layer.",
                  (False, True): "the linear encoder found it in every layer, the biased one not in every layer.",
                  (False, False): "neither encoder has [1, 2, 1] (abs cos > 0.95) in every layer at this budget."}[
                   (good, good_lin)])
    rep.figure(figs["encoding"], "Code of each one-hot vs the closed form c·(2^L − a) (Prop. 3, biased encoder)",
               f"linear R² {res['onehot_encoding_r2']:.5f}, largest deviation {res['onehot_encoding_max_rel_deviation']:.2g} "
               f"of the code range: the code is " + ("the closed form up to scale." if res["onehot_encoding_r2"] > 0.999
                                                     else "monotone but not the closed form." if
                                                     abs(res["onehot_encoding_spearman"]) > 0.999 else "not monotone."))
    msg = (f"mean abs(argmax − a) = {res['decoding_argmax_error']:.2f} samples, abs(local centroid − a) = "
           f"{res['decoding_centroid_error']:.2f}; {res['decoding_peak_energy_fraction']:.0%} of the output energy lies "
           "within 2 samples of a")
    if "onehot_trained_decoder" in res:
        o = res["onehot_trained_decoder"]["between_samples"]
        c = res["between_samples_continuous"]
        better = c["decoding_mse"] < o["decoding_mse"]
        msg += (f". Between the samples, the decoder trained on continuous positions has MSE {c['decoding_mse']:.3g} vs "
                f"{o['decoding_mse']:.3g} for the one trained on one-hots only: "
                + ("continuous sampling decodes better between samples, as Sect. 5.4 says"
                   if better else "here one-hot training is not worse, contrary to Sect. 5.4"))
    rep.figure(figs["decoding"], "Decoder outputs for increasing position code, normalised (Fig. 10)", msg + ".")
    if "autoencoder" in res:
        a = res["autoencoder"]
        stuck = a["training"]["final_loss"] > 0.9 * res["constant_output_mse"]
        rep.paragraph(
            f"Full autoencoder (Dirac -> z -> Dirac, biases and leaky ReLUs, trained end to end): final MSE "
            f"{a['training']['final_loss']:.3g} vs {res['constant_output_mse']:.3g} for the best constant output; "
            + ("it is stuck at a constant output (no position is transmitted: "
               f"abs(argmax − a) = {a['decoding_argmax_error']:.1f} samples), so its filters "
               f"({_cos(a['filter_cosine'])}) say nothing about Prop. 3. The paper presents the encoder (Sect. 5.3) "
               "and the decoder (Sect. 5.4) separately, as they are trained above." if stuck else
               f"abs(argmax − a) = {a['decoding_argmax_error']:.2f} samples, filter abs cos {_cos(a['filter_cosine'])}."))
    rep.figure(figs["loss"], "Training losses",
               "; ".join(f"{t['label']}: {t['final_loss']:.2g}" for t in
                         [res["encoder_training"], res["encoder_linear"]["training"], res["decoder_training"]]) + ".")
    rep.write(out / "report.md")


if __name__ == "__main__":
    r = main()
    print(f"filter_cosine={[round(c, 3) for c in r['filter_cosine']]} "
          f"linear={[round(c, 3) for c in r['filter_cosine_linear']]} onehot_r2={r['onehot_encoding_r2']:.4f} "
          f"decoding_argmax_error={r['decoding_argmax_error']:.3f} wall={r['wall_seconds']:.0f}s")
