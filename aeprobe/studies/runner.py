"""Run one study and write its outputs: the part every study shares.

    from aeprobe.studies import disks
    from aeprobe.studies.runner import run_study
    results = run_study(disks, disks.Config.for_mode("smoke"), "runs/disks_smoke")

:func:`run_study` notes the run (date, threads, machine load, wall time: :class:`aeprobe.report.RunRecord`),
calls the study's ``measure``, then computes its claims from the (JSON-able) results, builds the
report from them and writes ``results.json``, ``report.md`` and ``report.html`` with
:func:`aeprobe.report.write_outputs`. Claims and report are functions of ``results`` alone, so
they can be rebuilt from a saved ``results.json`` (:func:`rewrite_report`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from aeprobe.progress import Progress
from aeprobe.report import Claim, Report, RunRecord, run_sentence, write_outputs
from aeprobe.reporting import to_jsonable

__all__ = ["run_study", "rewrite_report", "finish_report"]


def finish_report(study: ModuleType, results: dict[str, Any]) -> tuple[list[Claim], Report]:
    """The study's claims and report for ``results``, with the run section appended; the readings of
    the report's figures are stored in ``results["readings"]`` (figure file -> reading)."""
    claims = study.claims(results)
    report = study.build_report(results, claims)
    if "run" in results:
        report.heading("Run")
        report.paragraph(run_sentence(results["run"]))
    results["readings"] = report.readings()
    return claims, report


def run_study(study: ModuleType, cfg: Any, out: str | os.PathLike, *, progress: Progress | None = None,
              command: Sequence[str] = ()) -> dict[str, Any]:
    """Measure, judge, report: returns the results as written to ``out/results.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = RunRecord.start(command=command, workers=getattr(cfg, "workers", None) or 1)
    own = progress is None
    progress = Progress(study.NAME, enabled=False) if own else progress
    try:
        results = to_jsonable(study.measure(cfg, out, progress))
    finally:
        if own:
            progress.close()
    results["study"] = study.NAME
    record.workers = int(results.get("workers", record.workers) or 1)
    results["run"] = record.finish(mode=getattr(cfg, "mode", None),
                                   stage_seconds={name: round(sec, 2) for name, sec in progress.timings})
    claims, report = finish_report(study, results)
    results["claims"] = [c.to_dict() for c in claims]
    write_outputs(out, report, results)
    return results


def rewrite_report(study: ModuleType, out: str | os.PathLike) -> dict[str, Any]:
    """Rebuild ``report.md``, ``report.html`` and the claims of ``out/results.json`` from its numbers."""
    out = Path(out)
    results = json.loads((out / "results.json").read_text())
    claims, report = finish_report(study, results)
    results["claims"] = [c.to_dict() for c in claims]
    write_outputs(out, report, results)
    return results
