"""Theory demo (no training): the Airy profile of Prop. 2 against the numerical optimum of Eq. (7).

    python experiments/theory_demo.py --out runs/theory

Writes ``airy_vs_optimum.png`` and ``results.json`` (max deviation per grid size, energies).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from aeprobe.plots.common import line_plot
from aeprobe.reporting import write_json
from theory.disks import airy_profile, decoding_energy, optimal_energy, optimal_profile


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/theory"))
    ap.add_argument("--R", type=float, default=32.0, help="largest training radius (pixels)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    curves, errors = {}, {}
    t = np.linspace(0, 1.2 * args.R, 600)
    curves["Airy closed form"] = (t, airy_profile(t, args.R))
    for n in (8, 16, 64, 256):
        rho, f = optimal_profile(args.R, n)
        errors[n] = float(np.max(np.abs(f - airy_profile(rho, args.R))))
        if n in (8, 64):
            curves[f"Rayleigh-Ritz optimum, n={n}"] = (rho, f)
    line_plot(curves, args.out / "airy_vs_optimum.png", xlabel="radius t (pixels)", ylabel="f(t), f(0)=1",
              title=f"Optimal bias-free disk decoder profile, R={args.R:g}",
              styles={"Rayleigh-Ritz optimum, n=8": "o", "Rayleigh-Ritz optimum, n=64": "."})
    rho = np.linspace(0, args.R, 4001)
    res = {
        "R": args.R,
        "max_abs_error_vs_airy": errors,
        "J_airy_over_R3": decoding_energy(airy_profile(rho, args.R), rho, args.R) / args.R**3,
        "J_optimum_over_R3": optimal_energy(args.R, 400) / args.R**3,
        # a constant profile on [0, R] for comparison (hand calculation: 1/10)
        "J_constant_over_R3": decoding_energy(np.ones_like(rho), rho, args.R) / args.R**3,
    }
    write_json(args.out / "results.json", res)
    print(f"wrote {args.out}/airy_vs_optimum.png; max |optimum - Airy| by grid size: {errors}")
    return res


if __name__ == "__main__":
    main()
