"""``python -m aeprobe`` = the ``aeprobe`` command (see :mod:`aeprobe.cli`)."""
from aeprobe.cli import main

raise SystemExit(main())
