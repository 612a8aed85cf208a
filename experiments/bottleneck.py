"""CAE bottleneck study (Manakov et al., "Walking the tightrope") and the encoder-vs-decoder overfitting split.

A thin entry point: the study is library code in :mod:`aeprobe.studies.bottleneck`, and this script is
``aeprobe run bottleneck`` (see ``aeprobe run bottleneck --help`` for its flags)::

    python experiments/bottleneck.py --quick --out runs/bottleneck      # = aeprobe run bottleneck --quick --out runs/bottleneck
    python experiments/bottleneck.py --smoke --out /tmp/bottleneck      # seconds
    python experiments/bottleneck.py --full --out runs/bottleneck_full
"""
from __future__ import annotations

import sys

from aeprobe.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Run the study with command-line flags ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    return cli_main(["run", "bottleneck", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
