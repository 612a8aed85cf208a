"""Reducers across torch.distributed ranks (2-rank gloo on CPU): after ``all_reduce`` every rank
holds the single-process result, to float64 rounding; ``aeprobe.shard`` splits data in order.

The 2-rank runs are spawned with ``torch.multiprocessing`` (file:// rendezvous in the test's tmp
folder, 30 s collective timeout, and the whole run killed after ``_DEADLINE`` s: no test can hang
CI). Each rank computes the single-process reference itself, on the same data, and asserts; an
assertion in a rank fails the test with that rank's traceback. One spawn checks every reducer, so
the suite pays the start-up of two torch processes (a few seconds) once.

Tolerances: the shards are fed in the same batches as the single-process run, so the activations
are bitwise identical and only the merge's float64 rounding differs: ``rtol=1e-12`` (about 5000
float64 eps) on means and variances of data of order 1; min/max exact.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given
from hypothesis import strategies as st

import aeprobe
from aeprobe.distributed import shard, shard_bounds
from aeprobe.reducers import Fold, Mean, MinMax, Projection, Variance

ROOT = Path(__file__).resolve().parents[1]
_DEADLINE = 120  # seconds for a whole 2-rank run (normally a few)
F64 = dict(rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------- spawning


def _spawn(fn, tmp_path: Path, *args, nprocs: int = 2, backend: str = "gloo") -> None:
    """Run ``fn(rank, world, *args)`` in ``nprocs`` processes of one process group; fail (never hang)."""
    init = f"file://{tmp_path / 'rendezvous'}"
    ctx = mp.start_processes(_entry, args=(fn, nprocs, init, backend, args), nprocs=nprocs, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + _DEADLINE
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"the {nprocs}-rank run did not finish in {_DEADLINE} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()


def _entry(rank: int, fn, world: int, init: str, backend: str, args: tuple) -> None:
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=world, timeout=timedelta(seconds=30))
    try:
        fn(rank, world, *args)
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        dist.destroy_process_group()


def _same_on_every_rank(t: torch.Tensor) -> None:
    """Bitwise: every rank holds the same global result."""
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    assert all(torch.equal(p, parts[0]) for p in parts)


# --------------------------------------------------------------------------------------- rank code


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _batches(n: int = 96, size: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return list((3.0 + 2.0 * torch.randn(n, 6, generator=g)).split(size))


def _fed(make, batches):
    r = make()
    for b in batches:
        r.update(b)
    return r


def _stream_variance(rank: int, world: int, dev: str) -> None:
    """The issue's claim: a 2-rank ``stream(model, names, "variance")`` + ``red[name].all_reduce()``
    equals the single-process variance and mean."""
    model, batches = _model().to(dev), [b.to(dev) for b in _batches()]
    names = ["0", "2"]
    with torch.no_grad(), aeprobe.stream(model, names, "variance") as ref:
        for xb in batches:
            model(xb)
    with torch.no_grad(), aeprobe.stream(model, names, "variance") as red:
        for xb in aeprobe.shard(batches):  # rank and world size of the process group
            model(xb)
    for name in names:
        local_count = red[name].count
        assert red[name].all_reduce() is red[name]
        assert local_count < red[name].count == ref[name].count == 96
        torch.testing.assert_close(red[name].mean, ref[name].mean, **F64)
        torch.testing.assert_close(red[name].result(), ref[name].result(), **F64)
        assert red[name].mean.device == ref[name].mean.device
        _same_on_every_rank(red[name].result())
        _same_on_every_rank(red[name].mean)


def _every_reducer(rank: int, world: int, dev: str) -> None:
    """Every reducer, on uneven shards and with a rank that saw no data, against one process."""
    x = torch.cat(_batches()).to(dev)
    xi = torch.randint(-50, 50, (96, 4), generator=torch.Generator().manual_seed(2)).to(dev)
    directions = torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    makers = {
        "mean": (lambda: Mean(), x),
        "mean_dims": (lambda: Mean(dims=(0, 1)), x.reshape(96, 2, 3)),
        "variance_ddof1": (lambda: Variance(ddof=1), x),
        "variance_dims": (lambda: Variance(dims=(0, 2)), x.reshape(96, 2, 3)),
        "minmax": (lambda: MinMax(), x),
        "minmax_int": (lambda: MinMax(), xi),
        # one-signed data: a rank without data must not contribute a 0 to the min or the max
        "minmax_positive": (lambda: MinMax(), x.abs() + 1),
        "minmax_negative": (lambda: MinMax(), -xi.abs() - 1),
        "projection": (lambda: Projection(directions, keep=True), x),
        "fold": (lambda: Fold(lambda s, b: (b.double() ** 2).sum(0) + (0 if s is None else s),
                              merge=lambda a, b: a + b), x),
    }
    # splits in batch units (bitwise-identical batches): uneven, and all data on rank 0
    splits = {"uneven": [0, 3, 12], "rank1_empty": [0, 12, 12]}
    for label, (a, b, c) in splits.items():
        for name, (make, data) in makers.items():
            batches = list(data.split(8))
            ref = _fed(make, batches)
            mine = batches[a:b] if rank == 0 else batches[b:c]
            red = _fed(make, mine).all_reduce()
            where = f"{name} ({label})"
            if name.startswith(("mean", "variance")):
                assert red.count == ref.count, where
                if name.startswith("variance"):
                    torch.testing.assert_close(red.mean, ref.mean, **F64, msg=where)
                torch.testing.assert_close(red.result(), ref.result(), **F64, msg=where)
                _same_on_every_rank(red.result())
            elif name.startswith("minmax"):
                assert all(torch.equal(p, q) for p, q in zip(red.result(), ref.result())), where
                _same_on_every_rank(red.min)
            elif name == "projection":
                assert red.stats.count == 96, where
                torch.testing.assert_close(red.mean, ref.mean, **F64, msg=where)
                torch.testing.assert_close(red.result(), ref.result(), **F64, msg=where)
                torch.testing.assert_close(red.coordinates(), ref.coordinates(), **F64, msg=where)
            else:
                assert red.updates == ref.updates, where
                torch.testing.assert_close(red.result(), ref.result(), **F64, msg=where)
                _same_on_every_rank(red.result())


def _misuse_fails_on_every_rank(rank: int, world: int, dev: str) -> None:
    """Ranks that disagree raise the same error everywhere (nobody is left waiting in a collective)."""
    feats = 4 if rank == 0 else 5
    for make in (Mean, Variance, MinMax):
        red = _fed(make, [torch.randn(3, feats, device=dev)])
        try:
            red.all_reduce()
        except ValueError as exc:
            assert "different shapes" in str(exc), exc
        else:
            raise AssertionError(f"{make.__name__}.all_reduce accepted shapes (4,) and (5,)")
    p = _fed(lambda: Projection(torch.full((1, 4), float(rank))), [torch.randn(2, 4)])
    try:
        p.all_reduce()
    except ValueError as exc:
        assert "different directions" in str(exc), exc
    else:
        raise AssertionError("Projection.all_reduce accepted different directions")
    # the process group still works after the refusals
    t = torch.ones(1, device=dev)
    dist.all_reduce(t)
    assert t.item() == world


def _groups(rank: int, world: int, dev: str) -> None:
    """``group=``: a subgroup of all ranks merges; a one-rank group leaves the state as it was."""
    batches = _batches()
    everyone = dist.new_group(list(range(world)))
    singles = [dist.new_group([r]) for r in range(world)]  # every rank creates every group
    ref = _fed(Variance, batches)
    red = _fed(Variance, shard(batches, rank, world)).all_reduce(group=everyone)
    torch.testing.assert_close(red.result(), ref.result(), **F64)
    alone = _fed(Variance, shard(batches, rank, world))
    before = alone.result().clone()
    alone.all_reduce(group=singles[rank])
    assert torch.equal(alone.result(), before)


def _all_checks(rank: int, world: int, dev: str) -> None:
    _stream_variance(rank, world, dev)
    _every_reducer(rank, world, dev)
    _misuse_fails_on_every_rank(rank, world, dev)
    _groups(rank, world, dev)


# --------------------------------------------------------------------------------------- tests


def test_two_gloo_ranks_hold_the_single_process_result_after_all_reduce(tmp_path):
    _spawn(_all_checks, tmp_path, "cpu")


@pytest.mark.slow
def test_the_torchrun_example_gives_the_single_process_statistics(tmp_path):
    """README example: ``torchrun --nproc_per_node 2 examples/code_stats.py`` (gloo) writes the same
    code statistics as one process."""
    out2 = tmp_path / "two.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "examples" / "code_stats.py"), "--out", str(out2), "--images", "96"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=_DEADLINE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spec = importlib.util.spec_from_file_location("code_stats_example", ROOT / "examples" / "code_stats.py")
    code_stats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code_stats)
    one = code_stats.main(["--out", str(tmp_path / "one.json"), "--images", "96"])
    two = json.loads(out2.read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1 and two["count"] == one["count"] == 96
    for key in ("mean", "variance"):
        torch.testing.assert_close(torch.tensor(two[key]), torch.tensor(one[key]), **F64)
    assert two["min"] == one["min"] and two["max"] == one["max"]


# --------------------------------------------------------------------------------------- shard


@given(n=st.integers(0, 200), world=st.integers(1, 9))
def test_shards_are_balanced_and_concatenate_to_the_whole(n, world):
    x = list(range(n))
    parts = [shard(x, r, world) for r in range(world)]
    assert sum(parts, []) == x
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert [shard_bounds(n, r, world) for r in range(world)] == [
        (sum(sizes[:r]), sum(sizes[: r + 1])) for r in range(world)]


def test_shard_takes_tensors_arrays_ranges_and_datasets():
    import numpy as np

    t = torch.arange(10).reshape(5, 2)
    assert torch.equal(shard(t, 1, 2), t[3:]) and shard(t, 1, 2).data_ptr() == t[3:].data_ptr()  # a view
    assert np.array_equal(shard(np.arange(7), 0, 3), np.arange(3))
    assert shard(range(10), 2, 3) == range(7, 10) and shard((1, 2, 3), 0, 2) == (1, 2)
    ds = torch.utils.data.TensorDataset(torch.arange(6.0))
    sub = shard(ds, 1, 4)
    assert [sub[i][0].item() for i in range(len(sub))] == [2.0, 3.0]


def test_shard_refuses_what_it_cannot_split_and_half_given_ranks():
    with pytest.raises(TypeError, match="cannot split a set"):
        shard({1, 2}, 0, 2)
    with pytest.raises(ValueError, match="both rank and world_size"):
        shard([1], rank=0)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        shard([1], 2, 2)
    with pytest.raises(RuntimeError, match="not initialised"):
        shard([1, 2])
