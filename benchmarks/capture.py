"""Cost of the probe core on CPU, as ratios measured in one run, next to plain ``register_forward_hook`` code.

Prints:
  1. Deep models (issue 18): an MLP of tiny ``Linear(8, 8)`` + ``Tanh`` blocks with 200 and 1000
     modules, batch 1. Time of one whole ``with`` block (enter + forward + exit) for ``capture``
     of one module, ``intervene`` and ``stream`` on one module, ``capture`` of every leaf, and
     ``patching`` of N modules, each next to the same job written with raw forward hooks, as a
     ratio to a plain forward. Goals: capture one module <= 1.10x (200 modules), <= 1.15x (1000);
     patching N modules <= 1.10 x (N + 2), as it needs N + 2 forwards (clean, corrupted, N patched),
     judged under torch.no_grad() since patching runs its forwards without autograd. The deep case
     runs twice: with autograd on (torch's default) and under torch.no_grad(). Two rows show the floor
     of any block that restores flags a body may change: raw hook code plus one walk of the tree,
     and plus reading every ``training`` / ``requires_grad`` flag on entry and comparing on exit.
  2. Capture of *every leaf module* of a mid-size conv autoencoder (64x64 grey images, 4 strided
     conv + BN + ReLU stages, 64-d code, mirrored transposed-conv decoder; batch 32), also with the
     block entered anew for every forward. Goal <= 1.15x.
  3. Peak memory of ``stream`` (Variance reducer on every leaf) over 100 vs 1000 batches: peak RSS
     of a fresh child process per run (``ru_maxrss``), the tracemalloc peak of the Python heap, and
     the reducer state bytes. Goal: ratio 1000/100 equal to 1 within noise.

Timing: 1 intra-op thread, CPU time of that thread (``time.thread_time``). The variants of a
table run interleaved (one of each per round, in a rotating order), each timing the mean of a few
back-to-back blocks (a composite job such as patching is timed once, against the mean of N + 1
plain forwards). Two ratios are printed: the median over rounds of (variant / plain timed in the
same round) -- the verdict, PASS/FAIL, is computed from it -- and the ratio of the minimum times,
a lower-noise estimate of the intrinsic cost on a shared machine.

nnsight (``trace`` + ``.save()``) is timed too when it is importable -- never a dependency of
aeprobe; run this script with a scratch environment that has it for that row.

Usage:  python benchmarks/capture.py [--rounds 41] [--quick] [--part deep|conv|stream|all]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from itertools import chain
from operator import attrgetter


import torch
from torch import nn

from aeprobe.device import load_average
from aeprobe.hooks import Variance, capture, intervene, leaf_names, stream
from aeprobe.state import walk_modules
from aeprobe.activation_patching import patching

try:  # optional side-by-side; never a dependency (run this script with a scratch venv that has it)
    from nnsight import NNsight
except ImportError:  # pragma: no cover - depends on the environment
    NNsight = None

TRAINING, PARAMS, REQUIRES_GRAD = attrgetter("training"), attrgetter("_parameters"), attrgetter("requires_grad")
RESULTS: list[tuple[str, float, float, bool]] = []  # (goal, measured, bound, passed)
#: CPU time of this thread (1 intra-op thread: all the work runs on it). Unlike wall time it does
#: not count the time the process waits for a core taken by other processes on a shared machine.
CLOCK = time.thread_time


def goal(label: str, measured: float, bound: float) -> str:
    ok = measured <= bound
    RESULTS.append((label, measured, bound, ok))
    return f"{'PASS' if ok else 'FAIL'} (goal <= {bound:.2f}x)"


def interleaved(variants: dict, rounds: int, inner) -> dict[str, tuple[float, float, float]]:
    """Per variant: (median time, median over rounds of variant time / plain time in the same round,
    ratio of the minimum times). 'plain' must be a key; ``inner``: calls per timing (int, or dict per
    variant -- a composite job is timed once while 'plain' averages several calls)."""
    names = list(variants)
    ratios = {n: [] for n in names}
    times = {n: [] for n in names}
    for fn in variants.values():  # warm-up
        fn()
        fn()
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        t_round = {}
        for n in order:
            fn = variants[n]
            k = inner[n] if isinstance(inner, dict) else inner
            t0 = CLOCK()
            own = 0.0
            for _ in range(k):
                dt = fn()  # a variant may time itself (returns seconds) to exclude its set-up
                own += dt if isinstance(dt, float) else 0.0
            total = CLOCK() - t0
            t_round[n] = (own if own > 0 else total) / k
        for n in names:
            ratios[n].append(t_round[n] / t_round["plain"])
            times[n].append(t_round[n])
    best = min(times["plain"])
    return {n: (statistics.median(times[n]), statistics.median(ratios[n]), min(times[n]) / best) for n in names}


# --------------------------------------------------------------------------------------------- 1. deep MLP
def deep_mlp(n_modules: int, width: int = 8) -> nn.Sequential:
    """Sequential of Sequential(Linear, Tanh) blocks: 3 modules per block, plus the root."""
    blocks = max(1, (n_modules - 1) // 3)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(blocks)])
    with torch.no_grad():  # near-identity weights: the input still matters at the output of a deep stack
        for block in model:
            block[0].weight.copy_(torch.eye(width) * 1.5 + 0.1 * torch.randn(width, width))
            block[0].bias.zero_()
    return model


def time_deep(n_modules: int, rounds: int, n_patch: int, grad: bool) -> None:
    torch.manual_seed(0)
    model = deep_mlp(n_modules).eval()
    n_mod = sum(1 for _ in model.modules())
    x = torch.randn(1, 8)
    x2 = torch.randn(1, 8)
    mid = str(len(model) // 2)
    target = model.get_submodule(mid)
    leaves = leaf_names(model)
    leaf_mods = [model.get_submodule(n) for n in leaves]
    step = max(1, len(model) // n_patch)
    pnames = [str(i) for i in range(0, len(model), step)][:n_patch]
    pmods = [model.get_submodule(n) for n in pnames]
    metric = lambda y: y.sum()  # noqa: E731

    def plain():
        model(x)

    def raw_one():
        store = {}
        h = target.register_forward_hook(lambda m, a, o: store.__setitem__("o", o.detach()))
        try:
            model(x)
        finally:
            h.remove()

    def raw_one_walk():  # the floor of a guard that walks the tree once per block (issue 18's design)
        store = {}
        walk_modules(model, unique=False)
        h = target.register_forward_hook(lambda m, a, o: store.__setitem__("o", o.detach()))
        try:
            model(x)
        finally:
            h.remove()

    def raw_one_flags():  # ... plus the least an exact restore of the flags needs: read all, compare all
        store = {}
        mods = walk_modules(model, unique=False)
        training = list(map(TRAINING, mods))  # C-level passes, as fast as Python reads them
        params = [p for p in chain.from_iterable(map(dict.values, map(PARAMS, mods))) if p is not None]
        grad = list(map(REQUIRES_GRAD, params))
        h = target.register_forward_hook(lambda m, a, o: store.__setitem__("o", o.detach()))
        try:
            model(x)
        finally:
            h.remove()
            assert list(map(TRAINING, mods)) == training and list(map(REQUIRES_GRAD, params)) == grad

    def cap_one():
        with capture(model, mid) as acts:
            model(x)
        return acts

    def intervene_one():
        with intervene(model, {mid: lambda o: o * 0.5}):
            model(x)

    def stream_one():
        with stream(model, mid, "mean"):
            model(x)

    def raw_all():
        store = {}
        hs = [m.register_forward_hook(lambda m, a, o, k=k: store.__setitem__(k, o.detach())) for k, m in enumerate(leaf_mods)]
        try:
            model(x)
        finally:
            for h in hs:
                h.remove()

    def cap_all():
        with capture(model, leaves):
            model(x)

    @torch.no_grad()  # as patching() runs its forwards
    def raw_patching():
        clean = {}
        hs = [m.register_forward_hook(lambda m, a, o, k=k: clean.__setitem__(k, o.detach().clone())) for k, m in enumerate(pmods)]
        try:
            m_clean = float(metric(model(x)))
        finally:
            for h in hs:
                h.remove()
        m_corr = float(metric(model(x2)))
        out = {}
        for k, m in enumerate(pmods):
            h = m.register_forward_hook(lambda mod, a, o, k=k: clean[k])
            try:
                out[k] = (float(metric(model(x2))) - m_corr) / (m_clean - m_corr)
            finally:
                h.remove()
        return out

    def our_patching():
        return patching(model, x, x2, pnames, metric, eval=False)

    def packed_patching():  # several runs share a forward (the samples are independent in eval mode)
        return patching(model, x, x2, pnames, metric, eval=False, batch_size=64)

    one = {"plain": plain, "raw hook, 1 module": raw_one, "  + one walk of the tree": raw_one_walk,
           "  + walk, read and compare all flags": raw_one_flags, "capture 1 module": cap_one,
           "intervene 1 module": intervene_one, "stream 1 module": stream_one}
    if NNsight is not None:  # on a copy, in case wrapping changes the model's own forward
        import copy

        wrapped = NNsight(copy.deepcopy(model))
        envoy = wrapped
        for part in mid.split("."):
            envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)

        def nnsight_one():
            with wrapped.trace(x):
                envoy.output.save()

        one["nnsight trace+save, 1 module"] = nnsight_one
    with torch.set_grad_enabled(grad):
        res = interleaved(one, rounds, inner=3)
        res_all = interleaved({"plain": plain, f"raw hooks, all {len(leaves)} leaves": raw_all,
                               f"capture all {len(leaves)} leaves": cap_all}, rounds, inner=1)
        res_p = interleaved({"plain": plain, f"raw-hook patching, {n_patch} modules": raw_patching,
                             f"patching, {n_patch} modules": our_patching,
                             f"patching, {n_patch} modules, batch_size=64": packed_patching}, rounds,
                            inner={"plain": n_patch + 1, f"raw-hook patching, {n_patch} modules": 1,
                                   f"patching, {n_patch} modules": 1, f"patching, {n_patch} modules, batch_size=64": 1})
    ref = our_patching().effect
    assert set(ref) == set(pnames)
    assert all(abs(packed_patching().effect[k] - ref[k]) < 1e-4 for k in pnames)
    mode = "autograd on (torch's default)" if grad else "under torch.no_grad()"
    tag = "autograd" if grad else "no_grad"
    print(f"[1] deep MLP, {n_mod} modules ({len(model)} Linear+Tanh blocks), batch 1, 1 thread, {mode}; "
          f"plain forward {res['plain'][0] * 1e3:.2f} ms")
    bound = 1.10 if n_mod <= 200 else 1.15
    print(f"    {'':34s} {'median':>8s}     {'median':>7s}   {'ratio of':>8s}")
    print(f"    {'':34s} {'time':>8s}     {'ratio':>7s}   {'minima':>8s}")
    for name, (t, ratio, rmin) in {**res, **res_all, **res_p}.items():
        if name == "plain":
            continue
        verdict = ""
        if name == "capture 1 module":
            verdict = goal(f"capture 1 of {n_mod} modules, {tag}", ratio, bound)
        elif name.startswith("patching") and not grad:  # patching runs without autograd: judged against no_grad forwards
            packed = ", batch_size=64" if "batch_size" in name else ""
            verdict = goal(f"patching {n_patch} of {n_mod} modules{packed}, {tag}", ratio, (n_patch + 2) * 1.10)
        print(f"    {name:34s} {t * 1e3:8.2f} ms  {ratio:7.3f}x  {rmin:7.3f}x  {verdict}")


# --------------------------------------------------------------------------------------------- 2. conv AE
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


def time_conv(rounds: int, batch: int) -> None:
    torch.manual_seed(0)
    model = conv_ae().eval()
    x = torch.randn(batch, 1, 64, 64)
    leaves = leaf_names(model)
    mods = [model.get_submodule(n) for n in leaves]
    n_params = sum(p.numel() for p in model.parameters())
    holder = {}

    def plain():
        model(x)

    def raw_all():
        store = {}
        hs = [m.register_forward_hook(lambda m, a, o, k=k: store.__setitem__(k, o.detach())) for k, m in enumerate(mods)]
        try:
            model(x)
        finally:
            for h in hs:
                h.remove()

    def forward_only():  # the forward inside an open block (the block's enter/exit not timed)
        with capture(model, leaves) as acts:
            t0 = CLOCK()
            model(x)
            dt = CLOCK() - t0
        holder["acts"] = acts
        return dt

    def entered():
        with capture(model, leaves) as acts:
            model(x)
        holder["acts"] = acts

    with torch.no_grad():
        res = interleaved({"plain": plain, "raw hooks, all leaves": raw_all,
                           "capture all leaves (forward)": forward_only,
                           "capture all leaves (enter+exit)": entered}, rounds, inner=1)
    assert len(holder["acts"]) == len(leaves)
    print(f"[2] conv AE: {n_params / 1e6:.2f} M parameters, {len(leaves)} leaf modules, batch {batch}x1x64x64; "
          f"plain forward {res['plain'][0] * 1e3:.2f} ms")
    for name, (t, ratio, rmin) in res.items():
        if name == "plain":
            continue
        verdict = goal(f"{name}, conv AE", ratio, 1.15) if name.startswith("capture") else ""
        print(f"    {name:34s} {t * 1e3:8.2f} ms  {ratio:7.3f}x  {rmin:7.3f}x  {verdict}")


# --------------------------------------------------------------------------------------------- 3. stream memory
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
    print(f"[3] stream(Variance) on every leaf, batch {batch}: peak memory vs number of batches")
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
    ap.add_argument("--rounds", type=int, default=41)
    ap.add_argument("--batch", type=int, default=32, help="batch size of the conv AE timing")
    ap.add_argument("--patch", type=int, default=8, help="number of modules patched in the deep-model case")
    ap.add_argument("--stream-batch", type=int, default=2, help="batch size of the streaming part (1000 forwards)")
    ap.add_argument("--part", choices=["deep", "conv", "stream", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="fewer rounds, 10 vs 100 batches")
    ap.add_argument("--autograd", choices=["on", "off", "both"], default="both",
                    help="deep case: time with autograd on (torch's default), under torch.no_grad(), or both")
    ap.add_argument("--stream-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.stream_child is not None:
        print(json.dumps(_stream_child(args.stream_child, args.stream_batch)))
        return
    rounds = 11 if args.quick else args.rounds
    avg = load_average()
    load = f", load average {avg[0]:.2f}" if avg is not None else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {rounds} interleaved rounds{load}")
    if args.part in ("deep", "all"):
        for grad in {"on": (True,), "off": (False,), "both": (True, False)}[args.autograd]:
            for n in (200, 1000):
                time_deep(n, rounds, args.patch, grad)
    if args.part in ("conv", "all"):
        time_conv(rounds, args.batch)
    if args.part in ("stream", "all"):
        memory_stream(args.stream_batch, (10, 100) if args.quick else (100, 1000))
    if RESULTS:
        print("goals: " + ", ".join(f"{label}: {m:.3f}x {'PASS' if ok else 'FAIL'} (<= {b:.2f}x)"
                                    for label, m, b, ok in RESULTS))


if __name__ == "__main__":
    main()
