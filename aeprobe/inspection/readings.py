"""The one-line readings of ``aeprobe inspect`` and its report, computed from ``results`` alone.

Every sentence here is a function of the numbers in ``results.json`` (so a saved report can be
rebuilt with :func:`build_report`); thresholds that turn a number into words are named constants.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from aeprobe.report import AtMost, Claim, Report, run_sentence

__all__ = ["READINGS", "CAPTIONS", "reading", "build_report", "claims", "COPY_TOL", "LINEAR_TOL", "ALIAS_EXCESS",
           "HOMOGENEITY_TOL", "PATH_EXCESS"]

#: unexplained OOD fraction and ||J - I||^2/d below which the model "copies" (IdentityReport.looks_like_copy)
COPY_TOL = 0.1
#: |measured / predicted - 1| below which a decoder is "linear" for single-unit removals
LINEAR_TOL = 0.1
#: Nyquist fraction of decoded outputs over that of the data above which the decoder "adds" period-2 structure
ALIAS_EXCESS = 2.0
#: interior frames of an interpolation this many times farther from the data than its end points "leave" it
PATH_EXCESS = 1.5
#: relative deviation from D(lz) = l D(z) counted as "holds" (float32 rounding is ~1e-7)
HOMOGENEITY_TOL = 1e-4


def _g(v: Any, spec: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, spec)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def _architecture(s: dict) -> str:
    kinds: dict[str, int] = {}
    for layer in s["layers"]:
        kinds[layer["type"]] = kinds.get(layer["type"], 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in kinds.items()) or "no conv / linear layers"
    split = ""
    if s.get("encoder_params") is not None and s.get("decoder_params") is not None:
        split = f" (encoder {s['encoder_params']:,}, decoder {s['decoder_params']:,})"
    code = ""
    if s.get("code_units"):
        shape = "x".join(map(str, s["code_shape"]))
        code = (f"; the code has {s['code_units']:,} units ({shape}) for {int(np.prod(s['input_shape'])):,} "
                f"input values (compression {_g(s['compression'])}x)")
    ups = [l for l in s["layers"] if l["part"] == "decoder" and l["kind"] == "conv_transpose" and l["stride"]
           and max(l["stride"]) > 1]
    up = f"; the decoder upsamples with {len(ups)} strided transposed convolution(s)" if ups else ""
    return f"{parts}, {s['total_params']:,} parameters{split}{code}{up}."


def _code(s: dict) -> str:
    m = s["code_size"]
    return (f"{s['dead_count']} of {m} units are dead (never |z| > {_g(s['threshold'])} on {s['n']} images); "
            f"L0 = {_g(s['l0'])} active units per image; the reconstruction explains {_pct(s['fve'])} of the images' "
            f"variance (FVE {_g(s['fve'])}); the code's covariance spreads over about {_g(s['effective_dim'])} of "
            f"{m} directions (effective dimension).")


def _identity(s: dict) -> str:
    un = s["ood_unexplained"]
    sets = ", ".join(f"{k.replace('_', ' ')} {_pct(v)}" for k, v in un.items())
    verdict = ("It behaves like a copy machine" if s["looks_like_copy"] else "It does not copy")
    return (f"{verdict} (tolerance {_g(COPY_TOL)}): out-of-distribution inputs are left unexplained by {sets} "
            f"(a copier: 0%, a constant map: 100%); ||J - I||²/d = {_g(s['jacobian_distance'])} (identity 0, constant "
            f"map 1), tr(J)/d = {_g(s['jacobian_trace'])} on {s['jacobian_points']} points.")


def _overfitting(s: dict) -> str:
    gap, test = s["gap"], s["test_error"]
    if gap is None or gap <= 0:
        return (f"No generalisation gap: held-out MSE {_g(test)} vs training MSE {_g(s['train_error'])}, so there is "
                "nothing to split between encoder and decoder.")
    enc, dec = s.get("encoder_gap_matched"), s.get("decoder_gap_matched")
    short = s.get("refit_shortfall")
    main = ("the decoder" if (dec or 0) > (enc or 0) else "the encoder") if enc is not None else "n/a"
    rel = "small" if short is not None and abs(short) < 0.5 * gap else "large"
    return (f"Held-out MSE exceeds training MSE by {_g(gap)} ({_pct(gap / test if test else None)} of the held-out "
            f"error); budget-matched split: encoder {_g(enc)}, decoder {_g(dec)}, so most of the gap is in {main}. "
            f"The refit decoder's own shortfall ({_g(short)}) is {rel} against the gap"
            + (", so the split is reliable." if rel == "small" else
               ": the matched encoder part is under-estimated (more held-out images or refit epochs shrink it)."))


def _homogeneity(s: dict) -> str:
    err = s["max_rel_error"]
    how = "with the biases zeroed" if s["has_biases"] else "(the decoder has no biases)"
    holds = err is not None and err <= HOMOGENEITY_TOL
    met = s["conditions_met"]
    if met is True:
        end = ("as Prop. 1 says it must." if holds else "which contradicts Prop. 1: look for an op the check missed.")
    elif met is False:
        end = ("although Prop. 1 need not hold here (" + ", ".join(s["conditions_breaking"]) + ")." if holds else
               "as expected: Prop. 1 need not hold (" + ", ".join(s["conditions_breaking"]) + ").")
    else:
        end = ("(" + ", ".join(s["conditions_unclassified"]) + " not classified, so the theory does not decide).")
    return (f"{how.capitalize() if how[0] != '(' else 'As trained ' + how}, D(λz) deviates from λD(z) by at most "
            f"{_g(err)} (tolerance {_g(HOMOGENEITY_TOL)}; as trained: {_g(s['max_rel_error_biases'])}) over "
            f"{s['n_codes']} data codes and λ in [{_g(min(s['lambdas']))}, {_g(max(s['lambdas']))}], " + end)


def _checkerboard(s: dict) -> str:
    rnd, rec = s["random"]["nyquist_fraction"], s["reconstructions"]["nyquist_fraction"]
    data = (s.get("data_images") or {}).get("nyquist_fraction")
    base = data if data else None
    ratio = rec / base if base else None
    words = ("the decoder adds period-2 (checkerboard) structure" if ratio is not None and ratio > ALIAS_EXCESS
             else "no excess period-2 structure in the reconstructions" if ratio is not None
             else "no data baseline to compare with")
    const = ""
    if s["spatial_code"]:
        const = (f"; spatially constant codes decode to a period-2 pattern of rms {_g(s['constant']['alias_rms'])} "
                 "(0 for a resize + convolution decoder)")
    return (f"Reconstructions have a Nyquist fraction of {_g(rec)} (share of their non-constant energy at the "
            f"period-2 frequencies) against {_g(data)} for the data (ratio {_g(ratio)}): {words}; decoded random "
            f"codes {_g(rnd)}{const}"
            + (f" (borders of {s['crop']} px cropped)." if s["crop"] else "."))


def _attribution(s: dict) -> str:
    units = s["units"]
    rel = [u["rel_delta"] for u in units if u["rel_delta"] is not None]
    top = float(np.mean([u["top10_share"] for u in units]))
    return (f"Integrated gradients of units {', '.join(str(u['unit']) for u in units)} (largest code spread) add up "
            f"to the change of the unit from the zero baseline within {_pct(max(rel)) if rel else 'n/a'} "
            f"(completeness); the top 10% of the input values carry {_pct(top)} of the absolute attribution on "
            f"average (10% would be spread evenly, 100% concentrated).")


def _ablation(s: dict) -> str:
    med, lo, hi = s["ratio_median"], s["ratio_min"], s["ratio_max"]
    if med is None:
        return "No unit had a non-zero predicted effect: the ratio is undefined."
    linear = max(abs(lo - 1), abs(hi - 1)) < LINEAR_TOL
    k = int(np.argmax(s["loss_change"]))
    return (f"Zeroing one unit changes the output by {_g(med)} times its first-order prediction (median; range "
            f"{_g(lo)}-{_g(hi)} over {len(s['units'])} units): "
            + ("the decoder acts linearly on single-unit removals" if linear
               else f"the decoder is non-linear at this scale (1 = linear, tolerance {_g(LINEAR_TOL)})")
            + f"; unit {s['units'][k]} matters most (MSE +{_g(s['loss_change'][k])} over the base {_g(s['base_loss'])}).")


def _interpolation(s: dict) -> str:
    if s.get("nn_mse_decoded") is None:
        return f"{len(s['pairs'])} pairs decoded along straight code lines (no nearest-neighbour distance: shapes differ)."
    d, b = s["nn_mse_decoded"], s["nn_mse_blend"]
    rd = d / s["nn_mse_decoded_ends"] if s["nn_mse_decoded_ends"] else None
    rb = b / s["nn_mse_blend_ends"] if s["nn_mse_blend_ends"] else None
    word = ("stays as close to the data as its end points" if rd is not None and rd <= PATH_EXCESS
            else "leaves the data between its end points")
    return (f"Interior frames decoded along straight code lines lie at MSE {_g(d)} from their nearest training "
            f"image, {_g(rd)} times the distance of the end points' reconstructions: the code path {word} "
            f"(tolerance {_g(PATH_EXCESS)}x); pixel blends of the same pairs: {_g(b)}, {_g(rb)} times their end "
            f"points ({len(s['pairs'])} pairs, {s['steps']} steps).")


def _probe(s: dict) -> str:
    base = (f"A linear probe reads the labels from the codes with accuracy {_g(s['acc_codes'])} against "
            f"{_g(s['acc_pixels'])} from the pixels (chance {_g(s['chance'])}, {s['n']} images)")
    if s.get("acc_unseen") is not None:
        base += (f"; on codes of held-out images {_g(s['acc_unseen'])} (seen {_g(s['acc_seen'])}, gap "
                 f"{_g(s['seen_unseen_gap'])})")
    return base + "."


#: what each section's figure shows
CAPTIONS = {
    "architecture": "Parameters per conv / linear layer (blue: encoder, orange: decoder)",
    "code": "Unit frequencies (log-density histogram), code covariance spectrum, frequency per unit",
    "identity": "Reconstruction error on the data and on out-of-distribution inputs; their unexplained fraction",
    "overfitting": "Errors of the encoder / decoder split, and the parts of the held-out minus training gap",
    "homogeneity": "Largest relative deviation from D(λz) = λD(z) per scale λ",
    "checkerboard": "Decoded constant codes, decoded random codes, data images and their reconstructions",
    "attribution": "Inputs and the integrated-gradients maps of the strongest code units (red raises the unit)",
    "ablation": "Measured vs first-order predicted output change when zeroing each unit; MSE change per unit",
    "interpolation": "Decodings along straight code lines (codes) and pixel blends (pixels) between image pairs",
    "probe": "Linear-probe accuracy on the codes and on the pixels",
}

READINGS: dict[str, Callable[[dict], str]] = {
    "architecture": _architecture, "code": _code, "identity": _identity, "overfitting": _overfitting,
    "homogeneity": _homogeneity, "checkerboard": _checkerboard, "attribution": _attribution, "ablation": _ablation,
    "interpolation": _interpolation, "probe": _probe,
}


def reading(key: str, section: dict) -> str:
    """The one-line reading of a section (its reason when it does not apply, its error when it failed)."""
    status = section.get("status")
    if status == "not applicable":
        return f"Does not apply: {section['why']}"
    if status == "failed":
        return f"Failed: {section['error']}"
    return READINGS[key](section)


def claims(results: dict) -> list[Claim]:
    """The theory checks the report can make: Prop. 1 when its conditions hold for this decoder."""
    h = results.get("homogeneity") or {}
    out = []
    if h.get("status") == "done" and h.get("conditions_met") is True:
        out.append(Claim("homogeneity", "bias-free decoder of linear maps and ReLU-like activations is positively "
                         "homogeneous, D(λz) = λD(z) (Newson et al., Prop. 1)", measured=h["max_rel_error"],
                         target=AtMost(HOMOGENEITY_TOL), evidence=h["conditions_text"]))
    return out


def _arch_table(rep: Report, s: dict) -> None:
    rows = []
    for l in s["layers"][:60]:
        geo = ("k" + "x".join(map(str, l["kernel"])) + " s" + "x".join(map(str, l["stride"]))) if l["kernel"] else ""
        rows.append([f"`{l['name']}`", l["part"] or "-", l["type"], "x".join(map(str, l["weight_shape"])), geo,
                     "yes" if l["bias"] else "no", f"{l['params']:,}"])
    rep.table(["layer", "part", "type", "weight", "kernel / stride", "bias", "parameters"], rows)
    if len(s["layers"]) > 60:
        rep.paragraph(f"({len(s['layers']) - 60} more layers in results.json.)")
    if s["other_modules"]:
        rep.paragraph("Other modules: " + ", ".join(f"{n} x{k}" for k, n in s["other_modules"].items()) + ".")


def build_report(results: dict) -> Report:
    """The report of an inspection from its results (as saved in ``results.json``)."""
    from aeprobe.inspection.sections import SECTION_TITLES

    model = results["model"]
    rep = Report(f"aeprobe inspect: {model['name']}")
    rep.paragraph(f"Mode `{results['mode']}`. How the model was read (`aeprobe.autoencoder` view):")
    rep.bullets([f"{part}: `{how}`" for part, how in (ln.strip().split(None, 1) for ln in model["view"][1:])])
    data = results["data"]
    rep.paragraph(f"Data: {data['train']}" + (f"; held-out: {data['test']}" if data.get("test") else "; no held-out images")
                  + (f"; labels: {data['labels']}" if data.get("labels") else "") + ".")
    rep.heading("Summary")
    rep.table(["section", "status", "reading"],
              [[SECTION_TITLES[k], results[k]["status"], reading(k, results[k])] for k in SECTION_TITLES])
    cl = claims(results)
    if cl:
        rep.heading("Checked against theory")
        rep.claims(cl, evidence=True)
    for key, title in SECTION_TITLES.items():
        s = results[key]
        rep.heading(title)
        if s["status"] != "done":
            rep.paragraph(reading(key, s))
            continue
        rep.paragraph(f"Probe: `{s['probe']}`. Data: {s['data']}. ({_g(s['seconds'], '.1f')} s)")
        if key == "architecture":
            _arch_table(rep, s)
        if key == "homogeneity":
            rep.paragraph(f"Theory: {s['theory']} Here: {s['conditions_text']}.")
        if s.get("figure"):
            rep.figure(s["figure"], CAPTIONS[key], reading(key, s))
        else:
            rep.paragraph(reading(key, s))
    if "run" in results:
        rep.heading("Run")
        rep.paragraph(run_sentence(results["run"]))
    return rep
