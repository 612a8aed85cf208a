"""Cost of train()'s per-step gradient check (issue 11), as a ratio measured in one run.

1. Per step, interleaved: the median time of an Adam step (forward, backward, step) and the
   median time of ``aeprobe.train.nonfinite_grads`` on its gradients -- robust on a shared machine.
2. End to end: aeprobe.train with the check on and off (monkeypatched to a no-op), interleaved,
   best of a few repetitions (noisier: other processes move whole runs).

On a compute-bound model (the Newson disk AE, batch 300) and an overhead-bound one (a 64-16-1
MLP AE, batch 64, where per-step costs weigh most).

Usage:  python benchmarks/train_checks.py [--quick] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import math
import time


import torch
from torch import nn

import aeprobe.train as T
from aeprobe.data import disks
from aeprobe.models import DiskAE


class MLPAE(nn.Module):
    def __init__(self, n: int = 64, h: int = 16, d: int = 1):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n, h), nn.LeakyReLU(0.2), nn.Linear(h, d))
        self.decoder = nn.Sequential(nn.Linear(d, h), nn.LeakyReLU(0.2), nn.Linear(h, n))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def timed(model, x, epochs, batch_size, check: bool) -> float:
    real = T.nonfinite_grads
    if not check:
        T.nonfinite_grads = lambda named: []
    try:
        t0 = time.perf_counter()
        T.train(copy.deepcopy(model), x, epochs=epochs, batch_size=batch_size, progress=False)
        return time.perf_counter() - t0
    finally:
        T.nonfinite_grads = real


def ratio(name, model, x, epochs, batch_size, reps) -> None:
    best = {True: math.inf, False: math.inf}
    for _ in range(reps):
        for check in (False, True):
            best[check] = min(best[check], timed(model, x, epochs, batch_size, check))
    steps = epochs * math.ceil(len(x) / batch_size)
    print(f"  {name:<40} without {best[False]:7.3f} s, with {best[True]:7.3f} s  ({steps} steps); "
          f"time ratio with/without = {best[True] / best[False]:.3f}")


def per_step(name, model, x, steps) -> None:
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    named = list(model.named_parameters())
    t_step, t_check = [], []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss = ((model(x) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        T.nonfinite_grads(named)
        t2 = time.perf_counter()
        if i >= 2:  # warm-up
            t_step.append(t1 - t0)
            t_check.append(t2 - t1)
    step, check = sorted(t_step)[len(t_step) // 2], sorted(t_check)[len(t_check) // 2]
    print(f"  {name:<40} step {step * 1e3:9.3f} ms, check {check * 1e6:7.1f} us; "
          f"check / step = {check / step:.4f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    reps = 3 if args.quick else 5
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {reps} interleaved runs")
    torch.manual_seed(0)
    print("[1] per step, medians of interleaved measurements")
    per_step("disk AE 64x64, batch 300", DiskAE(), torch.rand(300, 1, 64, 64), 5 if args.quick else 10)
    per_step("MLP AE 64-16-1, batch 64", MLPAE(), torch.rand(64, 64), 200 if args.quick else 1000)
    print("[2] end to end, best of interleaved runs")
    torch.manual_seed(0)
    n = 600 if args.quick else 1500
    ratio("disk AE 64x64, batch 300", DiskAE(), disks(n, size=64, r_min=1, r_max=32, seed=0).images, 1, 300, reps)
    torch.manual_seed(0)
    ratio("MLP AE 64-16-1, batch 64", MLPAE(), torch.rand(4096 if args.quick else 16384, 64), 2, 64, reps)


if __name__ == "__main__":
    main()
