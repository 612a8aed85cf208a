"""Cost of the probe core on CPU, as ratios measured in one run.

Prints:
  1. forward time with ``capture`` of *every leaf module* / plain forward, on a mid-size conv
     autoencoder built here (64x64 grey images, 4 strided conv + BN + ReLU stages, 64-d code,
     mirrored transposed-conv decoder; batch 32). Median of interleaved repetitions (plain and
     captured alternate, so load from other processes hits both alike). Goal <= 1.15x. Also the
     ratio when the ``with capture(...)`` block is entered anew for every forward.
  2. peak memory of ``stream`` (Variance reducer on every leaf) over 100 vs 1000 batches: peak RSS
     of a fresh child process per run (``ru_maxrss``), the tracemalloc peak of the Python heap, and
     the reducer state bytes. Goal: ratio 1000/100 equal to 1 within noise.

Usage:  python benchmarks/capture.py [--reps 20] [--batch 32] [--stream-batch 2] [--threads 2] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from aeprobe._modules import leaf_names  # noqa: E402
from aeprobe.hooks import Variance, capture, stream  # noqa: E402


def conv_ae(width: int = 32, code: int = 64) -> nn.Module:
    """Mid-size conv AE: 64x64x1 -> 4 stages (stride 2) -> 4x4x(8w) -> code -> mirror."""
    chans = [1, width, 2 * width, 4 * width, 8 * width]
    enc: list[nn.Module] = []
    for a, b in zip(chans[:-1], chans[1:]):
        enc += [nn.Conv2d(a, b, 3, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
    enc += [nn.Flatten(), nn.Linear(chans[-1] * 16, code)]
    dec: list[nn.Module] = [nn.Linear(code, chans[-1] * 16), nn.ReLU(), nn.Unflatten(1, (chans[-1], 4, 4))]
    rev = chans[::-1]
    for i, (a, b) in enumerate(zip(rev[:-1], rev[1:])):
        dec += [nn.ConvTranspose2d(a, b, 4, 2, 1)]
        if i < len(rev) - 2:
            dec += [nn.BatchNorm2d(b), nn.ReLU()]
    model = nn.Sequential()
    model.add_module("encoder", nn.Sequential(*enc))
    model.add_module("decoder", nn.Sequential(*dec))
    return model


def time_capture(reps: int, batch: int) -> None:
    torch.manual_seed(0)
    model = conv_ae().eval()
    x = torch.randn(batch, 1, 64, 64)
    leaves = leaf_names(model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[1] conv AE: {n_params / 1e6:.2f} M parameters, {len(leaves)} leaf modules, batch {batch}x1x64x64")

    def plain() -> float:
        t = time.perf_counter()
        model(x)
        return time.perf_counter() - t

    with torch.no_grad():
        for _ in range(3):  # warm-up (allocator, kernels)
            model(x)
        plain_t, cap_t, enter_t = [], [], []
        for _ in range(reps):
            plain_t.append(plain())
            with capture(model, leaves) as acts:
                t = time.perf_counter()
                model(x)
                cap_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            with capture(model, leaves) as acts:
                model(x)
            enter_t.append(time.perf_counter() - t)
        assert len(acts) == len(leaves)
    mp, mc, me = statistics.median(plain_t), statistics.median(cap_t), statistics.median(enter_t)
    print(f"    plain forward            median {mp * 1e3:8.2f} ms  (n={reps})")
    print(f"    capture all leaves       median {mc * 1e3:8.2f} ms  ratio {mc / mp:.3f}x  (goal <= 1.15x)")
    print(f"    enter+forward+exit       median {me * 1e3:8.2f} ms  ratio {me / mp:.3f}x")


def _stream_child(n_batches: int, batch: int) -> dict:
    """Run in a fresh process: stream n batches through the AE, report peak memory figures."""
    import resource
    import tracemalloc

    torch.manual_seed(0)
    model = conv_ae().eval()
    xs = [torch.randn(batch, 1, 64, 64) for _ in range(4)]
    leaves = leaf_names(model)
    with torch.no_grad(), stream(model, leaves, Variance()):  # warm-up: first-call allocations
        for i in range(3):
            model(xs[i % 4])
    tracemalloc.start()
    with torch.no_grad(), stream(model, leaves, Variance()) as red:
        for i in range(n_batches):
            model(xs[i % 4])
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return {"rss_peak_mb": rss_kb / 1024, "py_peak_kb": py_peak / 1024, "state_kb": sum(r.nbytes() for r in red.values()) / 1024}


def memory_stream(batch: int, counts: tuple[int, int]) -> None:
    print(f"[2] stream(Variance) on every leaf, batch {batch}: peak memory vs number of batches")
    res = {}
    for n in counts:
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--stream-child", str(n), "--stream-batch", str(batch)],
            check=True, capture_output=True, text=True,
        )
        res[n] = json.loads(out.stdout.strip().splitlines()[-1])
        r = res[n]
        print(f"    {n:5d} batches: peak RSS {r['rss_peak_mb']:8.1f} MB   Python-heap peak {r['py_peak_kb']:8.1f} kB"
              f"   reducer state {r['state_kb']:8.1f} kB")
    a, b = (res[n] for n in counts)
    print(f"    ratio {counts[1]}/{counts[0]}: peak RSS {b['rss_peak_mb'] / a['rss_peak_mb']:.3f}x, Python heap "
          f"{b['py_peak_kb'] / a['py_peak_kb']:.3f}x, reducer state {b['state_kb'] / a['state_kb']:.3f}x  (goal: 1 within noise)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32, help="batch size of the timing part")
    ap.add_argument("--stream-batch", type=int, default=2, help="batch size of the streaming part (1000 forwards)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, 10 vs 100 batches")
    ap.add_argument("--stream-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.stream_child is not None:
        print(json.dumps(_stream_child(args.stream_child, args.stream_batch)))
        return
    time_capture(10 if args.quick else args.reps, args.batch)
    memory_stream(args.stream_batch, (10, 100) if args.quick else (100, 1000))


if __name__ == "__main__":
    main()
