"""The ``aeprobe`` command (also ``python -m aeprobe``).

    aeprobe --help                                   # lists the commands and the studies
    aeprobe run disks --quick --out runs/disks       # one study; prints its headline figures
    aeprobe run bottleneck --help                    # the shared flags plus the study's own

Every study takes the same flags, defined once in :func:`shared_flags`: ``--quick`` (default) /
``--full`` / ``--smoke``, ``--out``, ``--device``, ``--threads``, ``--no-progress``, ``--seed``.

Threads: torch's own default (all physical cores) unless ``--threads N`` or ``$AEPROBE_THREADS`` says
otherwise (:func:`resolve_threads`); a study's independent trainings then run in that many
single-thread processes. The report records the thread count and the machine load.

Commands live in :data:`COMMANDS` (name -> :class:`Command`: a help line, an argument adder, a handler
``args -> exit code``); ``inspect`` is :mod:`aeprobe.inspection.command`. Errors the user can fix (a bad
``--data``, an impossible grid) are one ``aeprobe: error: ...`` line with exit code 2, not a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

__all__ = ["main", "build_parser", "shared_flags", "resolve_threads", "thread_count", "COMMANDS", "Command",
           "THREADS_ENV", "UsageError"]

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
    """Run the block with ``n`` torch threads (None: unchanged); the previous count is restored."""
    import torch

    prev = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(prev)


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


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser, str | None], None]
    handler: Callable[[argparse.Namespace, Sequence[str]], int]


def _add_run(parser: argparse.ArgumentParser, study: str | None) -> None:
    from aeprobe.studies import STUDIES, load_study

    sub = parser.add_subparsers(dest="study", required=True, metavar="STUDY",
                                title="studies", description="\n".join(f"{k:<11} {s}" for k, (_, s) in STUDIES.items()))
    parent = shared_flags()
    for name, (_, summary) in STUDIES.items():
        sp = sub.add_parser(name, help=summary, description=summary, parents=[parent],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == study:  # the study's own flags; only the chosen study is imported
            mod = load_study(name)
            if mod.__doc__:
                sp.epilog = mod.__doc__.strip()
            adder = getattr(mod, "add_arguments", None)
            if adder is not None:
                adder(sp.add_argument_group(f"{name} flags"))


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from aeprobe.progress import Progress
    from aeprobe.studies import load_study
    from aeprobe.studies.runner import run_study

    study = load_study(args.study)
    out = args.out if args.out is not None else Path("runs") / args.study
    threads = resolve_threads(args.threads)
    with thread_count(threads):
        cfg = study.make_config(mode_of(args), args)
        with Progress(study.NAME, live=False if args.no_progress else None, stages=len(study.STAGES)) as progress:
            results = run_study(study, cfg, out, progress=progress, command=["aeprobe", *argv])
    print(study.headline(results))
    cl = results.get("claims", [])
    failed = [c["id"] for c in cl if c.get("met") is False]
    if failed:
        print(f"{len(failed)} of {len(cl)} claims not met ({', '.join(failed)}): see the report")
    print(f"wrote {out}/report.md, {out}/report.html, {out}/results.json")
    return 0


#: the sub-commands of ``aeprobe``
COMMANDS: dict[str, Command] = {
    "run": Command("run one study (disks, position, bottleneck, zoo) and write its report", _add_run, _run),
    "inspect": Command("inspect your own trained autoencoder and write its diagnostic report",
                       lambda p, s: importlib.import_module("aeprobe.inspection.command").add_arguments(p, s),
                       lambda a, argv: importlib.import_module("aeprobe.inspection.command").handle(a, argv)),
}


def _chosen_study(argv: Sequence[str]) -> str | None:
    """The study named after ``run`` in ``argv`` (to add only its own flags), else None."""
    argv = list(argv)
    if "run" not in argv:
        return None
    rest = [a for a in argv[argv.index("run") + 1:] if not a.startswith("-")]
    return rest[0] if rest else None


def build_parser(study: str | None = None) -> argparse.ArgumentParser:
    from aeprobe import __version__
    from aeprobe.studies import STUDIES

    p = argparse.ArgumentParser(
        prog="aeprobe", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Open trained autoencoders up and check what is inside against closed-form theory.",
        epilog="studies (aeprobe run STUDY):\n" + "\n".join(f"  {k:<11} {s}" for k, (_, s) in STUDIES.items())
               + "\n\nexamples: aeprobe run disks --quick --out runs/disks; aeprobe inspect --help (your own model)")
    p.add_argument("--version", action="version", version=f"aeprobe {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        sp = sub.add_parser(name, help=cmd.help, description=cmd.help,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_arguments(sp, study)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aeprobe`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen_study(argv))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].handler(args, argv)
    except ValueError as exc:  # UsageError, a bad data spec, an impossible grid: the message names the argument
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"aeprobe: error: {exc} (set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 2
