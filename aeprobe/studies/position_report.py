"""Claims and report of the position study, computed from its results (as saved in ``results.json``)."""
from __future__ import annotations

from typing import Any

from aeprobe.report import AtLeast, Below, Claim, Report, fmt, wall_time_claims

__all__ = ["claims", "build_report", "headline", "QUICK_WALL_SECONDS", "FILTER_COSINE_GOOD"]

#: wall-time goal of a quick run on an idle 2-core machine (benchmarks/demo.py states it in bare epochs)
QUICK_WALL_SECONDS = 120.0
#: an encoder "has" the [1, 2, 1] filter in a layer when the abs cosine exceeds this
FILTER_COSINE_GOOD = 0.95


def _cos(cs) -> str:
    return ", ".join(f"{c:.3f}" for c in cs)


def claims(res: dict[str, Any]) -> list[Claim]:
    out = [
        Claim("filters_biased", "learned encoder filters vs [1,2,1] (biases + leaky ReLU), min abs cos over layers",
              res["filter_cosine_min"], AtLeast(FILTER_COSINE_GOOD), shown=f"{res['filter_cosine_min']:.4f}",
              evidence="paper: 'remarkably well'"),
        Claim("filters_linear", "same, linear bias-free encoder (Prop. 3's network)", min(res["filter_cosine_linear"]),
              AtLeast(FILTER_COSINE_GOOD), shown=f"{min(res['filter_cosine_linear']):.4f}"),
        Claim("onehot_code", "one-hot codes vs 2^L - a: linear R² (biased encoder)", res["onehot_encoding_r2"],
              AtLeast(0.999), shown=f"{res['onehot_encoding_r2']:.5f}"),
        Claim("decoded_peak", "decoded peak vs position, mean abs(argmax - a) in samples", res["decoding_argmax_error"],
              Below(1.0), shown=f"{res['decoding_argmax_error']:.3f}"),
    ]
    return out + wall_time_claims(res, QUICK_WALL_SECONDS)


def headline(res: dict[str, Any]) -> str:
    run = res.get("run", {})
    return (f"position ({res['mode']}): filter cosine per layer {[round(c, 3) for c in res['filter_cosine']]}, linear "
            f"{[round(c, 3) for c in res['filter_cosine_linear']]}; one-hot code R² {res['onehot_encoding_r2']:.4f}; "
            f"decoded peak error {res['decoding_argmax_error']:.3f} samples; wall {fmt(run.get('wall_seconds'), '.0f')} s "
            f"with {run.get('threads')} thread(s), {res.get('workers', 1)} training process(es)")


def build_report(res: dict[str, Any], claim_list: list[Claim]) -> Report:
    cfg, figs = res["config"], res["figures"]
    rep = Report("Newson et al. position: encoding and decoding a Dirac")
    et, dt = res["encoder_training"], res["decoder_training"]
    rep.paragraph(
        f"Mode **{cfg['mode']}**; seeds {list(cfg['seeds'])}, data seed {cfg['data_seed']}; {cfg['n_train']} triangular "
        f"Diracs (Eq. 19) at positions a uniform in [0, {2**cfg['L'] - 1}], length {2**cfg['L']}; L = {cfg['L']} layers "
        f"of depth 1; Adam lr {cfg['lr']}, batch {cfg['batch_size']}. Code z = (2^L − a)/2^L. Encoder (biases, leaky "
        f"ReLU 0.2) {et['epochs']} epochs, final MSE {et['final_loss']:.3g}; linear bias-free encoder final MSE "
        f"{res['encoder_linear']['training']['final_loss']:.3g}; decoder {dt['epochs']} epochs, final MSE "
        f"{dt['final_loss']:.3g}. Training {res['train_seconds']:.0f} s summed over the nets, in "
        f"{res.get('workers', 1)} process(es).")
    rep.heading("Targets")
    rep.claims(claim_list)
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
    good = res["filter_cosine_min"] > FILTER_COSINE_GOOD
    good_lin = min(res["filter_cosine_linear"]) > FILTER_COSINE_GOOD
    rep.figure(figs["filters"], "Learned encoder filters (scaled, sign-aligned) vs [1, 2, 1] (Fig. 9)",
               f"abs cos per layer with biases {_cos(res['filter_cosine'])}, linear {_cos(res['filter_cosine_linear'])}: "
               + {(True, True): "both encoders found the hand-crafted filter in every layer.",
                  (True, False): "the biased encoder found it in every layer, the linear one not in every layer.",
                  (False, True): "the linear encoder found it in every layer, the biased one not in every layer.",
                  (False, False): "neither encoder has [1, 2, 1] (abs cos > 0.95) in every layer at this budget."}[
                   (good, good_lin)])
    r2, sp = res["onehot_encoding_r2"], res["onehot_encoding_spearman"]
    rep.figure(figs["encoding"], "Code of each one-hot vs the closed form c·(2^L − a) (Prop. 3, biased encoder)",
               f"linear R² {r2:.5f}, largest deviation {res['onehot_encoding_max_rel_deviation']:.2g} of the code range: "
               "the code is " + ("the closed form up to scale." if r2 > 0.999 else
                                 "monotone but not the closed form." if abs(sp) > 0.999 else "not monotone."))
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
               "and the decoder (Sect. 5.4) separately, as they are trained above."
               + (f" Its training stopped after {a['training']['epochs_run']} of {a['training']['epochs']} epochs, "
                  f"its loss within 1% of the constant output's for the last "
                  f"{res['config']['ae_stuck_patience']} of them." if a["training"].get("stopped_stuck") else "")
               if stuck else
               f"abs(argmax − a) = {a['decoding_argmax_error']:.2f} samples, filter abs cos {_cos(a['filter_cosine'])}."))
    rep.figure(figs["loss"], "Training losses",
               "; ".join(f"{t['label']}: {t['final_loss']:.2g}" for t in
                         [res["encoder_training"], res["encoder_linear"]["training"], res["decoder_training"]]) + ".")
    return rep
