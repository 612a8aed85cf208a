"""Newson et al., "Processing simple geometric attributes with autoencoders": the disk study.

A thin entry point: the study is library code in :mod:`aeprobe.studies.disks`, and this script is
``aeprobe run disks`` (see ``aeprobe run disks --help`` for its flags)::

    python experiments/disks.py --quick --out runs/disks      # = aeprobe run disks --quick --out runs/disks
    python experiments/disks.py --smoke --out /tmp/disks      # seconds
    python experiments/disks.py --full --out runs/disks_full
"""
from __future__ import annotations

import sys

from aeprobe.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run the study with command-line flags ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    return cli_main(["run", "disks", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
