"""The README's result tables, generated from runs' ``results.json`` -- never pasted by hand.

    python -m aeprobe.studies.readme_tables runs/disks runs/position runs/bottleneck runs/zoo

prints, for each run folder, a line saying when and how the run ran (date, mode, torch threads,
training processes, machine load, wall time) and its table in Markdown, ready to paste into
README.md: the disk and position figures against the paper, the bottleneck claims with their
verdicts, the zoo results table and its claims. ``--out FILE`` writes them to a file instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from aeprobe.report import fmt

__all__ = ["run_line", "disks_table", "position_table", "bottleneck_table", "zoo_table", "tables", "main"]


def _md(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def run_line(res: dict[str, Any]) -> str:
    """When and how the run ran, from ``results["run"]``."""
    run = res.get("run", {})
    load = run.get("load_start")
    load_txt = "n/a" if not load else f"{load[0]:.2f}"
    workers = run.get("workers") or 1
    procs = f", trainings in {workers} single-thread processes" if workers > 1 else ""
    return (f"Measured {str(run.get('started', 'n/a'))[:10]}, {run.get('mode', res.get('mode', '?'))} mode, "
            f"{run.get('threads')} torch thread(s){procs} on {run.get('cpu_count')} CPUs; load average "
            f"{load_txt} at the start; wall {fmt(run.get('wall_seconds'), '.0f')} s "
            f"(`results.json` of `aeprobe run {res.get('study', '?')}`).")


def disks_table(res: dict[str, Any]) -> str:
    seeds = res["code_per_seed"]
    s0, rest = seeds[0], seeds[1:]
    lim = res.get("limited_radius", {}).get("bias_free")
    h = res["hole"]
    regs = h["regularizers"]
    lams = {k: v["lam"] for k, v in regs.items()}
    strong = max(h["psi3_sweep"], key=lambda s: s["lam"]) if h["psi3_sweep"] else None
    rows = [
        [f"corr(learned bias-free profile, Airy), t ≤ R = {res['R_train']:.0f}",
         f"{res['airy_correlation']:.4f} (rel. L2 {res['profile_rel_l2']:.3f})", "≥ 0.99"],
        ["bias-free training MSE vs the rank-1 floor of the data",
         f"{res['biasfree_final_loss']:.4f} vs {res['rank1_floor_mse']:.4f} ({100 * res['biasfree_loss_excess']:+.1f}%)",
         "floor = optimum of Eq. 6"],
        ["rank-1 energy of the bias-free outputs", f"{res['rank1_energy']:.6f}", "1 (Eq. 5)"],
        ["homogeneity error, bias-free / biased decoder",
         f"{res['homogeneity_max_rel_error_biasfree']:.1e} / {res['homogeneity_max_rel_error_biased']:.1e}",
         "0 (float32) / clearly > 0 (Prop. 1)"],
        ["R² of z = C·<f, 1_Br> (bias-free)", f"{res['code_amplitude_r2_biasfree']:.4f}", "1 (Fig. 11)"],
        ["code of the biased net: R² area vs radius, exponent p of z ~ r^p",
         f"seed {s0['seed']}: {s0['area_r2']:.3f} vs {s0['radius_r2']:.3f}, p = {s0['exponent']:.2f}"
         + ("; seeds " + ", ".join(str(s["seed"]) for s in rest) + ": p = "
            + ", ".join(f"{s['exponent']:.2f}" for s in rest) if rest else ""), "\"z represents the area\" (Fig. 3)"],
    ]
    ab = res.get("code_ablation")
    if ab:
        rows.append(["zeroing z: measured / first-order predicted output change, bias-free / biased",
                     f"{ab['biasfree']['ratio']:.6f} / {ab['biased']['ratio']:.3f}", "1 (Euler, homogeneous D) / -"])
    if lim:
        rows.append([f"limited radius R = {res['limited_radius']['R_train']:.0f}: corr with Airy(R), profile energy "
                     "beyond R", f"{lim['airy_correlation']:.4f}, {lim['profile_energy_beyond_R']:.4f}",
                     "support stops at R (App. C)"])
    lo, hi = h["hole"]
    rows.append([f"hole {lo:g}-{hi:g}, MSE in hole / observed: "
                 + ", ".join(k if k == "none" else f"{k} (λ={lams[k]:g})" for k in regs),
                 ", ".join(f"{v['hole_to_observed_ratio']:.2f}" for v in regs.values()), "psi3 best (Fig. 7)"])
    rows.append(["hole, MSE in the hole: none vs psi3", f"{regs['none']['mse_hole_mean']:.4f} vs "
                                                        f"{regs['psi3']['mse_hole_mean']:.4f}", ""])
    if strong is not None:
        rows.append([f"psi3 at λ = {strong['lam']:g}", "collapses to a constant output" if strong["collapsed"]
                     else f"hole / observed {strong['hole_to_observed_ratio']:.2f} (no collapse)",
                     "\"training fails\" for too large λ (Fig. 8)"])
    return _md(["quantity", "measured", "paper / theory"], rows)


def position_table(res: dict[str, Any]) -> str:
    cos = lambda cs: ", ".join(f"{c:.3f}" for c in cs)  # noqa: E731
    rows = [["filter abs cosine to [1, 2, 1] per layer (biases + leaky ReLU)", cos(res["filter_cosine"]),
             "[1, 2, 1] (Fig. 9)"],
            ["same, linear bias-free encoder", cos(res["filter_cosine_linear"]), ""],
            ["one-hot codes vs 2^L − a, linear R²", f"{res['onehot_encoding_r2']:.5f}", "1 (Prop. 3)"],
            ["decoded peak, mean abs(argmax − a)", f"{res['decoding_argmax_error']:.2f} samples", "< 1 (Fig. 10)"]]
    if "onehot_trained_decoder" in res:
        c, o = res["between_samples_continuous"], res["onehot_trained_decoder"]["between_samples"]
        rows.append(["between samples, MSE: trained on continuous positions vs on one-hots only",
                     f"{c['decoding_mse']:.4f} vs {o['decoding_mse']:.4f}", "continuous better (Sect. 5.4)"])
    if "autoencoder" in res:
        a = res["autoencoder"]
        rows.append(["full autoencoder: final MSE vs best constant output",
                     f"{a['training']['final_loss']:.3g} vs {res['constant_output_mse']:.3g}", ""])
    return _md(["quantity", "measured", "paper / theory"], rows)


def _claims_rows(res: dict[str, Any], evidence: bool) -> list[list[str]]:
    return [[c["statement"], c["verdict"]] + ([c["shown"]] if evidence else []) for c in res.get("claims", [])]


def bottleneck_table(res: dict[str, Any]) -> str:
    rows = []
    for k, c in res["configurations"].items():
        rows.append([k, fmt(c["min_test_error"], ".4f"), fmt(c["gap"], ".3g"), fmt(c["encoder_gap_matched"], ".3g"),
                     fmt(c["decoder_gap_matched"], ".3g"), fmt(c["auroc"], ".3f")])
    return (_md(["claim (Manakov et al.)", "verdict", "measured"], _claims_rows(res, True)) + "\n\n"
            + _md(["area compression", "min test MSE", "gap", "encoder part", "decoder part", "AUROC"], rows))


def zoo_table(res: dict[str, Any]) -> str:
    from aeprobe.studies.zoo_report import COLUMNS, results_table

    header, rows = results_table(res["kinds"])
    specs = [c[2] for c in COLUMNS]
    body = [[r[0]] + [fmt(v, spec) for v, spec in zip(r[1:], specs[1:])] for r in rows]
    return _md(header, body) + "\n\n" + _md(["finding of the bake-off", "verdict"], _claims_rows(res, False))


#: study name -> its table
TABLES: dict[str, Callable[[dict], str]] = {"disks": disks_table, "position": position_table,
                                            "bottleneck": bottleneck_table, "zoo": zoo_table}


def tables(folders: list[str | Path]) -> str:
    """The Markdown for every run folder (a run line, then its table)."""
    parts = []
    for folder in folders:
        res = json.loads((Path(folder) / "results.json").read_text())
        study = res.get("study")
        if study not in TABLES:
            raise ValueError(f"{folder}/results.json has no known study name ({study!r}); rerun it with `aeprobe run`")
        parts.append(run_line(res) + "\n\n" + TABLES[study](res))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aeprobe.studies.readme_tables", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders (each with a results.json written by `aeprobe run`)")
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown here instead of printing it")
    args = ap.parse_args(argv)
    text = tables(args.runs)
    if args.out is None:
        sys.stdout.write(text)
    else:
        from aeprobe.reporting import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
