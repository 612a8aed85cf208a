"""The autoencoder zoo ("The Great Autoencoder Bake Off") under aeprobe's probes, plus decoder upsampling and progressive resizing.

A thin entry point: the study is library code in :mod:`aeprobe.studies.zoo`, and this script is
``aeprobe run zoo`` (see ``aeprobe run zoo --help`` for its flags)::

    python experiments/zoo.py --quick --out runs/zoo      # = aeprobe run zoo --quick --out runs/zoo
    python experiments/zoo.py --smoke --out /tmp/zoo      # seconds
    python experiments/zoo.py --full --out runs/zoo_full
"""
from __future__ import annotations

import sys

from aeprobe.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run the study with command-line flags ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    return cli_main(["run", "zoo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
