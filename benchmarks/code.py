"""Cost of aeprobe.probes.code.code_stats on CPU, as ratios measured in one run (1 thread).

Prints:
  1. speed: ``code_stats`` over N inputs (default 100k) vs a bare ``decoder(encoder(x))`` loop over the
     same batches, on two small autoencoders: an MLP (784 -> 256 -> 32 -> 256 -> 784, ReLU; memory-bound
     like the statistics' own passes over x and x_hat, so the hardest case) and a conv AE on 16x16
     images (two stride-2 convs, 16-d code, mirrored transposed convs). The two loops alternate
     (interleaved repetitions, so load from other processes hits both alike); printed for wall time
     and for the process's CPU time (which leaves out the time other processes hold the cores): the
     ratio median(bare) / median(code_stats) and the median of the per-repetition ratios. Goal >= 0.8x.
     The load average is printed before and after.
  2. memory vs number of inputs: ``code_stats`` over N1 and N2 = 10 N1 inputs generated batch by batch
     (the data never exist as one tensor), each in a fresh child process: peak RSS (``VmHWM``),
     tracemalloc peak of the Python heap, the reducer's state bytes, and the drift of the current RSS
     sampled 8 times along the stream (over its second half). Goal: ratio N2/N1 = 1 within noise,
     drift ~0.

Usage:  python benchmarks/code.py [--n 100000] [--reps 5] [--batch 256] [--dim 784] [--code 32] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


import numpy as np
import torch
from torch import nn

from aeprobe.device import load_average
from aeprobe.probes.code import CodeStatsReducer, code_stats


class ConvAE(nn.Module):
    def __init__(self, code: int = 16):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                     nn.Flatten(), nn.Linear(16 * 4 * 4, code))
        self.decoder = nn.Sequential(nn.Linear(code, 16 * 4 * 4), nn.ReLU(), nn.Unflatten(1, (16, 4, 4)),
                                     nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 1, 4, 2, 1))

    def forward(self, x):
        return self.decoder(self.encoder(x))


class MLPAE(nn.Module):
    def __init__(self, dim: int, code: int, hidden: int = 256):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, code), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def batches(n: int, dim: int, batch: int, seed: int = 0):
    """``n`` inputs generated on the fly, ``batch`` at a time (memory independent of ``n``)."""
    g = torch.Generator().manual_seed(seed)
    for s in range(0, n, batch):
        yield torch.rand(min(batch, n - s), dim, generator=g)


def time_speed(kind: str, n: int, reps: int, batch: int, dim: int, code: int) -> dict:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if kind == "mlp":
        model, x = MLPAE(dim, code).eval(), torch.rand(n, dim, generator=g)
        what = f"MLP AE {dim}-256-{code}-256-{dim}"
    else:
        model, x = ConvAE().eval(), torch.rand(n, 1, 16, 16, generator=g)
        what = "conv AE 1x16x16 -> 16 -> 1x16x16"
    print(f"[1] {what}, {n} inputs, batch {batch}, {torch.get_num_threads()} thread(s); "
          f"load average before {(load_average() or [float('nan')])[0]:.2f}")

    @torch.no_grad()
    def bare() -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        for s in range(0, n, batch):
            model.decoder(model.encoder(x[s:s + batch]))
        return time.perf_counter() - t, time.process_time() - c

    def stats() -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        code_stats(model, x, batch_size=batch)
        return time.perf_counter() - t, time.process_time() - c

    bare(), stats()  # warm-up
    tb, ts = [], []
    for _ in range(reps):
        tb.append(bare())
        ts.append(stats())
    out = {}
    for i, clock in enumerate(("wall", "cpu")):
        b = [t[i] for t in tb]
        s = [t[i] for t in ts]
        mb, ms = statistics.median(b), statistics.median(s)
        paired = statistics.median(u / v for u, v in zip(b, s))
        out[clock] = {"bare_s": mb, "code_stats_s": ms, "ratio": mb / ms, "paired": paired}
        print(f"    {clock:4s} time: bare loop median {mb:6.3f} s ({n / mb:7.0f} inputs/s), code_stats median {ms:6.3f} s "
              f"({n / ms:7.0f} inputs/s)")
        print(f"               runs bare {[round(t, 2) for t in b]}  code_stats {[round(t, 2) for t in s]}")
        print(f"               speed ratio bare/code_stats = {mb / ms:.3f}x (median of per-repetition ratios "
              f"{paired:.3f}x; goal >= 0.8x)")
    out["load_after"] = (load_average() or [float("nan")])[0]
    print(f"    load average after {out['load_after']:.2f} (2 cores)")
    return out


def _memory_child(n: int, batch: int, dim: int, code: int) -> dict:
    import tracemalloc

    def rss_mb() -> float:  # current resident set (Linux)
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    samples = np.full(16, np.nan)  # preallocated: sampling adds nothing to the Python heap

    def sampled(it, every: int):
        for i, xb in enumerate(it):
            if i % every == 0 and i // every < samples.size:
                samples[i // every] = rss_mb()
            yield xb

    torch.manual_seed(0)
    model = MLPAE(dim, code).eval()
    code_stats(model, batches(batch * 3, dim, batch), batch_size=batch)  # warm-up: first-call allocations
    tracemalloc.start()
    nb = -(-n // batch)
    st = code_stats(model, sampled(batches(n, dim, batch), max(1, nb // 8)), batch_size=batch)
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # peak RSS: VmHWM, not ru_maxrss (Linux keeps ru_maxrss across fork + exec, so a child would
    # report its parent's size, here the 100k inputs of the speed part)
    with open("/proc/self/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    taken = samples[np.isfinite(samples)]
    late = taken[taken.size // 2:]
    red = CodeStatsReducer()  # state size of the same stream, measured on a short run (it does not grow)
    with torch.no_grad():
        for xb in batches(batch * 2, dim, batch):
            z = model.encoder(xb)
            red.update(xb, z, model.decoder(z))
    red.result()
    return {"n": st.n, "rss_peak_mb": rss_kb / 1024, "py_peak_kb": py_peak / 1024, "state_kb": red.nbytes() / 1024,
            "rss_drift_mb": float(late.max() - late.min()), "rss_samples": int(taken.size)}


def memory(counts: tuple[int, int], batch: int, dim: int, code: int) -> dict:
    print("[2] code_stats peak memory vs number of inputs (fresh process each, inputs generated per batch)")
    res = {}
    for n in counts:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", str(n), "--batch", str(batch),
                              "--dim", str(dim), "--code", str(code)], check=True, capture_output=True, text=True)
        res[n] = r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"    {n:8d} inputs: peak RSS {r['rss_peak_mb']:8.1f} MB   Python-heap peak {r['py_peak_kb']:8.1f} kB   "
              f"reducer state {r['state_kb']:6.1f} kB   RSS drift over the 2nd half of the stream "
              f"{r['rss_drift_mb']:.2f} MB ({r['rss_samples']} samples)")
    a, b = (res[n] for n in counts)
    print(f"    ratio {counts[1]}/{counts[0]}: peak RSS {b['rss_peak_mb'] / a['rss_peak_mb']:.3f}x, Python heap "
          f"{b['py_peak_kb'] / a['py_peak_kb']:.3f}x  (goal: 1 within noise)")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=784)
    ap.add_argument("--code", type=int, default=32)
    ap.add_argument("--models", default="mlp,conv", help="comma-separated: mlp, conv")
    ap.add_argument("--quick", action="store_true", help="20k inputs, 3 repetitions, 5k vs 50k for memory")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.memory_child is not None:
        print(json.dumps(_memory_child(args.memory_child, args.batch, args.dim, args.code)))
        return
    n, reps = (20_000, 3) if args.quick else (args.n, args.reps)
    for kind in args.models.split(","):
        time_speed(kind.strip(), n, reps, args.batch, args.dim, args.code)
    memory((5_000, 50_000) if args.quick else (20_000, 200_000), args.batch, args.dim, args.code)


if __name__ == "__main__":
    main()
