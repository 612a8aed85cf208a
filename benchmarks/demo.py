"""Wall time of the main jobs (``make demo``: the disk study, quick; and the position study, quick)
in *bare epochs*, measured in one run.

A bare epoch is the seconds of one epoch of a plain Adam loop on DiskAE (3000 disks, batch 50,
channels_last, torch's default threads): :func:`train.bare_epoch_seconds`. Machines differ ~2x in
speed and shared machines in load, so the goals are stated in that unit: the disk demo in <= 105
bare epochs and the position demo in <= 71 (180 s and 120 s on the idle 2-core reference machine,
where a bare epoch takes ~1.7 s).

The script measures a bare epoch, runs each study as ``python -m aeprobe run STUDY --quick`` in a
fresh interpreter with the default threads (imports included, as ``make demo``), measures the bare
epoch again, and prints each wall time in bare epochs (against the mean of the two measurements),
with the machine load before and after.

On a busy machine a bare epoch with the default (2) threads is inflated many times over (the
OpenMP threads spin-wait for cores other processes hold: measured 20-25 s instead of ~1.7 s at
load 3.5), which would flatter the demo. So the script also times a *one-thread* bare epoch,
which a busy machine slows only about as much as the demo's single-thread training processes,
and prints the demo's wall time in those units too: ``idle estimate = (wall / one-thread epoch)
x one-thread epoch of the idle machine``.

    python benchmarks/demo.py                        # disks and position
    python benchmarks/demo.py --studies disks --out runs/bench_demo
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch

from aeprobe.report import machine_load
from train import bare_epoch_seconds, disk_data

#: goal of each quick demo, in bare epochs
GOALS = {"disks": 105.0, "position": 71.0}
#: seconds of a bare epoch on the idle 2-core reference machine (180 s ~ 105 bare epochs)
REFERENCE_EPOCH = 180.0 / 105.0


def run_demo(study: str, out: Path) -> tuple[float, str]:
    """Wall seconds of ``python -m aeprobe run STUDY --quick`` in a fresh interpreter, and its last line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("AEPROBE_THREADS", None)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "aeprobe", "run", study, "--quick", "--out", str(out), "--no-progress"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{study} demo failed:\n{r.stderr[-3000:]}")
    head = next((ln for ln in r.stdout.splitlines() if ln.startswith(f"{study} (")), r.stdout.strip()[-300:])
    return wall, head


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", nargs="+", default=list(GOALS), choices=list(GOALS))
    ap.add_argument("--out", type=Path, default=Path("runs/bench_demo"))
    ap.add_argument("--reps", type=int, default=2, help="bare-epoch timings each time (best is kept)")
    args = ap.parse_args(argv)
    x, _ = disk_data(3000, seed=1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (default), {os.cpu_count()} CPUs")
    out = {}
    threads = torch.get_num_threads()

    def one_thread_epoch() -> float:
        torch.set_num_threads(1)
        try:
            return bare_epoch_seconds(x, reps=args.reps)
        finally:
            torch.set_num_threads(threads)

    for study in args.studies:
        load0 = machine_load()
        e0, o0 = bare_epoch_seconds(x, reps=args.reps), one_thread_epoch()
        wall, head = run_demo(study, args.out / study)
        e1, o1 = bare_epoch_seconds(x, reps=args.reps), one_thread_epoch()
        load1 = machine_load()
        epoch, one = (e0 + e1) / 2, (o0 + o1) / 2
        units = wall / epoch
        goal = GOALS[study]
        out[study] = dict(wall=wall, bare_epoch_before=e0, bare_epoch_after=e1, bare_epochs=units, goal=goal,
                          one_thread_epoch_before=o0, one_thread_epoch_after=o1, one_thread_epochs=wall / one,
                          load_before=load0, load_after=load1)
        print(f"\n[{study}] {head}")
        print(f"  bare epoch ({threads} threads) {e0:.2f} s before, {e1:.2f} s after; one-thread epoch {o0:.2f} s "
              f"before, {o1:.2f} s after; load {load0} -> {load1}")
        print(f"  demo wall {wall:.0f} s = {wall / one:.0f} one-thread epochs")
        print(f"  demo wall {wall:.0f} s = {units:.0f} bare epochs (goal <= {goal:.0f}: "
              f"{'met' if units <= goal else 'NOT met'}), i.e. ~{units * REFERENCE_EPOCH:.0f} s on the idle "
              "reference machine")
    return out


if __name__ == "__main__":
    main()
