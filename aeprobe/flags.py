"""The flags and thread rules every ``aeprobe`` command shares (the studies and ``aeprobe inspect``).

    p = argparse.ArgumentParser(parents=[shared_flags()])
    args = p.parse_args(["--smoke", "--threads", "1"])
    mode_of(args), resolve_threads(args.threads)          # ('smoke', 1)
    with thread_count(resolve_threads(args.threads)):    # torch threads for the block, restored after
        ...

Kept apart from :mod:`aeprobe.cli` so that the commands it dispatches to import these without
importing the dispatcher.
"""
from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Iterator

__all__ = ["THREADS_ENV", "DEBUG_ENV", "UsageError", "resolve_threads", "thread_count", "shared_flags", "mode_of"]

#: environment variable that sets the torch thread count when ``--threads`` is not given
THREADS_ENV = "AEPROBE_THREADS"
#: set it to see the traceback behind an ``aeprobe: error:`` line
DEBUG_ENV = "AEPROBE_DEBUG"


class UsageError(ValueError):
    """A mistake in the command line or the environment (printed as one line, exit code 2)."""


# ----------------------------------------------------------------------------- threads


def resolve_threads(requested: int | None = None, env: dict | None = None) -> int | None:
    """The torch thread count a run should use: ``requested`` (``--threads``), else
    ``$AEPROBE_THREADS``, else None (= leave torch's default, all physical cores)."""
    env = os.environ if env is None else env
    if requested is not None:
        if requested < 1:
            raise UsageError(f"--threads must be >= 1, got {requested}")
        return int(requested)
    raw = env.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise UsageError(f"{THREADS_ENV} must be a positive integer, got {raw!r}") from None
    if n < 1:
        raise UsageError(f"{THREADS_ENV} must be >= 1, got {n}")
    return n


@contextlib.contextmanager
def thread_count(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` torch threads (None: unchanged); the previous count is restored
    (:func:`aeprobe.device.torch_threads`, imported here so that parsing flags does not import torch)."""
    from aeprobe.device import torch_threads

    with torch_threads(n) as got:
        yield got


# ----------------------------------------------------------------------------- parser


def shared_flags(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The flags every study takes (a parent parser for ``argparse``; added to ``parser`` when given)."""
    p = parser if parser is not None else argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("shared flags")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU scale, minutes on 2 cores (default)")
    mode.add_argument("--full", action="store_true", help="paper scale (hours on CPU; a GPU helps)")
    mode.add_argument("--smoke", action="store_true", help="tiny run, seconds (what the tests use)")
    g.add_argument("--out", type=Path, default=None,
                   help="output folder for report.md, report.html, results.json and figures (default runs/STUDY)")
    g.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    g.add_argument("--threads", type=int, default=None,
                   help=f"torch CPU threads (default: ${THREADS_ENV}, else torch's default = all physical cores); "
                        "independent trainings run in that many single-thread processes")
    g.add_argument("--no-progress", action="store_true",
                   help="no live status line: one line per stage (also when the output is not a terminal)")
    g.add_argument("--seed", type=int, default=None, help="training seed (default: the study's, 0)")
    return p


def mode_of(args: argparse.Namespace) -> str:
    """``quick`` (default), ``full`` or ``smoke`` from the shared flags."""
    return "full" if getattr(args, "full", False) else "smoke" if getattr(args, "smoke", False) else "quick"
