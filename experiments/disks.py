"""Newson et al., "Processing simple geometric attributes with autoencoders" -- the disk study (Sect. 4, App. B/C).

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

Writes ``OUT/results.json``, ``OUT/report.md``, ``OUT/profile.npz`` (``t``, ``f``) and PNGs.

    python experiments/disks.py --quick --out runs/disks     # 2-3 min on 2 CPU cores
    python experiments/disks.py --smoke --out /tmp/disks     # seconds (tests)
    python experiments/disks.py --full --out runs/disks_full # paper scale (CPU: hours)

Quick mode trains with batches of 50 instead of Table 1's 300: on CPU the cost per image does not
depend on the batch size (measured 2900-3000 img/s for batches of 50-100 vs 2400 for 300, one
thread), so within the same time smaller batches give six times more Adam steps, which the
bias-free net needs to reach its optimum (the paper does not give its number of epochs). Full
mode uses Table 1's batch of 300.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aeprobe.data import disks  # noqa: E402
from aeprobe.device import choose_threads, torch_threads  # noqa: E402
from aeprobe.models import DiskAE  # noqa: E402
from aeprobe.plots import disks as P  # noqa: E402
from aeprobe.plots.common import line_plot  # noqa: E402
from aeprobe.utils import eval_mode  # noqa: E402
from aeprobe.probes.code_size import code_vs_size  # noqa: E402
from aeprobe.probes.disk_attribution import disk_attribution  # noqa: E402
from aeprobe.probes.homogeneity import code_signs, decoder_homogeneity  # noqa: E402
from aeprobe.probes.profile import compare_profiles, compare_to_airy, data_optimal_profile, rank1_floor_mse  # noqa: E402
from aeprobe.probes.separable import radial_profile, separable_decomposition  # noqa: E402
from aeprobe import regularizers as REG  # noqa: E402
from aeprobe.reporting import MarkdownReport, write_json  # noqa: E402
from aeprobe.train import train  # noqa: E402
from theory.disks import airy_profile, optimal_amplitude, radial_image  # noqa: E402


# ----------------------------------------------------------------------------- configuration


@dataclass
class Config:
    mode: str
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
    seed: int = 0
    data_seed: int = 1234
    device: str | None = None
    progress: bool = True
    attribution_disks: int = 4


def make_config(args: argparse.Namespace) -> Config:
    if args.smoke:
        cfg = Config("smoke", n_train=96, n_eval=12, batch_size=32, epochs_biased=1, epochs_free=1, epochs_limited=1,
                     code_seeds=(1,), n_hole_train=64, epochs_hole=1, psi3_sweep=(1e-4, 1e-3), attribution_disks=2)
    elif args.full:
        cfg = Config("full", batch_size=300, epochs_biased=300, epochs_free=150, epochs_limited=150,
                     code_seeds=(1, 2, 3, 4), limited_biased=True, n_hole_train=3000, epochs_hole=300,
                     hole_seeds=(0, 1, 2, 3, 4), psi3_sweep=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3))
    else:
        cfg = Config("quick")
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    if args.device is not None:
        cfg = replace(cfg, device=args.device)
    if args.no_progress:
        cfg = replace(cfg, progress=False)
    return cfg


# ----------------------------------------------------------------------------- data and training


def make_disks(cfg: Config, n: int | None = None, *, radii=None, r_max: float | None = None, hole=None,
               seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Images ``[n, 1, 64, 64]`` and radii of :func:`aeprobe.data.disks` (blur ``cfg.sigma``)."""
    b = disks(n, size=cfg.size, r_min=cfg.r_min, r_max=cfg.r_max if r_max is None else r_max, hole=hole,
              radii=radii, sigma=cfg.sigma, seed=seed)
    return b.images, b.params["radius"].cpu().double().numpy()


def fit(cfg: Config, x: torch.Tensor, *, bias: bool, epochs: int, seed: int, regularizer=None, label: str = "",
        on_epoch_end=None):
    """Train a :class:`DiskAE` (seeded init) with Adam; returns the CPU model in eval mode and a summary."""
    torch.manual_seed(seed)
    model = DiskAE(bias=bias, code_size=1, size=cfg.size)
    res = train(model, x, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, regularizer=regularizer,
                device=cfg.device, seed=seed, progress=cfg.progress, channels_last=True, on_epoch_end=on_epoch_end)
    model = model.to(memory_format=torch.contiguous_format).cpu().eval()
    hist = res.history
    data_loss = hist["data_loss"] if regularizer is not None else hist["train_loss"]
    info = dict(label=label, bias=bias, epochs=epochs, seed=seed, seconds=res.seconds,
                images_per_second=res.images_per_second, final_loss=float(data_loss[-1]),
                final_reg_loss=float(hist["reg_loss"][-1]) if regularizer is not None else 0.0,
                loss_curve=[float(v) for v in data_loss])
    return model, info


@torch.no_grad()
def codes_and_outputs(model: DiskAE, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Codes ``[N]`` (float64) and reconstructions of ``x``."""
    z = model.encode(x)
    return z[:, 0].double().numpy(), model.decode(z)


def per_sample_mse(y: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    return ((y - x) ** 2).reshape(x.shape[0], -1).mean(1).double().numpy()


def pick(radii: np.ndarray, targets) -> np.ndarray:
    """Indices of the radii closest to ``targets``."""
    return np.array([int(np.argmin(np.abs(radii - t))) for t in targets])


def monotone_fraction(z: np.ndarray) -> float:
    """Fraction of consecutive steps of ``z`` going in its majority direction (1 = monotone)."""
    dz = np.diff(z)
    if dz.size == 0:
        return float("nan")
    return float(max(np.mean(dz > 0), np.mean(dz < 0)))


# ----------------------------------------------------------------------------- parts


def part_main(cfg: Config, out: Path, res: dict, figs: dict) -> dict:
    """Biased vs bias-free networks on the full radius range."""
    x, r_train = make_disks(cfg, cfg.n_train, seed=cfg.data_seed)
    R = float(r_train.max())
    xe, eval_r = make_disks(cfg, radii=np.linspace(cfg.r_min, cfg.r_max, cfg.n_eval))
    floor = rank1_floor_mse(x)
    opt = data_optimal_profile(x)
    inside = opt.t <= R
    airy_opt = airy_profile(opt.t[inside], R)
    corr_opt_airy, rel_opt_airy, s_opt = compare_profiles(opt.f[inside], airy_opt)

    # --- bias-free network, with the Airy correlation logged after every epoch
    per_epoch: list[dict] = []

    def log_airy(epoch: int, hist: dict, model) -> None:
        dev = next(model.parameters()).device
        with eval_mode(model), torch.no_grad():
            y = model(xe.to(dev).contiguous(memory_format=torch.channels_last))
        sep = separable_decomposition(y, eval_r)
        per_epoch.append(dict(epoch=epoch, train_loss=hist["train_loss"][-1],
                              airy_correlation=compare_to_airy(sep.t, sep.f_radial, R).correlation))

    free, info_f = fit(cfg, x, bias=False, epochs=cfg.epochs_free, seed=cfg.seed, label="bias-free",
                       on_epoch_end=log_airy)
    zf, yf = codes_and_outputs(free, xe)
    sep_f = separable_decomposition(yf, eval_r)
    cmp = compare_to_airy(sep_f.t, sep_f.f_radial, R, counts=radial_profile(sep_f.f_image).counts)
    corr_f_opt, rel_f_opt, _ = compare_profiles(sep_f.f_radial[sep_f.t <= R], opt.f[inside])
    hf = decoder_homogeneity(free, data_codes=zf)
    cs_f = code_vs_size(zf, eval_r, f2d=sep_f.f_image)
    # what the theory predicts for that code: z = C <f, 1_Br> with f the Airy profile (Eq. 8)
    h_theory = optimal_amplitude(radial_image(lambda t: airy_profile(t, R), cfg.size), eval_r)
    cs_theory = code_vs_size(h_theory, eval_r)
    att_idx = pick(eval_r, np.linspace(6, cfg.r_max - 4, cfg.attribution_disks))
    att_f = disk_attribution(free, xe[att_idx], eval_r[att_idx], n_steps=32)

    # --- biased networks: the main one (cfg.seed) and extra seeds for the code-vs-size question
    biased_runs = []
    for s in (cfg.seed,) + tuple(s for s in cfg.code_seeds if s != cfg.seed):
        model, info = fit(cfg, x, bias=True, epochs=cfg.epochs_biased, seed=s, label=f"biased seed {s}")
        z, y = codes_and_outputs(model, xe)
        cs = code_vs_size(z, eval_r)
        att = disk_attribution(model, xe[att_idx], eval_r[att_idx], n_steps=32)
        biased_runs.append(dict(model=model, info=info, z=z, y=y, cs=cs, att=att))
    main = biased_runs[0]
    biased, info_b, zb, yb, cs_b, att_b = (main[k] for k in ("model", "info", "z", "y", "cs", "att"))
    res["training"] = {"biased": info_b, "bias_free": info_f,
                       "biased_extra_seeds": [r["info"] for r in biased_runs[1:]]}
    hb = decoder_homogeneity(biased, data_codes=zb)
    sep_b = separable_decomposition(yb, eval_r)
    mse_b, mse_f = per_sample_mse(yb, xe), per_sample_mse(yf, xe)

    # interpolation in z (Fig. 3 left), biased network: does the decoded mass grow with z?
    i_small, i_large = pick(eval_r, [4.0, cfg.r_max - 4])
    zs = np.linspace(zb[i_small], zb[i_large], 10)
    with torch.no_grad():
        yi = biased.decode(torch.tensor(zs, dtype=torch.float32)[:, None])
    mass = yi.clamp(0, 1).reshape(len(zs), -1).sum(1).double().numpy()
    mass_up = float(np.mean(np.diff(mass) > 0))

    np.savez(out / "profile.npz", t=sep_f.t, f=sep_f.f_radial, airy=airy_profile(sep_f.t, R) * cmp.scale,
             t_data_optimum=opt.t, f_data_optimum=opt.f, R=R)

    # ---- figures
    show = pick(eval_r, np.linspace(2, cfg.r_max - 1, 8))
    figs["io"] = P.io_grid({"input": xe[show], "output (biases)": yb[show], "output (no bias)": yf[show]},
                           out / "disks_io.png", col_titles=[f"r={eval_r[i]:.1f}" for i in show]).name
    figs["code_vs_size"] = P.code_vs_size_plot(
        eval_r, {f"biases, seed {r['info']['seed']}": r["z"] for r in biased_runs} | {"no bias": zf},
        out / "code_vs_size.png",
        fits={f"biases, seed {r['info']['seed']}": (r["cs"].area_r2, r["cs"].radius_r2, r["cs"].exponent)
              for r in biased_runs} | {"no bias": (cs_f.area_r2, cs_f.radius_r2, cs_f.exponent)}).name
    figs["profile"] = P.profiles_vs_airy(
        {"learned f (no bias), radial mean": (sep_f.t, sep_f.f_radial / cmp.scale),
         f"Airy closed form, R={R:.1f}": (cmp.t, cmp.airy / cmp.scale),
         "best rank-1 profile of the training images": (opt.t, opt.f / s_opt)},
        out / "profile_vs_airy.png", R=R, styles={"learned f (no bias), radial mean": "o",
                                                  "best rank-1 profile of the training images": "--"},
        title=f"corr(learned, Airy) = {cmp.correlation:.4f} on t ≤ R").name
    figs["airy_per_epoch"] = P.training_curve_plot(
        [e["epoch"] for e in per_epoch], [e["train_loss"] for e in per_epoch],
        [e["airy_correlation"] for e in per_epoch], out / "airy_per_epoch.png", floor=floor).name
    figs["cross_sections"] = P.cross_sections(yf[show], eval_r[show], out / "cross_sections_biasfree.png",
                                              title="bias-free outputs, central row").name
    figs["amplitude"] = P.amplitude_plot(eval_r, sep_f.h, out / "amplitude.png", z=zf, amplitude=cs_f.amplitude,
                                         r2=cs_f.amplitude_r2_origin).name
    figs["interpolation"] = P.interpolation_strip(yi, zs, out / "interpolation.png",
                                                  suptitle="biased network: decoded z, linear between r≈4 and r≈28").name
    figs["attribution"] = P.attribution_plot(xe[att_idx], att_b.attributions, eval_r[att_idx], out / "attribution.png",
                                             t=att_b.density_t, density=att_b.density_profile).name
    figs["loss"] = line_plot({"biases": (np.arange(1, len(info_b["loss_curve"]) + 1), info_b["loss_curve"]),
                              "no bias": (np.arange(1, len(info_f["loss_curve"]) + 1), info_f["loss_curve"])},
                             out / "loss.png", xlabel="epoch", ylabel="training MSE", logy=True).name

    res.update(
        airy_correlation=cmp.correlation,
        profile_rel_l2=cmp.rel_l2,
        profile_energy_beyond_R=cmp.energy_beyond_R,
        profile_t_range=list(cmp.t_range),
        airy_correlation_per_epoch=per_epoch,
        R_train=R,
        rank1_floor_mse=floor,
        biasfree_final_loss=info_f["final_loss"],
        biasfree_loss_excess=info_f["final_loss"] / floor - 1.0,
        rank1_energy=sep_f.rank1_energy,
        rank1_energy_biased=sep_b.rank1_energy,
        homogeneity_max_rel_error_biasfree=hf.max_rel_error,
        homogeneity_max_rel_error_biased=hb.max_rel_error,
        code_signs_biasfree=hf.signs_used,
        code_signs_biased=hb.signs_used,
        code_area_r2=cs_b.area_r2,
        code_radius_r2=cs_b.radius_r2,
        code_exponent=cs_b.exponent,
        code_better=cs_b.better,
        code_spearman=cs_b.spearman,
        code_per_seed=[dict(seed=r["info"]["seed"], final_loss=r["info"]["final_loss"], area_r2=r["cs"].area_r2,
                            radius_r2=r["cs"].radius_r2, exponent=r["cs"].exponent, better=r["cs"].better,
                            attribution_density_cv=r["att"].density_cv) for r in biased_runs],
        code_area_r2_biasfree=cs_f.area_r2,
        code_radius_r2_biasfree=cs_f.radius_r2,
        code_exponent_biasfree=cs_f.exponent,
        code_exponent_biasfree_theory=cs_theory.exponent,
        code_area_r2_biasfree_theory=cs_theory.area_r2,
        code_radius_r2_biasfree_theory=cs_theory.radius_r2,
        code_amplitude_r2_biasfree=cs_f.amplitude_r2_origin,
        data_optimum_vs_airy_correlation=corr_opt_airy,
        data_optimum_vs_airy_rel_l2=rel_opt_airy,
        learned_vs_data_optimum_correlation=corr_f_opt,
        learned_vs_data_optimum_rel_l2=rel_f_opt,
        eval_mse_biased=float(mse_b.mean()),
        eval_mse_biasfree=float(mse_f.mean()),
        attribution_inside_fraction_biased=att_b.inside_fraction,
        attribution_density_cv_biased=att_b.density_cv,
        attribution_density_cv_biasfree=att_f.density_cv,
        attribution_completeness_biased=att_b.completeness,
        interpolation_mass_monotone_fraction=mass_up,
    )
    return dict(eval_r=eval_r, xe=xe)


def part_limited(cfg: Config, out: Path, res: dict, figs: dict, ev: dict) -> None:
    """App. C / Fig. 5: train on radii <= R_lim; the bias-free profile's support should stop at R_lim."""
    x, r_train = make_disks(cfg, cfg.n_train, r_max=cfg.limited_R, seed=cfg.data_seed + 2)
    R = float(r_train.max())
    eval_r, xe = ev["eval_r"], ev["xe"]
    seen = eval_r <= R
    out_res: dict[str, Any] = {"R_train": R}
    show = pick(eval_r, np.linspace(6, cfg.r_max - 2, 8))
    rows = {"input": xe[show]}
    variants = [("bias_free", False)] + ([("biased", True)] if cfg.limited_biased else [])
    for key, bias in variants:
        model, info = fit(cfg, x, bias=bias, epochs=cfg.epochs_limited, seed=cfg.seed, label=f"limited {key}")
        z, y = codes_and_outputs(model, xe)
        mse = per_sample_mse(y, xe)
        d = dict(training=info, mse_seen=float(mse[seen].mean()), mse_unseen=float(mse[~seen].mean()))
        if not bias:
            sep = separable_decomposition(y[seen], eval_r[seen])
            cmp = compare_to_airy(sep.t, sep.f_radial, R, counts=radial_profile(sep.f_image).counts)
            d.update(airy_correlation=cmp.correlation, profile_rel_l2=cmp.rel_l2,
                     profile_energy_beyond_R=cmp.energy_beyond_R, rank1_energy_seen=sep.rank1_energy,
                     code_signs_seen=code_signs(z[seen])[3], code_signs_unseen=code_signs(z[~seen])[3])
            figs["limited_profile"] = P.profiles_vs_airy(
                {f"learned f, trained on r ≤ {R:.1f}": (sep.t, sep.f_radial / cmp.scale),
                 f"Airy, R={R:.1f}": (cmp.t, cmp.airy / cmp.scale),
                 f"Airy, R={cfg.r_max:.0f} (full range)": (sep.t, airy_profile(sep.t, cfg.r_max))},
                out / "limited_profile.png", R=R, styles={f"learned f, trained on r ≤ {R:.1f}": "o"},
                title=f"App. C: energy of f beyond R = {cmp.energy_beyond_R:.3g}").name
        rows[f"output ({key.replace('_', '-')})"] = y[show]
        out_res[key] = d
    figs["limited_io"] = P.io_grid(rows, out / "limited_io.png", col_titles=[f"r={eval_r[i]:.1f}" for i in show],
                                   border=["green" if eval_r[i] <= R else "red" for i in show]).name
    res["limited_radius"] = out_res


REGULARIZERS = {"psi1": REG.psi1, "psi2": REG.psi2, "psi3": REG.psi3}  # Sect. 4.4.1, types 1-3


def make_regularizer(kind: str, lam: float):
    return None if kind == "none" else REGULARIZERS[kind](lam)


def part_hole(cfg: Config, out: Path, res: dict, figs: dict, ev: dict) -> None:
    """Fig. 6-8: radii in the hole are never seen; compare regularisers and psi3 weights on the hole."""
    lo, hi = cfg.hole
    x, _ = make_disks(cfg, cfg.n_hole_train, hole=(lo, hi), seed=cfg.data_seed + 3)
    mean_image_mse = float(((x - x.mean(0, keepdim=True)) ** 2).mean())  # MSE of a constant output
    eval_r, xe = ev["eval_r"], ev["xe"]
    in_hole = (eval_r >= lo) & (eval_r <= hi)
    step = float(np.diff(eval_r).mean())
    around = (eval_r >= lo - step) & (eval_r <= hi + step)  # the hole and one observed radius each side
    show = pick(eval_r, [6, 10, 12.5, 14.5, 16.5, 20, 26])

    def run(kind: str, lam: float, seed: int) -> tuple[dict, np.ndarray, np.ndarray, torch.Tensor]:
        model, info = fit(cfg, x, bias=True, epochs=cfg.epochs_hole, seed=seed, regularizer=make_regularizer(kind, lam),
                          label=f"hole {kind} lam {lam:g} seed {seed}")
        z, y = codes_and_outputs(model, xe)
        mse = per_sample_mse(y, xe)
        obs = float(mse[~in_hole].mean())
        data, reg = info["final_loss"], info["final_reg_loss"]
        return (dict(kind=kind, lam=lam, seed=seed, final_data_loss=data, final_reg_loss=reg,
                     reg_share=reg / (data + reg) if data + reg > 0 else 0.0, mse_hole=float(mse[in_hole].mean()),
                     mse_observed=obs, hole_to_observed_ratio=float(mse[in_hole].mean()) / obs,
                     code_monotone_fraction_hole=monotone_fraction(z[around]),
                     collapsed=bool(obs > 0.5 * mean_image_mse), seconds=info["seconds"]), mse, z, y[show])

    fig7: dict[str, Any] = {}
    errors, codes, outs = {}, {}, {}
    for kind in ("none", "psi1", "psi2", "psi3"):
        lam = cfg.lams.get(kind, 0.0)
        seeds = []
        for k, s in enumerate(cfg.hole_seeds):
            r, mse, z, yshow = run(kind, lam, cfg.seed + s)
            seeds.append(r)
            if k == 0:
                label = kind if kind == "none" else f"{kind} λ={lam:g}"
                errors[label], codes[label], outs[label] = mse, z, yshow
        mh = np.array([p["mse_hole"] for p in seeds])
        mo = np.array([p["mse_observed"] for p in seeds])
        fig7[kind] = dict(lam=lam, mse_hole_mean=float(mh.mean()), mse_observed_mean=float(mo.mean()),
                          hole_to_observed_ratio=float(mh.mean() / mo.mean()), seeds=seeds)
    figs["hole_errors"] = P.hole_errors_plot(eval_r, errors, codes, out / "hole_errors.png", hole=(lo, hi)).name
    figs["hole_io"] = P.hole_outputs_grid(xe[show], outs, eval_r[show], out / "hole_io.png", hole=(lo, hi)).name

    # Fig. 8: psi3 weight sweep (first seed); reuses the Fig. 7 run at the same weight
    sweep, sweep_err = [], {}
    first = fig7["psi3"]["seeds"][0]
    for lam in cfg.psi3_sweep:
        if lam == cfg.lams["psi3"]:
            r, mse = first, errors[f"psi3 λ={lam:g}"]
        else:
            r, mse, _, _ = run("psi3", lam, cfg.seed + cfg.hole_seeds[0])
        sweep.append(r)
        sweep_err[f"λ={lam:g}"] = mse
    if sweep:
        figs["psi3_sweep"] = P.lambda_sweep_plot(eval_r, sweep_err, [s["lam"] for s in sweep],
                                                 out / "psi3_sweep.png", hole=(lo, hi),
                                                 baseline=errors["none"]).name
    res["hole"] = dict(hole=[lo, hi], mean_image_mse=mean_image_mse, regularizers=fig7, psi3_sweep=sweep)


# ----------------------------------------------------------------------------- report


def _fmt(v, f=".4g"):
    return "n/a" if v is None else (format(v, f) if isinstance(v, (float, int)) else str(v))


def targets(res: dict, cfg: Config) -> list[dict]:
    t = []

    def add(name, goal, measured, ok):
        t.append(dict(target=name, goal=goal, measured=measured, met=None if ok is None else bool(ok)))

    add("bias-free profile vs Airy correlation", ">= 0.99",
        f"{res['airy_correlation']:.4f} (training MSE {res['biasfree_final_loss']:.4g}, "
        f"{100 * res['biasfree_loss_excess']:.1f}% above the rank-1 floor)", res["airy_correlation"] >= 0.99)
    add("homogeneity error, bias-free decoder", "<= 1e-5", f"{res['homogeneity_max_rel_error_biasfree']:.3g}",
        res["homogeneity_max_rel_error_biasfree"] <= 1e-5)
    add("homogeneity error, biased decoder", "clearly > 0 (> 1e-3)", f"{res['homogeneity_max_rel_error_biased']:.3g}",
        res["homogeneity_max_rel_error_biased"] > 1e-3)
    seeds = res["code_per_seed"]
    n_area = sum(s["better"] == "area" for s in seeds)
    add(f"z explained better by area than radius (biased net, seed {cfg.seed})", "area R² > radius R²",
        f"R² {res['code_area_r2']:.4f} vs {res['code_radius_r2']:.4f}, z ~ r^{res['code_exponent']:.2f}; "
        f"area better for {n_area} of {len(seeds)} seeds", res["code_area_r2"] > res["code_radius_r2"])
    if cfg.mode == "quick":
        add("quick run wall time", "<= 180 s", f"{res['wall_seconds']:.0f} s", res["wall_seconds"] <= 180)
    return t


def write_report(cfg: Config, out: Path, res: dict, figs: dict) -> None:
    rep = MarkdownReport("Newson et al. disks: what the autoencoder learned, checked against theory")
    tr = res["training"]
    rep.paragraph(
        f"Mode **{cfg.mode}**; seed {cfg.seed}, data seed {cfg.data_seed}; {cfg.n_train} training disks, radii "
        f"uniform in [{cfg.r_min}, {cfg.r_max}] px, Gaussian blur σ = {cfg.sigma} px, 64x64; Adam lr {cfg.lr}, "
        f"batch {cfg.batch_size} (Table 1: 300; see the script's docstring). Biased network {tr['biased']['epochs']} "
        f"epochs (final MSE {tr['biased']['final_loss']:.2g}), bias-free {tr['bias_free']['epochs']} epochs (final "
        f"MSE {tr['bias_free']['final_loss']:.3g}). Wall time {res['wall_seconds']:.0f} s, of which training "
        f"{res['train_seconds']:.0f} s; CPU threads {res['threads']}, load average at start "
        f"{res['load_average_start']} (other jobs share the machine).")
    rep.heading("Targets")
    rows = [[t["target"], t["goal"], _fmt(t["measured"]), {True: "yes", False: "**no**", None: "n/a"}[t["met"]]]
            for t in res["targets"]]
    rep.table(["target", "goal", "measured", "met?"], rows)
    rep.heading("Key numbers")
    rep.table(["quantity", "value", "what it checks"], [
        ["corr(learned f, Airy) on t ≤ R", res["airy_correlation"], "Prop. 2: the bias-free decoder finds the optimum"],
        ["rel. L2(learned f, c·Airy)", res["profile_rel_l2"], "same, scale fitted by least squares"],
        ["bias-free training MSE / rank-1 floor of the data",
         f"{res['biasfree_final_loss']:.5f} / {res['rank1_floor_mse']:.5f}", "how converged the decoder is (Eq. 6)"],
        ["corr(best rank-1 profile of the data, Airy)", res["data_optimum_vs_airy_correlation"],
         "does blur/pixelisation move the optimum? (1 = no)"],
        ["corr(learned f, best rank-1 profile of the data)", res["learned_vs_data_optimum_correlation"],
         "training vs the exact discrete optimum"],
        ["rank-1 energy, bias-free outputs", res["rank1_energy"], "Eq. 5: y(t,r) = h(r) f(t)"],
        ["rank-1 energy, biased outputs", res["rank1_energy_biased"], "contrast (not separable)"],
        ["homogeneity error, bias-free / biased", f"{res['homogeneity_max_rel_error_biasfree']:.3g} / "
                                                  f"{res['homogeneity_max_rel_error_biased']:.3g}", "Prop. 1"],
        ["code signs used (bias-free)", res["code_signs_biasfree"], "Prop. 1: one sign -> linear decoder"],
        ["R² of z on area / radius, exponent p of z ~ r^p (biased)",
         f"{res['code_area_r2']:.4f} / {res['code_radius_r2']:.4f}, p = {res['code_exponent']:.2f}", "Fig. 3"],
        ["same, bias-free", f"{res['code_area_r2_biasfree']:.4f} / {res['code_radius_r2_biasfree']:.4f}, "
                            f"p = {res['code_exponent_biasfree']:.2f}", "Fig. 3, ablated net"],
        ["R² of z = C<f,1_Br>/‖f‖² (bias-free)", res["code_amplitude_r2_biasfree"], "Fig. 11 / Eq. 8"],
        ["eval MSE biased / bias-free", f"{res['eval_mse_biased']:.3g} / {res['eval_mse_biasfree']:.3g}",
         "biases are needed for sharp disks"],
    ])
    rep.heading("Figures")
    fr = figs
    sep_ok = res["rank1_energy"] > 0.999
    rep.figure(fr["io"], "Inputs and outputs of both networks (Fig. 2, Fig. 4)",
               f"eval MSE with biases {res['eval_mse_biased']:.2g}, without {res['eval_mse_biasfree']:.2g}; "
               + ("without biases every output is one image scaled (rank-1 energy "
                  f"{res['rank1_energy']:.6f})." if sep_ok else
                  f"the bias-free outputs are not one scaled image (rank-1 energy {res['rank1_energy']:.4f})."))
    rep.figure(fr["cross_sections"], "Central row of the bias-free outputs for increasing radius (Fig. 4)",
               ("scaled copies of one profile" if sep_ok else "the curves differ in shape")
               + f" (rank-1 energy {res['rank1_energy']:.6f}); code signs used: {res['code_signs_biasfree']}.")
    d_opt = res["data_optimum_vs_airy_correlation"]
    rep.figure(fr["profile"], "Learned radial profile vs the Airy closed form (Prop. 2, App. B, Fig. 12)",
               f"correlation {res['airy_correlation']:.4f}, rel. L2 {res['profile_rel_l2']:.3f} on t ≤ R = "
               f"{res['R_train']:.1f}; the exact rank-1 optimum of the (blurred, pixelised) training images has "
               f"correlation {d_opt:.5f} with Airy, so the closed form "
               + ("describes the discrete problem well." if d_opt > 0.999 else "is only approximate here."))
    pe = res["airy_correlation_per_epoch"]
    if pe:
        best = max(pe, key=lambda e: e["airy_correlation"])
        first_ok = next((e["epoch"] for e in pe if e["airy_correlation"] >= 0.99
                         and e["train_loss"] <= 1.05 * res["rank1_floor_mse"]), None)
        rep.figure(fr["airy_per_epoch"], "Bias-free training: loss vs the rank-1 floor, and Airy correlation per epoch",
                   f"final loss {100 * res['biasfree_loss_excess']:.1f}% above the floor "
                   f"{res['rank1_floor_mse']:.4f}; correlation {pe[0]['airy_correlation']:.3f} after epoch 1, "
                   f"max {best['airy_correlation']:.4f} (epoch {best['epoch']}), {pe[-1]['airy_correlation']:.4f} at the "
                   f"end; " + (f"first epoch with correlation ≥ 0.99 and loss within 5% of the floor: {first_ok}."
                               if first_ok else "correlation ≥ 0.99 with the loss within 5% of the floor was "
                                                "not reached."))
    rep.figure(fr["amplitude"], "h(r) and z against the optimal amplitude <f,1_Br>/‖f‖² (Fig. 11)",
               ("z is proportional to" if res["code_amplitude_r2_biasfree"] > 0.99 else "z departs from")
               + f" the Eq. 8 amplitude (R² of z = C·h: {res['code_amplitude_r2_biasfree']:.4f}).")
    seeds = res["code_per_seed"]
    rep.figure(fr["code_vs_size"], "Code z against radius and area for each biased seed and the bias-free net (Fig. 3)",
               f"seed {cfg.seed}: R² on area {res['code_area_r2']:.3f} vs radius {res['code_radius_r2']:.3f}, best "
               f"power z ~ r^{res['code_exponent']:.2f}; over seeds the exponent is "
               + ", ".join(f"{s['exponent']:.2f}" for s in seeds)
               + f" (area explains z better for {sum(s['better'] == 'area' for s in seeds)} of {len(seeds)}).")
    rep.table(["seed", "final MSE", "R² area", "R² radius", "exponent p", "attribution CV"],
              [[s["seed"], s["final_loss"], s["area_r2"], s["radius_r2"], s["exponent"], s["attribution_density_cv"]]
               for s in seeds])
    cvs = [s["attribution_density_cv"] for s in seeds]
    p_lo, p_hi = min(s["exponent"] for s in seeds), max(s["exponent"] for s in seeds)
    rep.paragraph(
        f"The exponent of the biased code ranges over [{p_lo:.2f}, {p_hi:.2f}] across seeds: "
        + ("some runs give an area-like code (p near 2) and others a radius-like one (p near 1): with biases the "
           "encoder may learn any monotone code (the decoder inverts it), so 'z represents the area' (Fig. 3) is a "
           "property of a run, not of the architecture. " if p_lo < 1.5 <= p_hi else
           "every seed gives an area-like code (p ≥ 1.5). " if p_lo >= 1.5 else
           "no seed gives an area-like code (p < 1.5). ")
        + f"The attribution CV is {', '.join(f'{c:.2f}' for c in cvs)}: "
        + ("every encoder weights the pixels of the disk unevenly (CV far from 0), area-like codes included."
           if min(cvs) > 0.5 else "some encoders weight the disk's pixels nearly uniformly.")
        + f" Without biases the theory fixes the code, z = C<f,1_Br> with the Airy f (Eq. 8): exponent "
          f"{res['code_exponent_biasfree_theory']:.2f} (R² area {res['code_area_r2_biasfree_theory']:.3f} vs radius "
          f"{res['code_radius_r2_biasfree_theory']:.3f}), measured {res['code_exponent_biasfree']:.2f} on the bias-free "
          "net.")
    mono = res["interpolation_mass_monotone_fraction"]
    rep.figure(fr["interpolation"], "Decoding linearly interpolated codes (Fig. 3 left)",
               f"the decoded mass grows at {mono:.0%} of the steps"
               + (": disks grow with z." if mono == 1.0 else "."))
    rep.figure(fr["attribution"], "Integrated gradients of z (biased encoder) and attribution per unit input",
               f"{res['attribution_inside_fraction_biased']:.3f} of the attribution lies inside the disks (near 1 by "
               f"construction with a zero baseline); the weight per unit input varies with CV "
               f"{res['attribution_density_cv_biased']:.2f} over the disk (0 = every pixel counts the same, "
               "a pure area integral).")
    rep.figure(fr["loss"], "Training loss",
               f"final MSE with biases {tr['biased']['final_loss']:.3g}, without {tr['bias_free']['final_loss']:.3g} "
               f"(rank-1 floor {res['rank1_floor_mse']:.3g}).")
    if "limited_radius" in res:
        lr_ = res["limited_radius"]
        bf = lr_["bias_free"]
        rep.heading("Generalisation: limited radius (Fig. 5, App. C)")
        rep.figure(fr["limited_io"], f"Trained on radii ≤ {lr_['R_train']:.1f} (green: seen, red: unseen)",
                   f"MSE on seen radii {bf['mse_seen']:.3g} vs unseen {bf['mse_unseen']:.3g} (bias-free)"
                   + (f", with biases {lr_['biased']['mse_seen']:.3g} vs {lr_['biased']['mse_unseen']:.3g}"
                      if "biased" in lr_ else "")
                   + ("; larger disks are not extrapolated." if bf["mse_unseen"] > 2 * bf["mse_seen"] else "."))
        rep.figure(fr["limited_profile"], "Bias-free profile when training radii stop at R (App. C)",
                   f"corr with Airy(R={lr_['R_train']:.1f}) {bf['airy_correlation']:.4f}; fraction of the profile's "
                   f"energy beyond R {bf['profile_energy_beyond_R']:.3g}; code signs seen/unseen: "
                   f"{bf['code_signs_seen']}/{bf['code_signs_unseen']}"
                   + (" (App. C reports the other sign for unseen radii; not the case here)."
                      if bf["code_signs_seen"] == bf["code_signs_unseen"] else
                      " (unseen radii use another code sign, as App. C reports)."))
    if "hole" in res:
        write_hole_section(rep, res["hole"], fr)
    rep.write(out / "report.md")


def write_hole_section(rep: MarkdownReport, h: dict, fr: dict) -> None:
    regs, sweep = h["regularizers"], h["psi3_sweep"]
    lo, hi = h["hole"]
    rep.heading(f"Generalisation: the hole {lo:g}-{hi:g} and regularisers (Fig. 6, 7, 8)")
    rep.paragraph("λ is in our units: the data term is the per-pixel *mean* squared error (a per-image sum, as the "
                  "paper's Eq. 1 writes, is 4096 times larger, so λ·4096 is the same weight against a per-image sum; "
                  "the paper does not state its normalisation nor the λ of Fig. 7). 'reg share' = regulariser / "
                  "(data + regulariser) in the last epoch; 'monotone' = fraction of steps over the hole (and one "
                  "observed radius each side) where z moves in its majority direction; 'collapsed' = MSE on observed "
                  f"radii above half that of a constant output ({h['mean_image_mse']:.3g}).")
    rows = []
    for kind, v in regs.items():
        s = v["seeds"][0]
        rows.append([kind, v["lam"], s["final_data_loss"], s["reg_share"], v["mse_hole_mean"], v["mse_observed_mean"],
                     v["hole_to_observed_ratio"], s["code_monotone_fraction_hole"], s["collapsed"], len(v["seeds"])])
    rep.table(["regulariser", "λ", "final data MSE", "reg share", "MSE in hole", "MSE observed", "hole / observed",
               "monotone", "collapsed", "seeds"], rows)
    none, p3 = regs["none"], regs["psi3"]
    p3s, nos = p3["seeds"][0], none["seeds"][0]
    relative = (not p3s["collapsed"] and p3["hole_to_observed_ratio"] < none["hole_to_observed_ratio"]
                and p3s["code_monotone_fraction_hole"] == 1.0)
    absolute = p3["mse_hole_mean"] < none["mse_hole_mean"]
    best = min(regs, key=lambda k: regs[k]["mse_hole_mean"])
    verdict = {
        (True, True): "psi3 fills the hole: lower error in the hole than without regulariser, an error as low as on "
                      "observed radii, and a monotone code",
        (True, False): "psi3 evens the error out (hole close to observed radii, monotone code) but its error in the "
                       "hole is still higher than without regulariser: it does not reconstruct the hole better here",
        (False, True): "psi3 lowers the error in the hole, but not relative to the observed radii or without a "
                       "monotone code",
        (False, False): "psi3 does not fill the hole better than no regulariser",
    }[(relative, absolute)]
    rep.figure(fr["hole_errors"], "Reconstruction error and code per radius for each regulariser (Fig. 7)",
               f"hole/observed MSE ratio: none {none['hole_to_observed_ratio']:.2f}, psi3 "
               f"{p3['hole_to_observed_ratio']:.2f}; code monotone over the hole: none "
               f"{nos['code_monotone_fraction_hole']:.2f}, psi3 {p3s['code_monotone_fraction_hole']:.2f}; MSE in the "
               f"hole: none {none['mse_hole_mean']:.3g}, psi3 {p3['mse_hole_mean']:.3g} (lowest: {best}); MSE on "
               f"observed radii: none {none['mse_observed_mean']:.3g}, psi3 {p3['mse_observed_mean']:.3g}. {verdict}"
               + (" (one seed: the paper shows five for 'none' because its latent space varies between runs)."
                  if len(none["seeds"]) == 1 else "."))
    rep.figure(fr["hole_io"], "Outputs per regulariser (red border: radius in the hole)",
               "; ".join(f"{k}: MSE in hole {v['mse_hole_mean']:.3g}" for k, v in regs.items()) + ".")
    if sweep:
        rep.table(["psi3 λ", "final data MSE", "reg share", "MSE in hole", "MSE observed", "hole / observed",
                   "monotone", "collapsed"],
                  [[s["lam"], s["final_data_loss"], s["reg_share"], s["mse_hole"], s["mse_observed"],
                    s["hole_to_observed_ratio"], s["code_monotone_fraction_hole"], s["collapsed"]] for s in sweep])
        ok = [s for s in sweep if not s["collapsed"]]
        failed = [s["lam"] for s in sweep if s["collapsed"]]
        txt = ""
        if ok:
            b = min(ok, key=lambda s: s["hole_to_observed_ratio"])
            txt = (f"smallest hole/observed ratio {b['hole_to_observed_ratio']:.2f} at λ = {b['lam']:g} (MSE in hole "
                   f"{b['mse_hole']:.3g}, observed {b['mse_observed']:.3g})")
        if failed:
            txt += ("; " if txt else "") + "training collapses to a constant output at λ = " + ", ".join(
                f"{v:g}" for v in failed)
        rep.figure(fr["psi3_sweep"], "psi3 weight sweep (Fig. 8): error per radius and in/out of the hole against λ",
                   txt + ".")


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU scale, 2-3 minutes on 2 cores (default)")
    mode.add_argument("--full", action="store_true", help="paper scale: long training, 5 seeds on the hole")
    mode.add_argument("--smoke", action="store_true", help="tiny run for tests (seconds)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--seed", type=int, default=None, help="training seed (default 0)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 if the machine is already busy, else 2)")
    return p


def main(argv=None) -> dict:
    """Run the experiment (CLI arguments in ``argv``); restores torch's thread count afterwards."""
    args = build_parser().parse_args(argv)
    with torch_threads(choose_threads(args.threads)) as threads:
        return _main(args, threads)


def _main(args: argparse.Namespace, threads: int) -> dict:
    cfg = make_config(args)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load0 = [round(v, 2) for v in os.getloadavg()]
    res: dict[str, Any] = dict(mode=cfg.mode, seed=cfg.seed, data_seed=cfg.data_seed, threads=threads,
                               load_average_start=load0)
    res["data"] = dict(n_train=cfg.n_train, r_min=cfg.r_min, r_max=cfg.r_max, size=cfg.size, sigma=cfg.sigma)
    figs: dict[str, str] = {}
    ev = part_main(cfg, out, res, figs)
    part_limited(cfg, out, res, figs, ev)
    part_hole(cfg, out, res, figs, ev)
    tr = res["training"]
    secs = [tr["biased"]["seconds"], tr["bias_free"]["seconds"]] + [t["seconds"] for t in tr["biased_extra_seeds"]]
    secs += [v["training"]["seconds"] for v in res["limited_radius"].values() if isinstance(v, dict)]
    h = res["hole"]
    secs += [s["seconds"] for v in h["regularizers"].values() for s in v["seeds"]]
    secs += [s["seconds"] for s in h["psi3_sweep"] if s["lam"] != cfg.lams["psi3"]]
    res["train_seconds"] = float(sum(secs))
    res["wall_seconds"] = time.perf_counter() - t0
    res["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    res["targets"] = targets(res, cfg)
    res["figures"] = figs
    res["config"] = asdict(cfg)
    write_report(cfg, out, res, figs)
    write_json(out / "results.json", res)
    return res


if __name__ == "__main__":
    r = main()
    print(f"airy_correlation={r['airy_correlation']:.4f} homogeneity biasfree={r['homogeneity_max_rel_error_biasfree']:.2e} "
          f"biased={r['homogeneity_max_rel_error_biased']:.2e} area_r2={r['code_area_r2']:.4f} "
          f"radius_r2={r['code_radius_r2']:.4f} wall={r['wall_seconds']:.0f}s")
