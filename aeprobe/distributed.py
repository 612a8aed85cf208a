"""Splitting work across the ranks of a :mod:`torch.distributed` job.

``shard(x, rank, world_size)`` is this rank's contiguous block of ``x``; the blocks of ranks
``0 .. world_size - 1``, concatenated in rank order, are ``x`` again. Together with the reducers'
:meth:`~aeprobe.reducers.Reducer.all_reduce` this gives statistics over a dataset split across
processes (see ``examples/code_stats.py``, run with ``torchrun --nproc_per_node 2``)::

    dist.init_process_group("gloo")                       # torchrun provides rank and world size
    with aeprobe.stream(model, ["encoder"], "variance") as red:
        for xb in aeprobe.shard(batches):                  # rank and world size of the default group
            model(xb)
    red["encoder"].all_reduce()                            # every rank: mean and variance of all batches
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["shard", "shard_bounds"]


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s block of ``n`` items: contiguous, in rank order, sizes
    differing by at most one (the first ``n % world_size`` ranks get one more)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def shard(x: Any, rank: int | None = None, world_size: int | None = None, *, group=None) -> Any:
    """This rank's contiguous block of ``x`` (along the first dimension).

    ``x``: a tensor or numpy array (a view is returned), a list, tuple or range (sliced), or a
    ``torch.utils.data.Dataset`` with ``len()`` (a ``Subset``). ``rank`` and ``world_size``
    default to those of ``group`` (the default process group) when torch.distributed is
    initialised; give both, or neither. Blocks are balanced (see :func:`shard_bounds`) and keep
    the order, so concatenating the shards of all ranks gives back ``x`` -- with the same batch
    boundaries, if ``x`` is a list of batches.

    Example::

        >>> aeprobe.shard(list(range(10)), rank=1, world_size=3)
        [4, 5, 6]
    """
    if (rank is None) != (world_size is None):
        raise ValueError("shard: give both rank and world_size, or neither (then the process group's are used)")
    if rank is None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("shard: rank and world_size not given and torch.distributed is not initialised; "
                               "call torch.distributed.init_process_group(...) (torchrun) or pass them")
        rank, world_size = dist.get_rank(group), dist.get_world_size(group)
    if isinstance(x, (torch.Tensor, np.ndarray)):
        if x.ndim == 0:
            raise ValueError("shard: cannot split a 0-d tensor/array")
        lo, hi = shard_bounds(x.shape[0], rank, world_size)
        return x[lo:hi]
    if isinstance(x, (list, tuple, range)):
        lo, hi = shard_bounds(len(x), rank, world_size)
        return x[lo:hi]
    if isinstance(x, torch.utils.data.Dataset) and hasattr(x, "__len__"):
        lo, hi = shard_bounds(len(x), rank, world_size)
        return torch.utils.data.Subset(x, range(lo, hi))
    raise TypeError(
        f"shard: cannot split a {type(x).__name__}; pass a tensor, numpy array, list, tuple, range or a "
        "torch Dataset with len()"
    )
