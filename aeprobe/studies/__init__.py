"""The paper reproductions as library code: one module per study, one shared runner.

==============  ===========================================================================
``disks``       Newson et al.: the disk AE, Airy profile, homogeneity, code vs size, generalisation
``position``    Newson et al. Sect. 5: encoding and decoding the position of a Dirac
``bottleneck``  Manakov et al.: CAE bottleneck area x compression, and where a CAE overfits
``zoo``         the autoencoder bake-off under aeprobe's probes, decoder upsampling, resizing
==============  ===========================================================================

Each study module has a ``Config`` (``Config.for_mode("quick" | "full" | "smoke")``),
``measure(cfg, out, progress) -> results``, ``claims(results)``, ``build_report(results, claims)``
and ``headline(results)``; :func:`aeprobe.studies.runner.run_study` runs one and writes
``report.md``, ``report.html`` and ``results.json``. From Python::

    from aeprobe.studies import disks
    results = disks.run(disks.Config.for_mode("smoke"), "runs/disks_smoke")

From the shell: ``aeprobe run disks --quick --out runs/disks``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

#: study name -> (module, one-line summary); the CLI lists them in this order
STUDIES: dict[str, tuple[str, str]] = {
    "disks": ("aeprobe.studies.disks",
              "Newson et al. disks: Airy decoding profile, homogeneity, code vs size, generalisation"),
    "position": ("aeprobe.studies.position", "Newson et al. Sect. 5: encoding and decoding a Dirac's position"),
    "bottleneck": ("aeprobe.studies.bottleneck",
                   "Manakov et al. CAE bottleneck: area x compression, identity, encoder vs decoder overfitting"),
    "zoo": ("aeprobe.studies.zoo", "the autoencoder bake-off under aeprobe's probes, upsampling, progressive resizing"),
}


def load_study(name: str) -> ModuleType:
    """The module of study ``name`` (imported on first use)."""
    try:
        module, _ = STUDIES[name]
    except KeyError:
        raise ValueError(f"unknown study {name!r}; choose from {', '.join(STUDIES)}") from None
    return importlib.import_module(module)
