"""Run a study of :mod:`aeprobe.studies` in smoke mode into a folder (shared by the study tests)."""
from __future__ import annotations

import json
from pathlib import Path

from aeprobe.studies import load_study


def run_smoke(name: str, out: Path, **overrides) -> tuple[Path, dict]:
    """Run study ``name`` in smoke mode (config fields replaced by ``overrides``) into ``out``;
    return ``(out, results.json contents)``. Tests pin torch to one thread, so the study's
    independent trainings run in this process."""
    from dataclasses import replace

    study = load_study(name)
    cfg = replace(study.Config.for_mode("smoke"), **overrides)
    returned = study.run(cfg, out)
    saved = json.loads((out / "results.json").read_text())
    assert returned == saved, "run() returns what it saved"
    return out, saved
