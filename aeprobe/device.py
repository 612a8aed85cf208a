"""Device selection: CUDA when present, CPU otherwise; every entry point takes ``device=``.

Also :func:`torch_threads`, which sets torch's CPU thread count for a block and restores the
previous value, and :func:`load_average`: ``os.getloadavg()`` where the platform has one (Unix),
``None`` elsewhere (Windows) -- the one place aeprobe reads the machine load. Thread counts are
torch's own default unless a user asks (``--threads``, ``AEPROBE_THREADS``; see :mod:`aeprobe.cli`).
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


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(n)`` (None: the count as it is); the previous count is
    restored on exit either way."""
    prev = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(1, int(n)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(prev)
