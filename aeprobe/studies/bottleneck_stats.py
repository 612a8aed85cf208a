"""Statistics and claims of the bottleneck study: Wilcoxon rank-sum tables between levels (paper
Table 1) and the paper's claims, each judged from the numbers by a verdict rule.

Verdict rule for the ordered area claims (:func:`verdict`): *supported* = every pair of levels
differs in the claimed direction with p < 0.05; *contradicted* = some pair differs significantly
in the opposite direction; *partly supported* = some but not all pairs significant in the claimed
direction, none against; *not supported* = no pair significant.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Any

import numpy as np

from aeprobe.report import Claim, Rule, Verdict

__all__ = ["RUN_METRICS", "TEST_METRICS", "comp_label", "first_below", "ranksum_table", "verdict",
           "secondary_verdict", "claims", "p_text", "medians_text", "similarity_claim", "similarity_text"]

RUN_METRICS = ["min_test_error", "min_test_epoch", "first_epoch_below", "final_train_loss", "final_test_loss", "gap",
               "encoder_gap", "decoder_gap", "encoder_gap_matched", "decoder_gap_matched", "refit_shortfall",
               "auroc", "probe_acc_seen", "probe_acc_unseen", "probe_gap", "iteration_drift", "blend_deviation",
               "brightness_share"]
TEST_METRICS = ["min_test_error", "min_test_epoch", "first_epoch_below", "gap", "encoder_gap_matched",
                "decoder_gap_matched", "auroc", "probe_gap", "iteration_drift", "blend_deviation"]
ALPHA = 0.05


def comp_label(c: Fraction) -> str:
    return "1" if c == 1 else f"1/{c.denominator}" if c.numerator == 1 else str(c)


def first_below(losses, threshold: float) -> int | None:
    """1-based epoch of the first loss below ``threshold`` (None if never)."""
    for i, v in enumerate(losses):
        if v < threshold:
            return i + 1
    return None


def p_text(p) -> str:
    return "n/a" if p is None else format(p, ".2g")


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


def verdict(rows: list[dict], direction: str, alpha: float = ALPHA) -> tuple[str, str]:
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
        parts.append(f"{r['a']}->{r['b']}: median {r['median_a']:.4g}->{r['median_b']:.4g}, p={p_text(p)} "
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


def _v(label: str) -> Verdict:
    return Verdict.worded(label)


def secondary_verdict(m: dict[str, Any]) -> str:
    """"The compression matters less than the area": the ranges of the pooled group medians and the
    smallest p-values of the two factors (``m`` = {"area": rows, "compression": rows})."""
    def spread(rows):
        meds = {}
        for r in rows:
            for k in ("a", "b"):
                if r[f"median_{k}"] is not None:
                    meds[r[k]] = r[f"median_{k}"]
        return (max(meds.values()) - min(meds.values())) if meds else float("nan")

    sa, sc = spread(m["area"]), spread(m["compression"])
    pa = min((r["p_value"] for r in m["area"] if r["p_value"] is not None), default=None)
    pc = min((r["p_value"] for r in m["compression"] if r["p_value"] is not None), default=None)
    if not (math.isfinite(sa) and math.isfinite(sc)) or pa is None or pc is None:
        return "not testable"
    if sa > sc and pa < ALPHA and pc >= ALPHA:
        return "supported"
    if sa > sc and pa < ALPHA:
        return "partly supported (area range larger, but some compression pair is significant too)"
    if sa > sc:
        return "not supported (area range larger, but no area pair significant)"
    return "not supported (compression range >= area range)"


def _secondary_evidence(m: dict[str, Any]) -> str:
    def spread(rows):
        meds = {r[k]: r[f"median_{k}"] for r in rows for k in ("a", "b") if r[f"median_{k}"] is not None}
        return (max(meds.values()) - min(meds.values())) if meds else float("nan")

    pa = min((r["p_value"] for r in m["area"] if r["p_value"] is not None), default=None)
    pc = min((r["p_value"] for r in m["compression"] if r["p_value"] is not None), default=None)
    return (f"range of the area medians {spread(m['area']):.4g} vs of the compression medians "
            f"{spread(m['compression']):.4g}; smallest area-pair p={p_text(pa)}, smallest compression-pair "
            f"p={p_text(pc)}")


def medians_text(rows: list[dict]) -> str:
    """``S 0.0414, M 0.0376, L 0.0346 (median)`` from a rank-sum table: each level's pooled median."""
    meds: dict[str, float] = {}
    for r in rows:
        for k in ("a", "b"):
            if r[f"median_{k}"] is not None:
                meds.setdefault(r[k], r[f"median_{k}"])
    return ", ".join(f"{k} {v:.3g}" for k, v in meds.items()) + " (medians)" if meds else "no data"


def _censored_verdict(m: dict[str, Any]) -> str:
    v, _ = verdict(m["rows"], "higher")
    if 2 * m["at_end"] > m["n_runs"]:
        return (f"not testable at this run length (minimum censored in {m['at_end']}/{m['n_runs']} runs; "
                f"uncensored test: {v})")
    return v


def _identity_verdict(m: dict[str, Any]) -> str:
    copies, n = m["copies"], m["n"]
    return "supported" if copies == 0 else ("contradicted" if copies == n else "partly supported")


def _signed_rank_p(d: np.ndarray) -> float | None:
    from scipy.stats import wilcoxon

    return float(wilcoxon(d).pvalue) if d.size >= 2 and np.any(d != 0) else None


def _codes_pixels_verdict(pairs: list) -> str:
    d = np.array([a - b for a, b in pairs])
    p = _signed_rank_p(d)
    if p is not None and p < ALPHA:
        return "supported" if np.median(d) > 0 else "contradicted (pixels significantly better)"
    return f"not supported (codes > pixels in {int((d > 0).sum())}/{len(pairs)}, not significant)"


def _gap_ci(g: np.ndarray) -> tuple[float, float]:
    half = 1.96 * g.std(ddof=1) / np.sqrt(g.size) if g.size > 1 else float("inf")
    return g.mean() - half, g.mean() + half


def _seen_unseen_verdict(gaps: list) -> str:
    lo, hi = _gap_ci(np.array(gaps, float))
    if -0.05 < lo and hi < 0.05:
        return "supported (seen-unseen gap within +-0.05)" + (", although seen codes are significantly better"
                                                             if lo > 0 else "")
    if lo > 0.05 or hi < -0.05:
        return "not supported (seen and unseen differ by more than 0.05)"
    return "inconclusive (confidence interval reaches beyond +-0.05)"


def _where_verdict(m: dict[str, Any]) -> str:
    diff = np.array(m["decoder"]) - np.array(m["encoder"])
    p = _signed_rank_p(diff)
    who = "decoder" if np.median(diff) > 0 else "encoder"
    return f"measured: mostly in the {who}" + ("" if p is not None and p < ALPHA else " (not significant)")


def similarity_text(sim: dict[str, Any], measure: str) -> str:
    """``SVCCA: same area 0.61 vs different area 0.55 (seed replicates 0.66), p=0.01``."""
    t = sim["test"][measure]
    m = t["means"]
    name = {"svcca": "SVCCA", "cka_debiased": "debiased CKA"}[measure]
    if t.get("difference") is None:
        return f"{name}: not testable"
    return (f"{name}: same area {m['same area']:.3f} vs different area and compression "
            f"{m['different area and compression']:.3f} (same compression, other area "
            f"{_fmt_opt(m['same compression'])}; seed replicates {_fmt_opt(m['seed replicates'])}), permutation "
            f"p={p_text(t['p_greater'])}")


def _fmt_opt(v) -> str:
    return "n/a" if v is None else format(v, ".3f")


def similarity_claim(sim: dict[str, Any]) -> Claim:
    """Manakov et al.'s comparison of codes: same bottleneck area vs different areas (SVCCA), judged
    by :func:`aeprobe.studies.bottleneck_similarity.similarity_verdict`; debiased CKA as evidence."""
    from aeprobe.studies.bottleneck_similarity import similarity_verdict

    t, tc = sim["test"]["svcca"], sim["test"]["cka_debiased"]
    kept = sim["kept"]
    cka_v = similarity_verdict(tc).split(" (")[0]
    return Claim(
        "codes_by_area", "Codes of CAEs with the same bottleneck area (other channel counts) are more alike than "
                         "codes of CAEs with different areas (SVCCA, as Manakov et al. compare codes)",
        t, Rule(f"mean SVCCA over same-area pairs > over pairs differing in area (both of other compressions), "
                f"permutation p < {ALPHA} (area labels reassigned among the configurations)",
                lambda m: _v(_similarity_verdict(m))),
        shown=(f"{t['means']['same area']:.3f} vs {t['means']['different area and compression']:.3f}"
               if t.get("difference") is not None else "n/a"),
        evidence=(f"{similarity_text(sim, 'svcca')} ({t['counts']['same area']} / "
                  f"{t['counts']['different area and compression']} pairs, {t['permutations']} relabellings); {similarity_text(sim, 'cka_debiased')}: {cka_v}; "
                  f"codes of {sim['n_inputs']} test images, SVCCA kept {min(kept)}-{max(kept)} principal "
                  f"directions per code (keep {sim['keep']:g}; many directions for few images inflate SVCCA "
                  "evenly, which the permutation test absorbs)"))


def _similarity_verdict(test: dict[str, Any]) -> str:
    from aeprobe.studies.bottleneck_similarity import similarity_verdict

    return similarity_verdict(test)


def claims(results: dict[str, Any]) -> list[Claim]:
    """The paper's claims (and the open question), each judged from the run records and test tables."""
    from scipy.stats import spearmanr

    runs, stats = results["runs"], results["stats"]
    n_runs = len(runs)
    out: list[Claim] = []

    def area_claim(cid: str, text: str, metric: str, direction: str) -> None:
        rows = stats["area"][metric]
        rule = Rule(f"every area pair {direction} in the claimed order, rank-sum p < {ALPHA}",
                    lambda r, d=direction: _v(verdict(r, d)[0]))
        out.append(Claim(cid, text, rows, rule, shown=medians_text(rows), evidence=verdict(rows, direction)[1]))

    def secondary(cid: str, text: str, metric: str) -> None:
        m = {"area": stats["area"][metric], "compression": stats["compression"][metric]}
        out.append(Claim(cid, text, m, Rule("area range > compression range, an area pair p < 0.05, no "
                                            "compression pair", lambda x: _v(secondary_verdict(x))),
                         shown=_secondary_evidence(m).split(";")[0], evidence=_secondary_evidence(m)))

    area_claim("area_generalisation", "Larger bottleneck area gives a lower minimal test error (Sec. 4.1)",
               "min_test_error", "lower")
    secondary("channels_secondary", "The number of channels (compression) matters less than the area for the "
                                    "minimal test error (Sec. 4.1)", "min_test_error")
    area_claim("area_speed", "Larger bottleneck area reaches the training-loss threshold in fewer epochs (Sec. 4.1)",
               "first_epoch_below", "lower")
    secondary("channels_secondary_speed", "Training speed depends on the area, hardly on the number of channels "
                                          "(Sec. 4.1)", "first_epoch_below")
    at_end = sum(r["min_test_epoch"] == len(r["test_loss"]) for r in runs)
    rows = stats["area"]["min_test_epoch"]
    ev = verdict(rows, "higher")[1]
    if at_end:
        ev += (f"; the minimum is at the last epoch in {at_end}/{n_runs} runs (test error still falling: epoch of "
               "the minimum censored at the run length)")
    out.append(Claim("area_overfits_later", "Larger bottleneck area reaches its minimal test error later (Sec. 4.1)",
                     dict(rows=rows, at_end=at_end, n_runs=n_runs),
                     Rule("every area pair later, p < 0.05; not testable when most minima are at the last epoch",
                          lambda m: _v(_censored_verdict(m))), shown=medians_text(rows), evidence=ev))
    area_claim("area_outlier", "Smaller bottleneck area gives a higher outlier AUROC (Sec. 4.4)", "auroc", "lower")

    ids = [r["identity"] for r in runs if r["identity"] is not None]
    if ids:
        copies = sum(bool(r["identity_looks_like_copy"]) for r in runs if r["identity"] is not None)
        te = np.mean([r["min_test_error"] for r in runs if r["identity"] is not None])
        mean = lambda f: np.mean([f(i) for i in ids])  # noqa: E731
        out.append(Claim(
            "no_identity", "Complete CAEs (compression 1) do not learn an identity mapping (Sec. 4.1)",
            dict(copies=copies, n=len(ids)), Rule("no complete model looks like a copy (tol 0.1)",
                                                  lambda m: _v(_identity_verdict(m))),
            shown=f"{copies}/{len(ids)} look like a copy",
            evidence=f"{copies}/{len(ids)} complete models look like a copy (tol 0.1); unexplained fraction of uniform "
                     f"noise {mean(lambda i: i['ood_unexplained']['uniform_noise']):.3g}, of shuffled pixels "
                     f"{mean(lambda i: i['ood_unexplained']['shuffled_pixels']):.3g} (copy: 0, constant output: 1); "
                     f"Jacobian tr(J)/d {mean(lambda i: i['jacobian_trace']):.3g} (copy: 1), ||J||_F^2/d "
                     f"{mean(lambda i: i['jacobian_energy']):.3g} (copy: 1); minimal test MSE {te:.3g} (copy: 0); "
                     f"means over {len(ids)} models"))
        pc = [(i["probe_acc_codes"], i["probe_acc_inputs"]) for i in ids if i["probe_acc_codes"] is not None]
        if pc:
            d = np.array([a - b for a, b in pc])
            out.append(Claim(
                "codes_beat_pixels", "A linear probe on codes of complete CAEs beats one on the raw pixels (Sec. 4.3)",
                pc, Rule("codes > pixels, Wilcoxon signed-rank p < 0.05", lambda m: _v(_codes_pixels_verdict(m))),
                shown=f"codes > pixels in {int((d > 0).sum())}/{len(pc)}",
                evidence=f"codes > pixels in {int((d > 0).sum())}/{len(pc)} complete models; mean accuracy codes "
                         f"{np.mean([a for a, _ in pc]):.3f} vs pixels {np.mean([b for _, b in pc]):.3f}; "
                         f"Wilcoxon signed-rank p={p_text(_signed_rank_p(d))}"))

    pr = [r for r in runs if r["probe_gap"] is not None]
    if pr:
        g = np.array([r["probe_gap"] for r in pr], float)
        lo, hi = _gap_ci(g)
        rg = np.array([r["gap"] for r in pr], float)
        rho, p_rho = spearmanr(rg, g) if g.size > 2 else (float("nan"), None)
        chance = np.mean([r["probe"]["chance"] for r in pr])
        out.append(Claim(
            "probe_seen_unseen", "Linear probes are about as accurate on unseen as on seen codes (Sec. 4.3)",
            [float(v) for v in g], Rule("95% CI of the seen-unseen accuracy gap inside +-0.05",
                                        lambda m: _v(_seen_unseen_verdict(m))),
            shown=f"gap {g.mean():+.3f}, CI [{lo:+.3f}, {hi:+.3f}]",
            evidence=f"mean seen-unseen accuracy gap {g.mean():+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}] over {g.size} "
                     f"models (accuracy seen {np.mean([r['probe_acc_seen'] for r in pr]):.3f}, unseen "
                     f"{np.mean([r['probe_acc_unseen'] for r in pr]):.3f}, chance {chance:.3f}); Spearman correlation "
                     f"of the probe gap with the reconstruction gap rho={rho:.2f}, "
                     f"p={p_text(None if p_rho is None else float(p_rho))}; criterion: the CI lies inside +-0.05"))
    else:
        out.append(Claim("probe_seen_unseen", "Linear probes are about as accurate on unseen as on seen codes (Sec. 4.3)",
                         None, Rule("needs labels", lambda m: Verdict("not testable", None)), shown="n/a",
                         evidence="no labels for this dataset"))

    area_claim("interp_blend", "Larger area: interpolations closer to alpha blending (Sec. 4.4, Fig. 7; qualitative "
                               "in the paper, proxy measured here)", "blend_deviation", "lower")
    area_claim("iteration_dissolves", "Larger area: 100 AE iterations drift further from the image (Sec. 4.4, Fig. 8; "
                                      "qualitative in the paper, proxy measured here)", "iteration_drift", "higher")

    sim = results.get("similarity")
    if sim is not None and "svcca" in sim.get("test", {}):
        out.append(similarity_claim(sim))

    ok = [r for r in runs if r["encoder_gap_matched"] is not None and r["gap"] > 0]
    if ok:
        eg = np.array([r["encoder_gap_matched"] for r in ok])
        dg = np.array([r["decoder_gap_matched"] for r in ok])
        sf = np.array([r["refit_shortfall"] for r in ok])
        gap = np.array([r["gap"] for r in ok])
        diff = dg - eg
        reliable = sf < 0.5 * gap
        if reliable.sum() >= 2:
            rel_txt = (f"; restricted to the {int(reliable.sum())} runs whose refit shortfall is under half their gap: "
                       f"median encoder part {np.median(eg[reliable]):.3g}, decoder part {np.median(dg[reliable]):.3g}, "
                       f"p={p_text(_signed_rank_p(diff[reliable]))}")
        else:
            rel_txt = f"; only {int(reliable.sum())} runs have a refit shortfall under half their gap"
        out.append(Claim(
            "open_question_encoder_vs_decoder", "Open question (Sec. 4.3/5): does overfitting happen mainly in the "
                                                "decoder?",
            dict(encoder=[float(v) for v in eg], decoder=[float(v) for v in dg]),
            Rule("the larger part by median, Wilcoxon signed-rank of decoder - encoder p < 0.05",
                 lambda m: _v(_where_verdict(m))),
            shown=f"median encoder {np.median(eg):.3g}, decoder {np.median(dg):.3g}",
            evidence=f"{len(ok)}/{n_runs} runs with a positive gap (median {np.median(gap):.3g}); median encoder part "
                     f"{np.median(eg):.3g}, decoder part {np.median(dg):.3g} (budget-matched refit; encoder part larger "
                     f"in {int((diff < 0).sum())}/{len(ok)}); Wilcoxon signed-rank of decoder - encoder "
                     f"p={p_text(_signed_rank_p(diff))}; median refit shortfall {np.median(sf):.3g}" + rel_txt))
    return out
