"""Claims and report of the disk study, computed from its results (as saved in ``results.json``)."""
from __future__ import annotations

from typing import Any

from aeprobe.report import Above, AtLeast, AtMost, Claim, Report, fmt, wall_time_claims
from aeprobe.studies.evaluate import stuck_note

__all__ = ["claims", "build_report", "headline", "ablation_reading", "QUICK_WALL_SECONDS"]

#: wall-time goal of a quick run on an idle 2-core machine (benchmarks/demo.py states it in bare epochs)
QUICK_WALL_SECONDS = 180.0


def claims(res: dict[str, Any]) -> list[Claim]:
    """The study's targets, each judged from the numbers."""
    seeds = res["code_per_seed"]
    n_area = sum(s["better"] == "area" for s in seeds)
    seed = res["config"]["seed"]
    out = [
        Claim("airy_correlation", "bias-free profile vs Airy correlation", res["airy_correlation"], AtLeast(0.99),
              shown=f"{fmt(res['airy_correlation'], '.4f')} (training MSE {fmt(res['biasfree_final_loss'])}, "
                    f"{100 * res['biasfree_loss_excess']:.1f}% above the rank-1 floor)"),
        Claim("homogeneity_biasfree", "homogeneity error, bias-free decoder", res["homogeneity_max_rel_error_biasfree"],
              AtMost(1e-5), shown=fmt(res["homogeneity_max_rel_error_biasfree"], ".3g")),
        Claim("homogeneity_biased", "homogeneity error, biased decoder (clearly > 0)",
              res["homogeneity_max_rel_error_biased"], Above(1e-3), shown=fmt(res["homogeneity_max_rel_error_biased"], ".3g")),
        Claim("area_code", f"z explained better by area than radius (biased net, seed {seed})", res["code_area_r2"],
              Above(res["code_radius_r2"], "radius R²"),
              shown=f"R² {res['code_area_r2']:.4f} vs {res['code_radius_r2']:.4f}, z ~ r^{res['code_exponent']:.2f}; "
                    f"area better for {n_area} of {len(seeds)} seeds"),
    ]
    ab = res.get("code_ablation")
    if ab:
        f = ab["biasfree"]
        out.append(Claim("ablation_first_order", "zeroing the bias-free code is predicted exactly to first order "
                                                 "(Euler: D(λz) = λD(z) gives J_D(z) z = D(z))",
                         abs(f["ratio"] - 1.0), AtMost(1e-4, spec=".0e"),
                         shown=f"|measured / predicted - 1| = {abs(f['ratio'] - 1.0):.1e} (biased net: ratio "
                               f"{ab['biased']['ratio']:.3f})"))
    return out + wall_time_claims(res, QUICK_WALL_SECONDS)


def headline(res: dict[str, Any]) -> str:
    """The figures ``make demo`` prints."""
    verdict = {c["id"]: c["verdict"] for c in res.get("claims", [])}
    run = res.get("run", {})
    return (f"disks ({res['mode']}): Airy correlation {res['airy_correlation']:.4f} (≥ 0.99: "
            f"{verdict.get('airy_correlation', 'n/a')}); homogeneity error bias-free "
            f"{res['homogeneity_max_rel_error_biasfree']:.2e} (≤ 1e-5: {verdict.get('homogeneity_biasfree', 'n/a')}), "
            f"biased {res['homogeneity_max_rel_error_biased']:.2e}; code R² area {res['code_area_r2']:.4f} vs radius "
            f"{res['code_radius_r2']:.4f}; wall {fmt(run.get('wall_seconds'), '.0f')} s with {run.get('threads')} "
            f"thread(s), {res.get('workers', 1)} training process(es)")


def ablation_reading(ab: dict[str, Any]) -> str:
    """What zeroing the one-number code does to each decoder, measured against its first-order prediction."""
    f, b = ab["biasfree"], ab["biased"]
    r = b["ratio"]
    shape = ("the output changes less than the tangent at z predicts: the decoder bends back (saturates) between z "
             "and 0" if r < 0.98 else "the output changes more than the tangent at z predicts: the decoder steepens "
             "between z and 0" if r > 1.02 else "the tangent at z predicts the change within 2%: the decoder is "
             "nearly linear along the path to 0")
    return (f"Zeroing the code (`aeprobe.probes.code.unit_ablation` on the {f['n']} evaluation disks): without biases "
            f"the mean change of the output ||D(0) - D(z)|| = {f['measured']:.4g} and its first-order prediction "
            f"||J_D(z) z|| = {f['predicted']:.4g} agree to a ratio of {f['ratio']:.6f}, as Euler's relation for a "
            f"positively homogeneous decoder requires (D(0) = 0 and J_D(z) z = D(z)); zeroing z changes the MSE by "
            f"{f['loss_change']:+.3g} (from {f['base_loss']:.3g}). With biases the ratio is {r:.4f} (measured "
            f"{b['measured']:.4g}, predicted {b['predicted']:.4g}): {shape}; there D(0) is the output for the code 0, "
            f"not a blank image, and zeroing z changes the MSE by {b['loss_change']:+.3g}.")


def build_report(res: dict[str, Any], claim_list: list[Claim]) -> Report:
    cfg, tr, fr = res["config"], res["training"], res["figures"]
    rep = Report("Newson et al. disks: what the autoencoder learned, checked against theory")
    rep.paragraph(
        f"Mode **{cfg['mode']}**; seed {cfg['seed']}, data seed {cfg['data_seed']}; {cfg['n_train']} training disks, "
        f"radii uniform in [{cfg['r_min']}, {cfg['r_max']}] px, Gaussian blur σ = {cfg['sigma']} px, 64x64; Adam lr "
        f"{cfg['lr']}, batch {cfg['batch_size']} (Table 1: 300; see `aeprobe.studies.disks`). Biased network "
        f"{tr['biased']['epochs']} epochs (final MSE {tr['biased']['final_loss']:.2g}), bias-free "
        f"{tr['bias_free']['epochs']} epochs (final MSE {tr['bias_free']['final_loss']:.3g}). Training took "
        f"{res['train_seconds']:.0f} s summed over the nets, in {res.get('workers', 1)} process(es); wall time, "
        "threads and machine load are in the Run section (other jobs may share the machine).")
    rep.heading("Targets")
    rep.claims(claim_list)
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
    ] + ([["zeroing z: measured / first-order predicted change of the output, bias-free / biased",
           f"{res['code_ablation']['biasfree']['ratio']:.6f} / {res['code_ablation']['biased']['ratio']:.4f}",
           "1 for a homogeneous decoder (Euler); otherwise how curved D is between z and 0"]]
         if res.get("code_ablation") else []))
    if res.get("code_ablation"):
        rep.paragraph(ablation_reading(res["code_ablation"]))
    rep.heading("Figures")
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
               f"seed {cfg['seed']}: R² on area {res['code_area_r2']:.3f} vs radius {res['code_radius_r2']:.3f}, best "
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
               f"the decoded mass grows at {mono:.0%} of the steps" + (": disks grow with z." if mono == 1.0 else "."))
    rep.figure(fr["attribution"], "Integrated gradients of z (biased encoder) and attribution per unit input",
               f"{res['attribution_inside_fraction_biased']:.3f} of the attribution lies inside the disks (near 1 by "
               f"construction with a zero baseline); the weight per unit input varies with CV "
               f"{res['attribution_density_cv_biased']:.2f} over the disk (0 = every pixel counts the same, "
               "a pure area integral).")
    rep.figure(fr["loss"], "Training loss",
               f"final MSE with biases {tr['biased']['final_loss']:.3g}, without {tr['bias_free']['final_loss']:.3g} "
               f"(rank-1 floor {res['rank1_floor_mse']:.3g}).")
    if "limited_radius" in res:
        limited_section(rep, res["limited_radius"], fr)
    if "hole" in res:
        hole_section(rep, res["hole"], fr)
    return rep


def limited_section(rep: Report, lr_: dict, fr: dict) -> None:
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


def epochs_cell(s: dict) -> str:
    """Epochs a net trained, marked when it stopped early because it was stuck at the constant output."""
    run, total = s.get("epochs_run"), s.get("epochs")
    if run is None:
        return "" if total is None else str(total)
    return f"{run} of {total} (stuck)" if s.get("stopped_stuck") else str(run)


def hole_section(rep: Report, h: dict, fr: dict) -> None:
    regs, sweep = h["regularizers"], h["psi3_sweep"]
    lo, hi = h["hole"]
    rep.heading(f"Generalisation: the hole {lo:g}-{hi:g} and regularisers (Fig. 6, 7, 8)")
    rep.paragraph("λ is in our units: the data term is the per-pixel *mean* squared error (a per-image sum, as the "
                  "paper's Eq. 1 writes, is 4096 times larger, so λ·4096 is the same weight against a per-image sum; "
                  "the paper does not state its normalisation nor the λ of Fig. 7). 'reg share' = regulariser / "
                  "(data + regulariser) in the last epoch; 'monotone' = fraction of steps over the hole (and one "
                  "observed radius each side) where z moves in its majority direction; 'collapsed' = MSE on observed "
                  f"radii above half that of a constant output ({h['mean_image_mse']:.3g}); 'epochs' = epochs trained "
                  "('stuck': the data MSE stayed at >= 99% of the constant output's for the last epochs, so training "
                  "stopped there).")
    rows = []
    for kind, v in regs.items():
        s = v["seeds"][0]
        rows.append([kind, v["lam"], s["final_data_loss"], s["reg_share"], v["mse_hole_mean"], v["mse_observed_mean"],
                     v["hole_to_observed_ratio"], s["code_monotone_fraction_hole"], s["collapsed"], epochs_cell(s),
                     len(v["seeds"])])
    rep.table(["regulariser", "λ", "final data MSE", "reg share", "MSE in hole", "MSE observed", "hole / observed",
               "monotone", "collapsed", "epochs", "seeds"], rows)
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
                   "monotone", "collapsed", "epochs"],
                  [[s["lam"], s["final_data_loss"], s["reg_share"], s["mse_hole"], s["mse_observed"],
                    s["hole_to_observed_ratio"], s["code_monotone_fraction_hole"], s["collapsed"], epochs_cell(s)]
                   for s in sweep])
        ok = [s for s in sweep if not s["collapsed"]]
        failed = [s["lam"] for s in sweep if s["collapsed"]]
        txt = ""
        if ok:
            b = min(ok, key=lambda s: s["hole_to_observed_ratio"])
            txt = (f"smallest hole/observed ratio {b['hole_to_observed_ratio']:.2f} at λ = {b['lam']:g} (MSE in hole "
                   f"{b['mse_hole']:.3g}, observed {b['mse_observed']:.3g})")
        if failed:
            txt += ("; " if txt else "") + "training collapses to a constant output at λ = " + ", ".join(
                f"{s['lam']:g}" + stuck_note(s) for s in sweep if s["collapsed"])
        rep.figure(fr["psi3_sweep"], "psi3 weight sweep (Fig. 8): error per radius and in/out of the hole against λ",
                   txt + ".")
