"""The three measurements of the disk study on its trained nets, each with its figures.

* :func:`main_part` -- biased vs bias-free nets on the full radius range (Sect. 4, App. B);
* :func:`limited_part` -- training radii limited to ``R`` (Fig. 5, App. C);
* :func:`hole_part` -- a hole of unseen radii, the regularisers and a psi3 sweep (Fig. 6-8).

Each takes the configuration, the output folder, the training sets, the trained nets
(``key -> (model, training output)``, keys of :func:`aeprobe.studies.disks.jobs`) and fills the
results and figure dicts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeprobe.studies.evaluate import constant_output_mse, mse_per_sample

__all__ = ["main_part", "limited_part", "hole_part", "codes_and_outputs", "pick", "monotone_fraction"]


@torch.no_grad()
def codes_and_outputs(model, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Codes ``[N]`` (float64) and reconstructions of ``x``."""
    z = model.encode(x)
    return z[:, 0].double().numpy(), model.decode(z)


def pick(radii: np.ndarray, targets) -> np.ndarray:
    """Indices of the radii closest to ``targets``."""
    return np.array([int(np.argmin(np.abs(radii - t))) for t in targets])


def monotone_fraction(z: np.ndarray) -> float:
    """Fraction of consecutive steps of ``z`` going in its majority direction (1 = monotone)."""
    dz = np.diff(z)
    if dz.size == 0:
        return float("nan")
    return float(max(np.mean(dz > 0), np.mean(dz < 0)))


def main_part(cfg, out: Path, sets: dict, nets: dict, res: dict, figs: dict) -> None:
    """Biased vs bias-free networks on the full radius range."""
    from aeprobe.plots import disks as P
    from aeprobe.plots.common import line_plot
    from aeprobe.probes.code import unit_ablation
    from aeprobe.probes.code_size import code_vs_size
    from aeprobe.probes.disk_attribution import disk_attribution
    from aeprobe.probes.homogeneity import decoder_homogeneity
    from aeprobe.probes.profile import compare_profiles, compare_to_airy, data_optimal_profile, rank1_floor_mse
    from aeprobe.probes.separable import radial_profile, separable_decomposition
    from theory.disks import airy_profile, optimal_amplitude, radial_image

    x, R, xe, eval_r = sets["x"], sets["R"], sets["xe"], sets["eval_r"]
    floor = sets["rank1_floor"] if "rank1_floor" in sets else rank1_floor_mse(x)
    opt = sets["data_optimum"] if "data_optimum" in sets else data_optimal_profile(x)
    inside = opt.t <= R
    corr_opt_airy, rel_opt_airy, s_opt = compare_profiles(opt.f[inside], airy_profile(opt.t[inside], R))

    free, tf = nets["main-free"]
    info_f, per_epoch = tf["info"], tf["per_epoch"]
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

    biased_runs = []  # the main seed first, then the extra seeds (code vs size over seeds)
    for key in [f"main-biased-s{s}" for s in (cfg.seed,) + tuple(s for s in cfg.code_seeds if s != cfg.seed)]:
        model, t = nets[key]
        z, y = codes_and_outputs(model, xe)
        biased_runs.append(dict(model=model, info=t["info"], z=z, y=y, cs=code_vs_size(z, eval_r),
                                att=disk_attribution(model, xe[att_idx], eval_r[att_idx], n_steps=32)))
    main = biased_runs[0]
    biased, info_b, zb, yb, cs_b, att_b = (main[k] for k in ("model", "info", "z", "y", "cs", "att"))
    res["training"] = {"biased": info_b, "bias_free": info_f,
                       "biased_extra_seeds": [r["info"] for r in biased_runs[1:]]}
    hb = decoder_homogeneity(biased, data_codes=zb)
    # zeroing the one-number code: measured change of the output vs its first-order (jvp) prediction
    ablation = {name: _ablation_dict(unit_ablation(net, xe)) for name, net in (("biasfree", free), ("biased", biased))}
    sep_b = separable_decomposition(yb, eval_r)
    mse_b, mse_f = mse_per_sample(yb, xe), mse_per_sample(yf, xe)

    # interpolation in z (Fig. 3 left), biased network: does the decoded mass grow with z?
    i_small, i_large = pick(eval_r, [4.0, cfg.r_max - 4])
    zs = np.linspace(zb[i_small], zb[i_large], 10)
    with torch.no_grad():
        yi = biased.decode(torch.tensor(zs, dtype=torch.float32)[:, None])
    mass = yi.clamp(0, 1).reshape(len(zs), -1).sum(1).double().numpy()
    mass_up = float(np.mean(np.diff(mass) > 0))

    np.savez(out / "profile.npz", t=sep_f.t, f=sep_f.f_radial, airy=airy_profile(sep_f.t, R) * cmp.scale,
             t_data_optimum=opt.t, f_data_optimum=opt.f, R=R)

    show = pick(eval_r, np.linspace(2, cfg.r_max - 1, 8))
    figs["io"] = P.io_grid({"input": xe[show], "output (biases)": yb[show], "output (no bias)": yf[show]},
                           out / "disks_io.png", col_titles=[f"r={eval_r[i]:.1f}" for i in show]).name
    fits = {f"biases, seed {r['info']['seed']}": (r["cs"].area_r2, r["cs"].radius_r2, r["cs"].exponent)
            for r in biased_runs}
    figs["code_vs_size"] = P.code_vs_size_plot(
        eval_r, {f"biases, seed {r['info']['seed']}": r["z"] for r in biased_runs} | {"no bias": zf},
        out / "code_vs_size.png", fits=fits | {"no bias": (cs_f.area_r2, cs_f.radius_r2, cs_f.exponent)}).name
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
        code_ablation=ablation,
    )


def _ablation_dict(ab) -> dict[str, float]:
    """The numbers of a one-unit :class:`aeprobe.probes.code.AblationReport`."""
    return dict(measured=float(ab.measured[0]), predicted=float(ab.predicted[0]), ratio=float(ab.ratio[0]),
                loss_change=float(ab.loss_change[0]), base_loss=float(ab.base_loss), n=int(ab.n))


def limited_part(cfg, out: Path, sets: dict, nets: dict, res: dict, figs: dict) -> None:
    """App. C / Fig. 5: trained on radii <= R_lim, the bias-free profile's support should stop at R_lim."""
    from aeprobe.plots import disks as P
    from aeprobe.probes.homogeneity import code_signs
    from aeprobe.probes.profile import compare_to_airy
    from aeprobe.probes.separable import radial_profile, separable_decomposition
    from theory.disks import airy_profile

    R, xe, eval_r = sets["R_limited"], sets["xe"], sets["eval_r"]
    seen = eval_r <= R
    out_res: dict[str, Any] = {"R_train": R}
    show = pick(eval_r, np.linspace(6, cfg.r_max - 2, 8))
    rows = {"input": xe[show]}
    for key, bias in [("bias_free", False), ("biased", True)]:
        net = nets.get("limited-free" if not bias else "limited-biased")
        if net is None:
            continue
        model, t = net
        z, y = codes_and_outputs(model, xe)
        mse = mse_per_sample(y, xe)
        d = dict(training=t["info"], mse_seen=float(mse[seen].mean()), mse_unseen=float(mse[~seen].mean()))
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


def hole_part(cfg, out: Path, sets: dict, nets: dict, res: dict, figs: dict) -> None:
    """Fig. 6-8: radii in the hole are never seen; compare regularisers and psi3 weights on the hole."""
    from aeprobe.plots import disks as P

    lo, hi = cfg.hole
    x = sets["x_hole"]
    mean_image_mse = constant_output_mse(x)
    xe, eval_r = sets["xe"], sets["eval_r"]
    in_hole = (eval_r >= lo) & (eval_r <= hi)
    step = float(np.diff(eval_r).mean())
    around = (eval_r >= lo - step) & (eval_r <= hi + step)  # the hole and one observed radius each side
    show = pick(eval_r, [6, 10, 12.5, 14.5, 16.5, 20, 26])

    def score(kind: str, lam: float, seed: int) -> tuple[dict, np.ndarray, np.ndarray, torch.Tensor]:
        model, t = nets[f"hole-{kind}-{lam:g}-s{seed}"]
        info = t["info"]
        z, y = codes_and_outputs(model, xe)
        mse = mse_per_sample(y, xe)
        obs = float(mse[~in_hole].mean())
        data, reg = info["final_loss"], info["final_reg_loss"]
        return (dict(kind=kind, lam=lam, seed=seed, final_data_loss=data, final_reg_loss=reg,
                     reg_share=reg / (data + reg) if data + reg > 0 else 0.0, mse_hole=float(mse[in_hole].mean()),
                     mse_observed=obs, hole_to_observed_ratio=float(mse[in_hole].mean()) / obs,
                     code_monotone_fraction_hole=monotone_fraction(z[around]),
                     collapsed=bool(obs > 0.5 * mean_image_mse), seconds=info["seconds"],
                     epochs=info["epochs"], epochs_run=info["epochs_run"], stopped_stuck=info["stopped_stuck"]),
                mse, z, y[show])

    fig7: dict[str, Any] = {}
    errors, codes, outs = {}, {}, {}
    for kind in ("none", "psi1", "psi2", "psi3"):
        lam = cfg.lams.get(kind, 0.0)
        seeds = []
        for k, s in enumerate(cfg.hole_seeds):
            r, mse, z, yshow = score(kind, lam, cfg.seed + s)
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

    # Fig. 8: psi3 weight sweep (first seed); the Fig. 7 run at the same weight is the same net
    sweep, sweep_err = [], {}
    first = fig7["psi3"]["seeds"][0]
    for lam in cfg.psi3_sweep:
        if lam == cfg.lams["psi3"]:
            r, mse = first, errors[f"psi3 λ={lam:g}"]
        else:
            r, mse, _, _ = score("psi3", lam, cfg.seed + cfg.hole_seeds[0])
        sweep.append(r)
        sweep_err[f"λ={lam:g}"] = mse
    if sweep:
        figs["psi3_sweep"] = P.lambda_sweep_plot(eval_r, sweep_err, [s["lam"] for s in sweep],
                                                 out / "psi3_sweep.png", hole=(lo, hi),
                                                 baseline=errors["none"]).name
    res["hole"] = dict(hole=[lo, hi], mean_image_mse=mean_image_mse, regularizers=fig7, psi3_sweep=sweep)
