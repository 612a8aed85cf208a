"""Claims, results table, figure readings and report of the zoo study, computed from its results (as
saved in ``results.json``)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from aeprobe.report import Claim, Report, Rule, Verdict

__all__ = ["claims", "build_report", "headline", "results_table", "judge_best", "figure_readings",
           "mechanistic_readings", "code_reading", "upsampling_readings", "recon_clause", "progressive_reading", "COLUMNS"]


def _fmt(v, f=".4g") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, f)


def figure_readings(results: dict) -> list[tuple[str, str, str]]:
    """(figure, caption, one honest sentence computed from the numbers)."""
    cfg, kinds, spread = results["config"], results["kinds"], results["spread"]
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
                    "Mean MSE of a sample to its nearest training image: " + ", ".join(
                        f"{k} {kinds[k]['sample_nn_mse']:.3g}" for k in so) + f" (best {so[0]}, worst {so[-1]})."))
    io = _rank(kinds, "interp_nn_mse", False)
    out.append(("interpolation", "Latent interpolation (first pair shown)",
                f"Interior frames are most data-like for {io[0]} (NN-MSE {kinds[io[0]]['interp_nn_mse']:.3g}) and "
                f"least for {io[-1]} ({kinds[io[-1]]['interp_nn_mse']:.3g}), averaged over {cfg['n_pairs']} pairs."))
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
    out.append(("anomaly_roc", f"ROC of class {cfg['heldout']} against the rest",
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
                    + ", ".join(f"{k} {v['probe']['constant']['alias_rms']:.2g}" for k, v in u.items()) + "."))
    return out


def code_reading(results: dict) -> str | None:
    """One sentence on the code statistics of every kind (dead units, L0, FVE, effective dimension)."""
    kinds = results["kinds"]
    names = [k for k in kinds if kinds[k].get("code")]
    if not names:
        return None
    c = {k: kinds[k]["code"] for k in names}
    m = c[names[0]]["code_size"]
    dead = [k for k in names if c[k]["dead_units"] > 0]
    eff = sorted(names, key=lambda k: c[k]["effective_dim"])
    fve = sorted(names, key=lambda k: c[k]["fve"])
    return (f"Codes ({m} units; a unit is active on an image when |z| > {c[names[0]]['threshold']:g}, "
            f"`aeprobe.probes.code.code_stats` on the test images): "
            + (f"{len(dead)} of {len(names)} kinds have dead units ("
               + ", ".join(f"{k} {c[k]['dead_units']}" for k in dead) + ")" if dead else "no kind has a dead unit")
            + f"; L0 ranges from {min(c[k]['l0'] for k in names):.3g} to {max(c[k]['l0'] for k in names):.3g}; the "
            f"effective dimension (participation ratio of the code covariance) from {c[eff[0]]['effective_dim']:.3g} "
            f"({eff[0]}) to {c[eff[-1]]['effective_dim']:.3g} ({eff[-1]}) of {m}; the fraction of the test images' "
            f"variance the reconstructions explain from {c[fve[0]]['fve']:.3f} ({fve[0]}) to {c[fve[-1]]['fve']:.3f} "
            f"({fve[-1]}).")


def mechanistic_readings(results: dict) -> list[str]:
    kinds = results["kinds"]
    names = list(kinds)
    jd = {k: kinds[k]["identity"]["jacobian_distance"] for k in names}
    copy_like = [k for k in names if kinds[k]["identity_looks_like_copy"]]
    s1 = ("Identity: no kind behaves like a copy machine (tolerance 0.1); " if not copy_like else
          f"Identity: {', '.join(copy_like)} look(s) like a copy (tolerance 0.1); ") + \
        f"||J-I||_F^2/d ranges from {min(jd.values()):.3f} ({min(jd, key=jd.get)}) to {max(jd.values()):.3f} " \
        f"({max(jd, key=jd.get)}); uniform noise is left {min(kinds[k]['identity']['ood_unexplained']['uniform_noise'] for k in names):.2f}-" \
        f"{max(kinds[k]['identity']['ood_unexplained']['uniform_noise'] for k in names):.2f} unexplained."
    enc = {k: kinds[k]["overfitting"]["encoder_gap_matched"] for k in names}
    dec = {k: kinds[k]["overfitting"]["decoder_gap_matched"] for k in names}
    gaps = {k: kinds[k]["overfitting"]["gap"] for k in names}
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
    const = {k: v["probe"]["constant"]["alias_rms"] for k, v in u.items()}
    rand = {k: v["probe"]["random"]["nyquist_fraction"] for k, v in u.items()}
    flat = [k for k, v in const.items() if v < 1e-6]
    worst_c = max(const, key=const.get)
    worst_r, best_r = max(rand, key=rand.get), min(rand, key=rand.get)
    s = (f"On constant codes the interior output is constant (alias rms < 1e-6) for {', '.join(flat) if flat else 'none'}; "
         f"the largest period-2 amplitude is {worst_c}'s ({const[worst_c]:.2g}). On random codes the Nyquist fraction "
         f"is highest for {worst_r} ({rand[worst_r]:.2g}) and lowest for {best_r} ({rand[best_r]:.2g}).")
    if "transposed k3" in u and "nearest" in u:
        t, n = u["transposed k3"]["probe"], u["nearest"]["probe"]
        tc, nc, tr, nr = t["constant"]["alias_rms"], n["constant"]["alias_rms"], t["random"]["nyquist_fraction"], \
            n["random"]["nyquist_fraction"]
        ratio = tr / nr if nr > 0 else float("inf")
        verdict = "worse" if (tc > nc and ratio > 1) else "not worse"
        s2 = (f"Transposed k3 (kernel not divisible by the stride) scores {verdict} than nearest resize + conv: "
              f"constant-code alias rms {tc:.2g} vs {nc:.2g}, random-code Nyquist "
              f"fraction {ratio:.3g}x nearest's. Test MSE: {u['transposed k3']['test_mse']:.3g} vs "
              f"{u['nearest']['test_mse']:.3g}; on the reconstructions of real images the fractions are "
              f"{u['transposed k3']['recon']['nyquist_fraction']:.2g} vs {u['nearest']['recon']['nyquist_fraction']:.2g} "
              f"(test images themselves: {ups['data']['nyquist_fraction']:.2g}). " + recon_clause(ups))
        return [s, s2]
    return [s]


def recon_clause(ups: dict) -> str:
    """Does the artifact survive on real images? Compare the reconstructions' Nyquist fraction with
    the test images' own and with the random-code one (computed, not asserted)."""
    u, data = ups["kinds"], ups["data"]["nyquist_fraction"]
    excess = {k: v["recon"]["nyquist_fraction"] / data for k, v in u.items() if data > 0}
    if not excess:
        return ""
    high = [k for k, r in excess.items() if r > 2]
    if not high:
        return (f"On real images every decoder's reconstructions stay within 2x of the test images' own period-2 "
                f"energy (ratios {min(excess.values()):.2g}-{max(excess.values()):.2g}): training on data suppresses "
                "the artifact where the data are, and it shows only off the data (constant-code alias rms up to "
                f"{max(v['probe']['constant']['alias_rms'] for v in u.values()):.2g}).")
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


def _rank(kinds: dict, metric: str, higher_better: bool) -> list[str]:
    names = [k for k in kinds if kinds[k].get(metric) is not None]
    return sorted(names, key=lambda k: kinds[k][metric], reverse=higher_better)


def _noise_note(gap: float, sd: float | None) -> str:
    if sd is None or not math.isfinite(sd) or sd == 0:
        return ""
    r = abs(gap) / sd
    return " (within 2 sd of the seed noise)" if r < 2 else f" (gap {r:.1f} sd of the seed noise)" if r < 10 else \
        f" (gap {r:.0f} sd of the seed noise)"


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
    ("dead units", ("code", "dead_units"), ".3g"),
    ("L0", ("code", "l0"), ".3g"),
    ("FVE", ("code", "fve"), ".3f"),
    ("eff. dim", ("code", "effective_dim"), ".3g"),
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


def results_table(kinds: dict) -> tuple[list[str], list[list]]:
    """The results table (header, one row per kind), from records or their JSON form."""
    header = [c[0] for c in COLUMNS]
    rows = [[k] + [_get(rec, path) for _, path, _ in COLUMNS[1:]] for k, rec in kinds.items()]
    return header, rows


def judge_best(values: dict[str, float], sd: float | None, kind: str, higher_first: bool,
               what: str) -> tuple[str, str]:
    """Verdict on "``kind`` comes first when the kinds are ordered by their ``values``" (``higher_first``:
    descending order), with the gap in units of the seed noise ``sd``; ``what`` names the ordering for
    the evidence text (e.g. "highest AUROC"). Returns (verdict, evidence)."""
    if kind not in values:
        return "not testable", f"{kind} was not run"
    order = sorted(values, key=values.get, reverse=higher_first)
    v = values[kind]
    if order[0] == kind:
        second = order[1] if len(order) > 1 else None
        if second is None:
            return "agrees", f"{kind} is the only kind measured"
        return ("agrees" + _noise_note(v - values[second], sd),
                f"{kind} has the {what} ({v:.4g}); next is {second} ({values[second]:.4g})")
    first = order[0]
    return ("disagrees" + _noise_note(v - values[first], sd),
            f"{kind} ranks {order.index(kind) + 1} of {len(order)} by {what} ({v:.4g}); first is {first} "
            f"({values[first]:.4g})")


def _ordered(m: dict) -> str:
    b, sd = m["bce"], m["sd"]
    ok = b["beta_vae_loose"] < b["vae"] < b["beta_vae_strict"]
    gaps = min(b["vae"] - b["beta_vae_loose"], b["beta_vae_strict"] - b["vae"])
    return ("agrees" if ok else "disagrees") + (_noise_note(gaps, sd) if ok else "")


def _larger(m: dict) -> str:
    """"a > b" judged with the seed noise ``sd``."""
    return ("agrees" if m["a"] > m["b"] else "disagrees") + _noise_note(m["a"] - m["b"], m["sd"])


def claims(results: dict[str, Any]) -> list[Claim]:
    """The article's findings (seed 004, MNIST) checked against this run's numbers."""
    cfg, kinds, spread = results["config"], results["kinds"], results["spread"]
    sd = spread.get("sd", {})
    out: list[Claim] = []

    def values(metric: str, among=None) -> dict[str, float]:
        return {k: kinds[k][metric] for k in (among or kinds) if kinds[k].get(metric) is not None}

    def best(cid: str, text: str, kind: str, metric: str, higher_first: bool, what: str, noise=True, among=None):
        m = dict(values=values(metric, among), sd=sd.get(metric) if noise else None)
        label, ev = judge_best(m["values"], m["sd"], kind, higher_first, what)
        rule = Rule(f"{kind} has the {what}",
                    lambda x, k=kind, h=higher_first, w=what: Verdict.worded(judge_best(x["values"], x["sd"], k, h, w)[0]))
        out.append(Claim(cid, text, m, rule, shown=ev.split(";")[0], evidence=ev))

    best("shallow_worst_recon", "The shallow AE reconstructs worst (article: BCE 123 vs <= 88 for the others)",
         "shallow", "test_bce", True, "highest test BCE")
    if all(k in kinds for k in ("vae", "beta_vae_strict", "beta_vae_loose")):
        m = dict(bce={k: kinds[k]["test_bce"] for k in ("beta_vae_loose", "vae", "beta_vae_strict")},
                 sd=sd.get("test_bce"))
        b = m["bce"]
        out.append(Claim("beta_orders_recon", "A larger beta gives a worse reconstruction: loose < VAE < strict in BCE "
                                              "(article: 69.5 < 76.1 < 86.1)",
                         m, Rule("loose < VAE < strict in test BCE", lambda x: Verdict.worded(_ordered(x))),
                         shown=f"BCE loose {b['beta_vae_loose']:.4g}, VAE {b['vae']:.4g}, strict "
                               f"{b['beta_vae_strict']:.4g}"))
    if "stacked" in kinds and "vanilla" in kinds:
        m = dict(a=kinds["stacked"]["test_bce"], b=kinds["vanilla"]["test_bce"], sd=sd.get("test_bce"))
        out.append(Claim("stacked_worse_than_vanilla", "Greedy layer-wise training (stacked) reconstructs worse than "
                                                       "end-to-end (vanilla) (article: 87.9 vs 63.9)",
                         m, Rule("stacked BCE > vanilla BCE", lambda x: Verdict.worded(_larger(x))),
                         shown=f"BCE stacked {m['a']:.4g}, vanilla {m['b']:.4g}"))
    samplers = [k for k in kinds if kinds[k].get("sample_nn_mse") is not None]
    if "beta_vae_strict" in samplers:
        best("strict_samples_best", "The strict beta-VAE gives the most data-like unconditional samples (article: "
                                    "visual judgement; here: mean MSE of a sample to its nearest training image)",
             "beta_vae_strict", "sample_nn_mse", False, "lowest nearest-training-image MSE of its samples",
             noise=False, among=samplers)
    if "vq" in samplers:
        v = values("sample_nn_mse", samplers)
        order = sorted(v, key=v.get)
        out.append(Claim("vq_samples_worst", "Uniformly drawn VQ-VAE codes decode to the least data-like samples "
                                             "(article: \"do not resemble MNIST digits at all\")",
                         v, Rule("vq has the highest sample NN-MSE",
                                 lambda x: Verdict.worded("agrees" if max(x, key=x.get) == "vq" else "disagrees")),
                         shown="sample NN-MSE: " + ", ".join(f"{k} {v[k]:.4g}" for k in order)))
    best("denoising_best_probe", "The denoising AE's codes classify best with few labels (article: 0.805)",
         "denoising", "probe_acc", True, "highest few-label probe accuracy")
    best("sparse_worst_probe", "The sparse AE's codes classify worst (article: 0.222, below the baseline)",
         "sparse", "probe_acc", False, "lowest few-label probe accuracy")
    best("shallow_best_anomaly", f"The shallow AE detects the held-out class best (article: AUROC 0.91 for ones, "
                                 f"latent 2; here class {cfg['heldout']})", "shallow", "auroc", True,
         "highest anomaly AUROC")
    if "vae" in kinds and "vanilla" in kinds:
        # "VAE more data-like" = vanilla's NN-MSE larger than the VAE's
        m = dict(a=kinds["vanilla"]["interp_nn_mse"], b=kinds["vae"]["interp_nn_mse"], sd=sd.get("interp_nn_mse"))
        out.append(Claim("vae_interpolates_better", "VAE interpolations look more like digits than vanilla ones "
                                                    "(article: visual; here: MSE of interior frames to the nearest "
                                                    "training image)",
                         m, Rule("VAE interpolation NN-MSE < vanilla's", lambda x: Verdict.worded(_larger(x))),
                         shown=f"interpolation NN-MSE VAE {m['b']:.4g}, vanilla {m['a']:.4g}"))
    return out


def headline(results: dict) -> str:
    cl = results.get("claims", [])
    agree = sum(c["met"] is True for c in cl)
    run = results.get("run", {})
    best = min(results["kinds"], key=lambda k: results["kinds"][k]["test_bce"])
    wall = run.get("wall_seconds")
    return (f"zoo ({results['config']['mode']}): {len(results['kinds'])} kinds; lowest test BCE {best} "
            f"({results['kinds'][best]['test_bce']:.4g}); {agree} of {len(cl)} of the article's findings agree; wall "
            f"{'n/a' if wall is None else f'{wall:.0f}'} s, {results.get('workers', 1)} process(es)")


def build_report(results: dict[str, Any], claim_list: list[Claim]) -> Report:
    cfg, kinds, spread, d = results["config"], results["kinds"], results["spread"], results["data"]
    header, rows = results_table(kinds)
    rep = Report("Autoencoder zoo: the bake-off under aeprobe's probes")
    rep.paragraph(
        f"Mode **{cfg['mode']}**: {d['name']}, {d['n_train']} training / {d['n_test']} test images of shape "
        f"{d['shape']}. Every kind shares one dense backbone (BatchNorm + ReLU hidden layers, sigmoid output, "
        f"BCE summed per image), latent size {cfg['latent']} (anomaly detection: {cfg['latent_anomaly']}, trained "
        f"without class {cfg['heldout']}, {d['n_train_anomaly']} images); {cfg['epochs']} epochs, batch "
        f"{cfg['batch_size']}, Adam lr {cfg['lr']}; stacked = greedy layer-wise, {cfg['epochs']} epochs split over its "
        f"layers, no fine-tuning. Device {results['device']}; jobs in {results.get('workers', 1)} process(es) "
        f"({results.get('backend', 'processes')} backend of aeprobe.sweep"
        + (f"; {results['jobs_reused']} of the jobs read back from an earlier run in the same folder"
           if results.get("jobs_reused") else "") + ").")
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
        f"randomly chosen labelled test images, scored on the other test images, mean of {cfg['probe_repeats']} draws "
        "(`aeprobe.probes.linear.linear_probe`).",
        f"**AUROC**: class {cfg['heldout']} held out of training (latent {cfg['latent_anomaly']}), score = per-image "
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
    rep.claims(claim_list, evidence=True)
    rep.paragraph("The article used MNIST and 60 epochs; a verdict here is about this dataset and budget only.")

    rep.heading("Figures")
    for name, caption, reading in figure_readings(results):
        if name in results["figures"]:
            rep.figure(results["figures"][name], caption, reading)

    rep.heading("Mechanistic probes")
    mrows = []
    for k, r in kinds.items():
        i, o, h = r["identity"], r["overfitting"], r["homogeneity"]
        mrows.append([k, i["in_dist_error"], i["ood_unexplained"].get("uniform_noise"),
                      i["ood_unexplained"].get("shuffled_pixels"), i["jacobian_distance"], i["probe_acc_codes"],
                      i["probe_acc_inputs"], o["gap"], o["encoder_gap_matched"], o["decoder_gap_matched"],
                      h["with_biases"], h["no_biases"], h["no_biases_logits"]])
    rep.table(["kind", "test MSE", "unexpl. noise", "unexpl. shuffled", "||J-I||²/d", "probe codes", "probe pixels",
               "gap", "enc gap (matched)", "dec gap (matched)", "homog. (biases)", "homog. (no biases)",
               "homog. (no biases, logits)"], mrows, floatfmt=".3g")
    for s in mechanistic_readings(results):
        rep.paragraph(s)
    code_line = code_reading(results)
    if code_line:
        rep.paragraph(code_line)

    ups = results.get("upsampling")
    if ups:
        rep.heading("Decoder upsampling and the checkerboard probe (seed 003)")
        urows = []
        for k, v in ups["kinds"].items():
            p = v["probe"]
            urows.append([k, v["seconds"], v["test_mse"], p["constant"]["alias_rms"], p["constant"]["nyquist_fraction"],
                          p["random"]["alias_rms"], p["random"]["nyquist_fraction"], v["recon"]["nyquist_fraction"]])
        urows.append(["(test images)", None, None, None, None, None, None, ups["data"]["nyquist_fraction"]])
        rep.paragraph(
            f"ConvAE (channels {list(cfg['conv_channels'])}, {cfg['conv_latent']} code channels) on the images resized "
            f"to {ups['size']}x{ups['size']}, {cfg['conv_epochs']} epochs, MSE, Adam lr {cfg['conv_lr']}, identical "
            f"seeds; only the decoder's upsampling differs. Checkerboard probe (`aeprobe.probes.checkerboard`) on "
            f"{cfg['cb_codes']} constant and {cfg['cb_codes']} random codes {cfg['cb_scale']}x larger in space than the "
            "data codes, central half of the output only (zero-padding borders excluded).")
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
    return rep
