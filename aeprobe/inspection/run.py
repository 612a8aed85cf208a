"""``aeprobe.inspect``: every section of the report on one autoencoder, one progress display, one writer.

::

    rep = aeprobe.inspect(model, x_train, x_test, labels=y_train, out="runs/inspect")
    rep.applies("checkerboard"), rep.reading("overfitting")
    rep.results["ablation"]["ratio_median"]          # every number, as in results.json
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aeprobe.inspection.budget import Budget
from aeprobe.inspection.readings import build_report, claims, reading
from aeprobe.inspection.sections import SECTIONS, Context, NotApplicable
from aeprobe.progress import Progress
from aeprobe.report import Report, RunRecord, write_outputs
from aeprobe.reporting import to_jsonable
from aeprobe.utils import check_images
from aeprobe.view import Autoencoder, as_view

__all__ = ["inspect", "InspectReport", "preflight"]


@dataclass
class InspectReport:
    """What :func:`inspect` wrote: ``results`` (as in ``results.json``: one key per section), the
    rendered ``report``, and the ``paths`` of ``report.md``, ``report.html`` and ``results.json``."""

    out: Path
    results: dict[str, Any]
    report: Report
    paths: dict[str, Path]

    def section(self, key: str) -> dict[str, Any]:
        return self.results[key]

    def applies(self, key: str) -> bool:
        return self.results[key]["status"] == "done"

    def reading(self, key: str) -> str:
        return reading(key, self.results[key])

    def __repr__(self) -> str:
        lines = [f"InspectReport({self.out})"]
        for key in SECTIONS:
            text = self.reading(key)
            lines.append(f"  {key:<13} {self.results[key]['status']:<15} {text if len(text) <= 100 else text[:97] + '...'}")
        return "\n".join(lines)


def _labels(y, n: int, name: str) -> np.ndarray | None:
    if y is None:
        return None
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must be one label per image ({n}), got shape {y.shape}")
    return y


def preflight(ae: Autoencoder, x: torch.Tensor) -> None:
    """Run the view once on two images; a model that cannot read them is a ``ValueError`` naming the shapes."""
    if not (ae.can_encode or ae.can_reconstruct):
        raise ValueError(f"{type(ae.model).__name__} can neither encode nor reconstruct: read it with "
                         "aeprobe.autoencoder(model, encoder=..., decoder=...) (command line: --view)")
    shape = tuple(x.shape[1:])
    try:
        with ae.evaluating():
            if ae.can_reconstruct:
                xh = ae.reconstruct(x[:2])
            if ae.can_encode:
                ae.encode(x[:2])
    except (RuntimeError, TypeError, ValueError, IndexError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{type(ae.model).__name__} cannot read the images of shape {shape} "
                         f"({type(exc).__name__}: {first})") from exc
    if ae.can_reconstruct and tuple(xh.shape[1:]) != shape:
        raise ValueError(f"the reconstruction has shape {tuple(xh.shape[1:])} but the images {shape}: pick the "
                         "reconstruction with output= (command line: --view '{\"output\": KEY}')")


def inspect(ae, x_train, x_test=None, *, labels=None, labels_test=None, out: str | os.PathLike = "runs/inspect",
            quick: bool = True, budget: Budget | None = None, seed: int = 0, progress: bool | Progress = True,
            strict: bool = False, data: dict[str, str] | None = None, command=(), cli: bool = False) -> InspectReport:
    """Inspect an autoencoder and write ``report.md``, ``report.html`` and ``results.json`` to ``out``.

    ``ae``: a model or an :func:`aeprobe.autoencoder` view (a plain model is read with the default
    detection). ``x_train``: images the model was trained on, ``[N, ...]`` in the model's input
    layout; ``x_test``: held-out images (the overfitting split needs them; identity, attribution,
    ablation and interpolation use them when given). ``labels`` / ``labels_test``: one integer label
    per image (the linear probe). ``quick``: the :meth:`Budget.quick` caps (about 70 bare epochs for a
    small conv AE and 2,000 images of 32x32), else :meth:`Budget.full`; ``budget`` overrides both.
    ``progress``: one status line across the sections (a :class:`Progress` to share one). ``strict``:
    re-raise a section's error instead of recording it. ``data``: descriptions of the data for the
    report. The model is left as found (every probe restores it); nothing is downloaded.

    Example::

        rep = inspect(aeprobe.autoencoder(seq, encoder=["0", "1"], decoder=["2", "3"]), x, x_test, out="runs/i")
        print(rep)                      # one line per section: done / not applicable (why) / failed
    """
    view = as_view(ae, name="ae")
    x_train = check_images(x_train, "x_train").detach().cpu()
    if x_test is not None:
        x_test = check_images(x_test, "x_test").detach().cpu()
        if x_test.shape[1:] != x_train.shape[1:]:
            raise ValueError(f"x_test has per-image shape {tuple(x_test.shape[1:])} but x_train "
                             f"{tuple(x_train.shape[1:])}")
    y_train = _labels(labels, x_train.shape[0], "labels")
    y_test = _labels(labels_test, x_test.shape[0], "labels_test") if x_test is not None else None
    budget = budget or (Budget.quick() if quick else Budget.full())
    preflight(view, x_train)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = RunRecord.start(command=command)
    ctx = Context(ae=view, x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test, budget=budget, out=out,
                  seed=seed, cli=cli)
    own = not isinstance(progress, Progress)
    prog = Progress("inspect", enabled=bool(progress), stages=len(SECTIONS)) if own else progress
    results: dict[str, Any] = {}
    try:
        for key, measure in SECTIONS.items():
            t0 = time.perf_counter()
            with prog.stage(key):
                try:
                    section = {"status": "done", **measure(ctx)}
                except NotApplicable as exc:
                    section = {"status": "not applicable", "why": str(exc)}
                except Exception as exc:  # noqa: BLE001 -- one failing section must not lose the others
                    if strict:
                        raise
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    section = {"status": "failed", "error": f"{type(exc).__name__}: {first}"}
                    warnings.warn(f"aeprobe inspect: section {key!r} failed ({section['error']})", RuntimeWarning,
                                  stacklevel=2)
            section["seconds"] = round(time.perf_counter() - t0, 3)
            results[key] = to_jsonable(section)
    finally:
        if own:
            prog.close()
    for key, s in results.items():
        s["reading"] = reading(key, s)
    model = view.model
    results["model"] = dict(name=type(model).__name__, view=repr(view).splitlines(),
                            parameters=int(sum(p.numel() for p in model.parameters())))
    results["data"] = dict(train=f"{x_train.shape[0]} images of shape {tuple(x_train.shape[1:])}",
                           test=None if x_test is None else f"{x_test.shape[0]} images")
    results["data"].update(data or {})
    if y_train is not None and "labels" not in results["data"]:
        results["data"]["labels"] = f"{len(np.unique(y_train))} classes"
    results["mode"] = budget.mode
    results["budget"] = to_jsonable(budget)
    results["claims"] = [c.to_dict() for c in claims(results)]
    results["run"] = record.finish(mode=budget.mode, stage_seconds={k: results[k]["seconds"] for k in SECTIONS})
    rep = build_report(results)
    results["readings"] = rep.readings()
    paths = write_outputs(out, rep, results)
    return InspectReport(out=out, results=results, report=rep, paths=paths)
