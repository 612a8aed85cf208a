"""Newson et al., Sect. 5: encoding and decoding the position of a Dirac.

A thin entry point: the study is library code in :mod:`aeprobe.studies.position`, and this script is
``aeprobe run position`` (see ``aeprobe run position --help`` for its flags)::

    python experiments/position.py --quick --out runs/position      # = aeprobe run position --quick --out runs/position
    python experiments/position.py --smoke --out /tmp/position      # seconds
    python experiments/position.py --full --out runs/position_full
"""
from __future__ import annotations

import sys

from aeprobe.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run the study with command-line flags ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    return cli_main(["run", "position", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
