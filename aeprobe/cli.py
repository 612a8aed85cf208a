"""The ``aeprobe`` command (also ``python -m aeprobe``).

    aeprobe --help                                   # lists the commands and the studies
    aeprobe run disks --quick --out runs/disks       # one study; prints its headline figures
    aeprobe run bottleneck --help                    # the shared flags plus the study's own

Every study takes the same flags, defined once in :func:`aeprobe.flags.shared_flags`: ``--quick`` (default) /
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
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from aeprobe.flags import (DEBUG_ENV, THREADS_ENV, UsageError, mode_of, resolve_threads, shared_flags,  # noqa: F401
                           thread_count)

__all__ = ["main", "build_parser", "shared_flags", "resolve_threads", "thread_count", "COMMANDS", "Command",
           "THREADS_ENV", "UsageError"]


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
