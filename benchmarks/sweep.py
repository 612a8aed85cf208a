"""aeprobe.sweep on the bottleneck quick grid: the ``processes`` and ``ray`` backends against
sequential (``local``), as wall-time ratios measured in one run. Goal: >= 1.8x on 2 cores.

The grid is the quick mode of ``aeprobe.studies.bottleneck`` (``aeprobe run bottleneck --quick``),
training only: Manakov's CAE (``aeprobe.models.ManakovCAE``, 32x32 grey patches, depth 5, instance
norm) for areas S/M/L x compressions 1/64, 1/16, 1/4, 1 x 2 seeds, 512 training / 512 test
patches, 20 epochs of batch 32 at lr 2e-3 (``aeprobe.train.train``). Every backend runs the grid
with one torch thread per run (the sequential baseline too), into a fresh ``out`` folder, and must
return identical losses. The Ray time includes starting and stopping a local Ray (reported on its own as well).

The machine may be shared: the load average (``aeprobe.device.load_average()``) is printed before and after
each backend, since other processes on 2 cores slow the parallel runs more than the sequential one.
Also printed: the sum of the per-CAE training times over the wall time, i.e. how many CAEs were
training at once on average (2 = the backend keeps both workers busy; it does not tell how fast
each of them ran on a shared machine).

Usage:  python benchmarks/sweep.py [--epochs 20] [--seeds 2] [--backends local,processes,ray] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from fractions import Fraction


import aeprobe
from aeprobe.device import load_average

_DATA: dict = {}


def _data(n_train: int, n_test: int, size: int) -> tuple:
    """The patches, made once per process (each worker makes the same ones: fixed seeds)."""
    key = (n_train, n_test, size)
    if key not in _DATA:
        import numpy as np
        import torch

        from aeprobe.data import image_patches

        x, _ = image_patches(n_train + n_test, size=size, seed=0, gray=True)
        x = x[torch.from_numpy(np.random.default_rng(12345).permutation(x.shape[0]))]
        _DATA[key] = (x[:n_train].contiguous(), x[n_train:].contiguous())
    return _DATA[key]


def train_cell(cfg: dict) -> dict:
    """Train one CAE of the grid (seeded from the config) and return its loss curves."""
    import torch

    from aeprobe.models.manakov import ManakovCAE
    from aeprobe.train import train

    x_train, x_test = _data(cfg["n_train"], cfg["n_test"], cfg["size"])
    torch.manual_seed(cfg["seed"])
    model = ManakovCAE(in_channels=1, size=cfg["size"], area=cfg["area"], compression=Fraction(cfg["compression"]),
                       depth=cfg["depth"], norm="instance")
    t0 = time.perf_counter()
    res = train(model, x_train, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], x_val=x_test,
                seed=cfg["seed"], progress=False, device="cpu")
    return {"train_loss": res.history["train_loss"], "val_loss": res.history["val_loss"],
            "seconds": time.perf_counter() - t0}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--backends", default="local,processes,ray")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    backends = args.backends.split(",")
    if "local" not in backends:
        raise SystemExit("--backends must include local (the baseline)")

    grid = [dict(area=a, compression=str(c), seed=s, size=32, depth=5, n_train=512, n_test=512, epochs=args.epochs,
                 batch_size=32, lr=2e-3)
            for a in ("S", "M", "L") for c in (Fraction(1, 64), Fraction(1, 16), Fraction(1, 4), Fraction(1)) for s in
            range(args.seeds)]
    print(f"bottleneck grid: {len(grid)} CAEs x {args.epochs} epochs; {os.cpu_count()} CPUs; "
          f"{args.workers} workers x 1 thread vs sequential x 1 thread")
    _data(512, 512, 32)  # the sequential run's data are made before its clock starts, as in every worker

    rows, results = {}, {}
    for backend in backends:
        if backend == "ray":
            try:
                import ray
            except ImportError:
                print("ray: not installed (pip install aeprobe[ray]); skipped")
                continue
        load0 = load_average()
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            res = aeprobe.sweep(train_cell, grid, backend=backend, out=out, threads=1,
                                workers=None if backend == "local" else args.workers)
            wall = time.perf_counter() - t0
        load1 = load_average()
        results[backend] = res
        rows[backend] = dict(wall=wall, train_seconds=sum(r["seconds"] for r in res), load_before=load0[0],
                             load_after=load1[0])
        print(f"{backend:>9}: {wall:7.1f} s wall (sum of per-cell training {rows[backend]['train_seconds']:.1f} s); "
              f"load average {load0[0]:.2f} -> {load1[0]:.2f}")

    if "ray" in rows:  # what a local Ray costs to start and stop here, measured right after
        import logging

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        ray.shutdown()
        rows["ray"]["startup_shutdown"] = time.perf_counter() - t0
        print(f"      ray: start + shutdown of a local Ray alone: {rows['ray']['startup_shutdown']:.1f} s")

    base = rows["local"]["wall"]
    for backend, row in rows.items():
        if backend == "local":
            continue
        same = all(a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]
                   for a, b in zip(results["local"], results[backend]))
        row["speedup"] = base / row["wall"]
        row["identical_losses"] = same
        # load-independent view of the backend's overhead: CAEs training at once, on average
        row["concurrency"] = row["train_seconds"] / row["wall"]
        goal = "meets" if row["speedup"] >= 1.8 else "below"
        print(f"{backend:>9}: {row['speedup']:.2f}x faster than sequential ({goal} the 1.8x goal); "
              f"{row['concurrency']:.2f} CAEs training at once on average; losses identical to sequential: {same}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
