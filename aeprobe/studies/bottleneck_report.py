"""Report of the bottleneck study and the one-line reading of every figure, computed from its results
(as saved in ``results.json``)."""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from aeprobe.report import Claim, Report
from aeprobe.studies.bottleneck_figures import HEATMAPS, cell_matrix
from aeprobe.studies.bottleneck_stats import TEST_METRICS, p_text, similarity_text

__all__ = ["build_report", "headline", "figure_readings", "heatmap_reading", "context_lines", "NORM_NOTE"]

NORM_NOTE = {
    "instance": "The CAE normalises every hidden layer per image (instance norm, as in the paper), which removes "
                "each map's mean and scale (--norm batch or none keeps them).",
    "batch": "The CAE uses batch norm (not the paper's instance norm), which keeps per-image brightness.",
    "none": "The CAE has no normalisation layers (not the paper's instance norm), which keeps per-image brightness.",
}


def _fmt(v, fmt=".3g") -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)


def heatmap_reading(cfg: dict, runs: list[dict], metric: str, higher_is_better: bool, fmt: str) -> str:
    """Best and worst cell, area and compression means, and their ranges, from the cell means."""
    areas, comps = cfg["areas"], cfg["compressions"]
    v, _ = cell_matrix(areas, comps, runs, metric)
    if not np.isfinite(v).any():
        return "no data"
    flat = np.where(np.isfinite(v), v, -np.inf if higher_is_better else np.inf)
    bi = np.unravel_index(np.argmax(flat) if higher_is_better else np.argmin(flat), v.shape)
    flat = np.where(np.isfinite(v), v, np.inf if higher_is_better else -np.inf)
    wi = np.unravel_index(np.argmin(flat) if higher_is_better else np.argmax(flat), v.shape)
    with np.errstate(all="ignore"):
        am, cm = np.nanmean(v, 1), np.nanmean(v, 0)
    order = " < ".join(areas[i] for i in np.argsort(am))
    return (f"best cell {areas[bi[0]]} {comps[bi[1]]} ({_fmt(v[bi], fmt)}), worst {areas[wi[0]]} "
            f"{comps[wi[1]]} ({_fmt(v[wi], fmt)}). Area means over compressions: "
            + ", ".join(f"{a} {_fmt(m, fmt)}" for a, m in zip(areas, am))
            + f" (ascending: {order}); compression means over areas: "
            + ", ".join(f"{c} {_fmt(m, fmt)}" for c, m in zip(comps, cm))
            + f". Range of area means {_fmt(np.nanmax(am) - np.nanmin(am), fmt)} vs range of compression means "
            f"{_fmt(np.nanmax(cm) - np.nanmin(cm), fmt)}.")


def figure_readings(results: dict) -> dict[str, str]:
    """figure key -> one reading computed from the numbers."""
    cfg, runs = results["config"], results["runs"]
    n = len(runs)
    rd: dict[str, str] = {}
    for metric, _, hib, fmt in HEATMAPS:
        if f"heatmap_{metric}" in results["figures"]:
            rd[f"heatmap_{metric}"] = heatmap_reading(cfg, runs, metric, hib, fmt)
    last = sum(r["min_test_epoch"] == len(r["test_loss"]) for r in runs)
    rd["heatmap_min_test_epoch"] += (f" The minimum fell on the last epoch ({cfg['epochs']}) in {last}/{n} runs: "
                                     "there the test error was still falling and the epoch is censored.")
    rd["heatmap_first_epoch_below"] += f" Threshold {results['threshold_note']}."
    shortf = [r["refit_shortfall"] for r in runs if r["refit_shortfall"] is not None]
    if shortf and "heatmap_encoder_gap_matched" in rd:
        rd["heatmap_encoder_gap_matched"] += (f" Refit shortfall (fresh decoder on seen codes minus the original "
                                              f"training MSE): median {np.median(shortf):.3g} over {len(shortf)} "
                                              "runs; see the split table below.")
    parts = []
    for a in cfg["areas"]:
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
                               f"MSE between iterate {cfg['iterations']} and the start image (4 test images, every "
                               "model; larger = drifted further)")]:
        am = {a: np.mean([r[metric] for r in runs if r["area"] == a]) for a in cfg["areas"]}
        rows = results["stats"]["area"][metric]
        rd[key] = (f"Grid: seed {cfg['seeds'][0]}, one image (pair). Number: {what} -- area means "
                   + ", ".join(f"{a} {v:.3g}" for a, v in am.items()) + "; rank-sum p "
                   + ", ".join(f"{r['a']}-{r['b']} {p_text(r['p_value'])}" for r in rows) + ".")
    sim = results.get("similarity")
    if sim is not None and "code_similarity" in results["figures"]:
        from aeprobe.studies.bottleneck_similarity import similarity_verdict

        t = sim["test"]["svcca"]
        rd["code_similarity"] = (f"{similarity_text(sim, 'svcca')}; {similarity_text(sim, 'cka_debiased')}. "
                                 f"Same-area codes are more alike than different-area codes: "
                                 f"{similarity_verdict(t).split(' (')[0]} by SVCCA, "
                                 f"{similarity_verdict(sim['test']['cka_debiased']).split(' (')[0]} by CKA.")
    return rd


def context_lines(results: dict) -> list[str]:
    """Computed context lines: reference errors, brightness share, caveats of this data."""
    cfg, runs, d = results["config"], results["runs"], results["data"]
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
             f"{np.median(bs):.2f} (range {bs.min():.2f}-{bs.max():.2f}) over {len(runs)} runs. " + NORM_NOTE[cfg["norm"]]
             + " A large share means the reconstructions are mainly wrong in brightness."]
    if cfg["data"] == "patches":
        lines.append("Train and test patches are cut at random positions from the same 10 photographs, so an "
                     "unseen patch can overlap seen ones: 'unseen' is weaker here than for separate images, which "
                     "shrinks generalisation gaps and seen/unseen differences.")
    lines.append("Probes, AUROC, identity tests and the overfitting split use each run's final model (after "
                 f"{cfg['epochs']} epochs), not the model at its minimal test error.")
    return lines


def headline(results: dict) -> str:
    cl = results.get("claims", [])
    heads: dict[str, int] = {}
    for c in cl:
        h = c["verdict"].split(" (")[0].split(",")[0]
        heads[h] = heads.get(h, 0) + 1
    run = results.get("run", {})
    return (f"bottleneck ({results['config']['mode']}): {len(results['runs'])} CAEs; claims "
            + ", ".join(f"{k} {v}" for k, v in heads.items())
            + f"; wall {_fmt(run.get('wall_seconds'), '.0f')} s, {results.get('workers', 1)} process(es)")


def build_report(results: dict[str, Any], claim_list: list[Claim]) -> Report:
    cfg, d = results["config"], results["data"]
    rep = Report("CAE bottleneck study (Manakov et al.) at CPU scale")
    rep.paragraph(f"Mode **{cfg['mode']}**: data {d['name']} ({d['n_train']} train / {d['n_test']} test images of shape "
                  f"{d['shape']}), outliers from {d['other']}; areas {', '.join(cfg['areas'])} x compressions "
                  f"{', '.join(cfg['compressions'])} x seeds {list(cfg['seeds'])}; {cfg['epochs']} epochs, batch "
                  f"{cfg['batch_size']}, Adam lr {cfg['lr']}; input {cfg['size']}x{cfg['size']}, depth {cfg['depth']}, "
                  f"residual blocks {cfg['residual']}, {cfg['norm']} norm; grid cells in {results.get('workers', 1)} "
                  f"process(es). Probe labels: {d['labels']}.")
    if cfg.get("notes"):
        rep.bullets(cfg["notes"])
    rep.paragraph("At this scale the paper's effects may be weaker or absent; every figure below is what was "
                  "measured, nothing was tuned to match the paper. p-values are two-sided Wilcoxon rank-sum tests "
                  "(scipy.stats.ranksums) between levels, pooled over the other factor and the seeds, uncorrected "
                  "for multiple comparisons; paired comparisons use the Wilcoxon signed-rank test.")
    rep.heading("Which of the paper's claims the measurements support")
    rep.claims(claim_list, evidence=True)
    groups: dict[str, list[str]] = {}
    for c in claim_list:
        head = c.verdict.label.split(" (")[0].split(",")[0]
        groups.setdefault(head, []).append(re.sub(r" \(Sec\.[^)]*\)", "", c.statement))
    rank = ["supported", "partly supported", "not supported", "contradicted", "inconclusive"]
    heads = sorted(groups, key=lambda h: (rank.index(h) if h in rank else len(rank), h))
    rep.paragraph("In short:")
    rep.bullets([f"**{h}**: " + "; ".join(groups[h]) for h in heads])
    rep.paragraph("Verdict rule for the ordered area claims: *supported* = every pair of areas differs in the "
                  "claimed direction with p < 0.05; *contradicted* = some pair differs significantly in the opposite "
                  "direction; *partly supported* = some but not all pairs significant in the claimed direction, none "
                  "against; *not supported* = no pair significant. Medians are over the pooled runs of a level.")
    rep.heading("Context for reading the numbers")
    rep.bullets(context_lines(results))
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
    rd = figure_readings(results)
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
                          ("iteration", "AE iteration (paper Fig. 8)"),
                          ("code_similarity", "Similarity of the codes of every pair of models: SVCCA and debiased "
                                              "CKA, same area vs different areas")]:
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
                  f"{cfg['jacobian_points']} test points, {cfg['jacobian_directions']} directions each "
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
        orows.append([r["key"], of["train_error"], of["test_error"], of["gap"], of["refit_seen_error"],
                      of["refit_error"], r["encoder_gap_matched"], r["decoder_gap_matched"], r["refit_shortfall"],
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
    return rep
