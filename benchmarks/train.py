"""Training speed on CPU, as ratios measured in one run (the machine is shared: absolute
images/s move with the load, ratios measured back to back much less).

Prints:
  1. aeprobe.train vs a bare hand-written Adam loop on the Newson disk AE (goal >= 0.9x);
  2. images/s of the disk AE (64x64, batch 300) in default vs channels_last layout, and a
     batch-size scan in the faster layout;
  3. K=8 seeds vmapped (aeprobe.multiseed.train_many) vs 8 sequential aeprobe.train runs
     (goal >= 2x) on a small MLP AE, the position AE (when available) and the disk AE;
  4. whether torch.compile works on the disk AE's training step on CPU, and if it pays;
  5. two independent trainings: one after the other in this process with the default threads
     vs side by side in 2 processes of one thread (aeprobe.studies.parallel.map_jobs), for the
     disk AE (batch 50, channels_last, as the disks study) and the position encoder.

A *bare epoch* is the unit of the studies' wall-time goals: the seconds of one epoch of a plain
Adam loop on DiskAE (3000 disks, batch 50, channels_last, default threads); see
benchmarks/demo.py.

Each timing is the best of a few interleaved repetitions (robust to other processes).
Usage:  python benchmarks/train.py [--quick] [--threads N] [--skip-compile] [--only 5]
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import time
import traceback


import torch
from torch import nn

from aeprobe.data import disks
from aeprobe.device import torch_threads
from aeprobe.models import DiskAE, PositionAE
from aeprobe.models import PositionEncoder
from aeprobe.multiseed import train_many
from aeprobe.report import machine_load
from aeprobe.studies.parallel import map_jobs
from aeprobe.train import train


# ----------------------------------------------------------------------------- models and data


def disk_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return DiskAE()


def disk_data(n: int, seed: int = 0) -> tuple[torch.Tensor, str]:
    return disks(n, size=64, r_min=1, r_max=32, seed=seed).images, "aeprobe.data.disks"


class MLPAE(nn.Module):
    """Small MLP autoencoder (64 -> 16 -> 1 -> 16 -> 64): per-op overhead dominates, vmap should pay."""

    def __init__(self, n: int = 64, h: int = 16, d: int = 1):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n, h), nn.LeakyReLU(0.2), nn.Linear(h, d))
        self.decoder = nn.Sequential(nn.Linear(d, h), nn.LeakyReLU(0.2), nn.Linear(h, n))

    def forward(self, x):
        return self.decoder(self.encoder(x))


# ----------------------------------------------------------------------------- timing helpers


def best_of(reps: int, *fns):
    """Run the callables interleaved ``reps`` times; return the best wall time of each."""
    best = [math.inf] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def bare_loop(model: nn.Module, x: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, batch_size):
            xb = x[perm[s:s + batch_size]]
            loss = ((model(xb) - xb) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()


def bare_epoch_seconds(x: torch.Tensor, *, reps: int = 2, batch_size: int = 50, seed: int = 0,
                       threads: int | None = None) -> float:
    """Best of ``reps`` timings of one bare Adam epoch (lr 1e-3) of a fresh DiskAE on ``x``,
    channels_last, batch ``batch_size``, with torch's current thread count (``threads``: that many for
    the timing, restored after), after one warm-up batch: the unit of the studies' wall-time goals."""
    if threads is not None:
        with torch_threads(threads):
            return bare_epoch_seconds(x, reps=reps, batch_size=batch_size, seed=seed)
    xc = x.contiguous(memory_format=torch.channels_last)
    best = math.inf
    for r in range(reps):
        model = disk_model(seed + r).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(seed)

        def step(xb):
            loss = ((model(xb) - xb) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        step(xc[:batch_size])  # warm-up: oneDNN builds its kernels for the shape
        t0 = time.perf_counter()
        perm = torch.randperm(len(xc), generator=gen)
        for s in range(0, len(xc), batch_size):
            step(xc[perm[s:s + batch_size]].contiguous(memory_format=torch.channels_last))
        best = min(best, time.perf_counter() - t0)
    return best


def steps_per_second(model, x, steps: int, lr: float = 1e-3, warmup: int = 3) -> float:
    """Images/s of one Adam step on the batch ``x``: median over ``steps`` timed steps, after
    ``warmup`` untimed ones (oneDNN builds its kernels for a new shape/layout in the first steps)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = ((model(x) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return len(x) / times[len(times) // 2]


def line(label: str, value: str) -> None:
    print(f"  {label:<66} {value}")


# ----------------------------------------------------------------------------- sections


def section_trainer_vs_bare(x, epochs, reps):
    print("\n[1] aeprobe.train vs bare Adam loop (disk AE, batch 300, default layout)")
    base = disk_model(0)
    m_bare, m_ours = copy.deepcopy(base), copy.deepcopy(base)

    def run_bare():
        bare_loop(copy.deepcopy(m_bare), x, epochs, 300, 1e-3, 0)

    def run_ours():
        train(copy.deepcopy(m_ours), x, epochs=epochs, batch_size=300, seed=0, progress=False)

    t_bare, t_ours = best_of(reps, run_bare, run_ours)
    imgs = epochs * len(x)
    line("bare loop images/s", f"{imgs / t_bare:8.0f}")
    line("aeprobe.train images/s", f"{imgs / t_ours:8.0f}")
    ratio = t_bare / t_ours
    line("speed ratio ours / bare (goal >= 0.9)", f"{ratio:8.2f}  {'OK' if ratio >= 0.9 else 'BELOW GOAL'}")
    return ratio


def section_layout(x, epochs, reps, quick):
    print("\n[2] disk AE images/s: default vs channels_last (aeprobe.train, batch 300)")
    base = disk_model(0)
    results = {}

    def run(cl):
        def fn():
            m = copy.deepcopy(base)
            results[cl] = train(m, x, epochs=epochs, batch_size=300, seed=0, progress=False, channels_last=cl)
        return fn

    t_def, t_cl = best_of(reps, run(False), run(True))
    imgs = epochs * len(x)
    line("default layout images/s", f"{imgs / t_def:8.0f}")
    line("channels_last images/s", f"{imgs / t_cl:8.0f}")
    line("speed ratio channels_last / default", f"{t_def / t_cl:8.2f}")
    a, b = results[False].history["train_loss"][-1], results[True].history["train_loss"][-1]
    line("final train loss default vs channels_last (rel. diff)", f"{a:.6g} vs {b:.6g} ({abs(a - b) / abs(a):.1e})")

    nthreads = torch.get_num_threads()
    if nthreads > 1:
        with torch_threads(1):
            (t_one,) = best_of(reps, run(True))
        line(f"channels_last, 1 thread images/s (vs {nthreads} threads above)", f"{imgs / t_one:8.0f}")
        line(f"speed ratio {nthreads} threads / 1 thread (< 1 means the cores are busy)", f"{t_one / t_cl:8.2f}")

    print("    batch-size scan, channels_last (Adam steps on one batch; larger batches need a larger lr)")
    for bs in ([100, 300, 1000] if not quick else [100, 300, 600]):
        xb = torch.rand(bs, *x.shape[1:]).contiguous(memory_format=torch.channels_last)
        m = copy.deepcopy(base).to(memory_format=torch.channels_last)
        ips = steps_per_second(m, xb, steps=3 if quick else 7)
        line(f"batch {bs} images/s", f"{ips:8.0f}")
    return t_def / t_cl


def section_vmap(name, make, x, k, epochs, batch_size, reps, lr=1e-3):
    models = [make(100 + i) for i in range(k)]

    def run_seq():
        for i, m in enumerate(models):
            train(copy.deepcopy(m), x, epochs=epochs, batch_size=batch_size, lr=lr, seed=i, progress=False)

    def run_vmap():
        train_many([copy.deepcopy(m) for m in models], x, epochs=epochs, batch_size=batch_size, lr=lr,
                   seeds=list(range(k)), progress=False)

    t_seq, t_vmap = best_of(reps, run_seq, run_vmap)
    imgs = k * epochs * len(x)
    ratio = t_seq / t_vmap
    line(f"{name}: sequential images/s (K={k} runs)", f"{imgs / t_seq:8.0f}")
    line(f"{name}: vmapped images/s", f"{imgs / t_vmap:8.0f}")
    line(f"{name}: speed ratio vmapped / sequential (goal >= 2)", f"{ratio:8.2f}  {'OK' if ratio >= 2 else 'below 2x'}")
    return ratio


def section_vmaps(quick, reps):
    print("\n[3] K=8 seeds: vmapped (torch.func) vs sequential aeprobe.train (MLP/position: one-hots, batch 64; disk: batch 300)")
    k = 8
    torch.manual_seed(0)
    pos = torch.randint(0, 64, (1024,))
    onehots = torch.nn.functional.one_hot(pos, 64).float()
    ratios = {}
    ratios["mlp"] = section_vmap("MLP AE 64-16-1",
                                 lambda s: (torch.manual_seed(s), MLPAE())[1], onehots, k,
                                 epochs=2 if quick else 5, batch_size=64, reps=reps, lr=1e-2)
    xin = onehots[:, None, :]  # PositionAE takes [N, 1, 64]
    ratios["position"] = section_vmap("PositionAE", lambda s: (torch.manual_seed(s), PositionAE())[1], xin, k,
                                      epochs=2 if quick else 5, batch_size=64, reps=reps)
    xd, _ = disk_data(300 if quick else 900, seed=1)
    ratios["disk"] = section_vmap("disk AE (default layout)", disk_model, xd, k,
                                  epochs=1, batch_size=300, reps=1)
    # the fair sequential baseline for convnets is channels_last (section 2)
    models = [disk_model(100 + i) for i in range(k)]
    (t_cl,) = best_of(1, lambda: [train(copy.deepcopy(m), xd, epochs=1, batch_size=300, seed=i, progress=False,
                                         channels_last=True) for i, m in enumerate(models)])
    line("disk AE: sequential channels_last images/s", f"{k * len(xd) / t_cl:8.0f}")
    return ratios


def section_compile(x_batch, quick):
    print("\n[4] torch.compile on the disk AE training step (CPU, inductor)")
    results = {}
    for cl in (False, True):
        label = "channels_last" if cl else "default layout"
        base = disk_model(0)
        xb = x_batch.contiguous(memory_format=torch.channels_last) if cl else x_batch
        if cl:
            base = base.to(memory_format=torch.channels_last)
        eager = copy.deepcopy(base)
        t0 = time.perf_counter()
        try:
            compiled = torch.compile(copy.deepcopy(base))
            opt = torch.optim.Adam(compiled.parameters())
            loss = ((compiled(xb) - xb) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        except Exception as exc:
            msg = str(exc).strip().splitlines()
            line(f"{label}: torch.compile", f"FAILS: {type(exc).__name__}: {(msg[0] if msg else '')[:100]}")
            if os.environ.get("AEPROBE_BENCH_TRACEBACK"):
                traceback.print_exc()
            continue
        t_compile = time.perf_counter() - t0
        steps = 2 if quick else 5
        ips_eager = steps_per_second(eager, xb, steps)
        ips_comp = steps_per_second(compiled, xb, steps)
        results[cl] = ips_comp / ips_eager
        line(f"{label}: compile + first step", f"{t_compile:6.1f} s (cached kernels make reruns faster)")
        line(f"{label}: eager / compiled images/s", f"{ips_eager:6.0f} / {ips_comp:6.0f}")
        line(f"{label}: speed ratio compiled / eager", f"{ips_comp / ips_eager:8.2f}")
    return results


def parallel_job(job: dict) -> float:
    """One training of section 5 (runs in a worker process): returns its training seconds."""
    torch.manual_seed(job["seed"])
    if job["net"] == "disk":
        model = DiskAE(bias=False)
        res = train(model, job["x"], epochs=job["epochs"], batch_size=50, seed=job["seed"], progress=False,
                    channels_last=True)
    else:
        model = PositionEncoder(6, bias=True, activation=True)
        res = train(model, job["x"], job["y"], epochs=job["epochs"], batch_size=100, lr=1e-2, seed=job["seed"],
                    progress=False)
    return res.seconds


def section_processes(x_disk, quick):
    print("\n[5] two independent trainings: sequential (this process, default threads) vs 2 processes x 1 thread")
    a = torch.rand(3000, dtype=torch.float64) * 63
    xp = torch.relu(1 - (torch.arange(64)[None, :] - a[:, None]).abs()).float()[:, None, :]
    yp = ((64 - a) / 64).float()[:, None]
    cases = {f"disk AE ({len(x_disk)} disks, batch 50, channels_last)": [dict(net="disk", x=x_disk, epochs=1 if quick else 6,
                                                                   seed=s) for s in (0, 1)],
             "position encoder (3000 Diracs, batch 100)": [dict(net="position", x=xp, y=yp, epochs=10 if quick else 100,
                                                                seed=s) for s in (0, 1)]}
    ratios = {}
    for name, jobs in cases.items():
        t0 = time.perf_counter()
        seq = [parallel_job(j) for j in jobs]
        t_seq = time.perf_counter() - t0
        t0 = time.perf_counter()
        par = map_jobs(parallel_job, jobs, workers=2)
        t_par = time.perf_counter() - t0
        line(f"{name}: sequential, {torch.get_num_threads()} threads", f"{t_seq:6.1f} s")
        line(f"{name}: 2 processes x 1 thread, wall (incl. ~spawn)", f"{t_par:6.1f} s  (training {max(par):.1f} s)")
        ratios[name] = (t_seq / t_par, sum(seq) / max(par))
        line(f"{name}: speed ratio processes / sequential, wall | training only",
             f"{t_seq / t_par:6.2f} | {sum(seq) / max(par):.2f}")
    return ratios


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, < 2 minutes")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own default)")
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--only", type=int, nargs="+", default=None, help="run only these sections (1-5)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only or range(1, 6))
    n = 900 if args.quick else 3000
    epochs = 1 if args.quick else 2
    reps = 2 if args.quick else 3
    x, source = disk_data(n)
    model_name = type(disk_model(0)).__name__
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {machine_load()}; "
          f"disk AE = {model_name}; data = {source}; n = {n}, epochs = {epochs}, best of {reps}")
    t0 = time.perf_counter()
    if 1 in only:
        section_trainer_vs_bare(x, epochs, reps + 1)
    if 2 in only:
        section_layout(x, epochs, reps, args.quick)
    if 3 in only:
        section_vmaps(args.quick, reps)
    if 4 in only and not args.skip_compile:
        section_compile(x[:300], args.quick)
    if 5 in only:
        section_processes(x, args.quick)
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
