"""Device selection: CUDA when present, CPU otherwise; every entry point takes ``device=``.

Also the CPU thread count of experiment scripts: :func:`choose_threads` decides it,
:func:`torch_threads` sets it for a block and restores the previous value; :func:`load_average`
is ``os.getloadavg()`` where the platform has one (Unix) and ``None`` elsewhere (Windows).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a :class:`torch.device`; ``None`` means CUDA if available, else CPU.

    Raises ``ValueError`` naming the device when CUDA is asked for but not available.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available on this machine")
    return dev


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15-minute load averages (``os.getloadavg()``), or ``None`` where the platform
    has none (``os.getloadavg`` is Unix-only) or cannot tell."""
    getloadavg = getattr(os, "getloadavg", None)
    if getloadavg is None:
        return None
    try:
        return tuple(float(v) for v in getloadavg())
    except OSError:
        return None


def choose_threads(requested: int | None = None) -> int:
    """Torch CPU threads: ``requested`` (at least 1), else 1 when other processes already keep a
    core busy on a machine of at most 2 cores, else up to 2 (also when the load is unknown,
    see :func:`load_average`).

    Measured on the 2-core machine: with another process using one core, 2 threads train the
    Newson disk AE at ~430 img/s and 1 thread at ~2300 img/s (oversubscription); on an idle
    machine 2 threads give ~4000 img/s.
    """
    if requested is not None:
        return max(1, int(requested))
    cpus = os.cpu_count() or 1
    load = load_average()
    return 1 if (cpus <= 2 and load is not None and load[0] >= 1.0) else min(2, cpus)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(n)``; the previous count is restored on exit."""
    prev = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(prev)
