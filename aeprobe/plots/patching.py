"""Figure of an activation-patching experiment (:func:`aeprobe.patching`): one bar per module."""
from __future__ import annotations

import math
import os
from pathlib import Path

from aeprobe.plots.common import savefig, subplots

__all__ = ["patching_bars"]


def patching_bars(report, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Horizontal bars of ``report.effect`` (0 = no change, 1 = clean behaviour restored), in report order.

    ``report`` is a :class:`aeprobe.activation_patching.PatchingReport` (anything with ``names``, ``effect``,
    ``clean`` and ``corrupted``). Undefined (NaN) effects are drawn as empty rows marked "n/a".
    """
    names = list(report.names)
    if not names:
        raise ValueError("patching_bars: the report has no modules")
    values = [report.effect[n] for n in names]
    fig, ax = subplots(figsize=(6.0, 0.8 + 0.32 * len(names)))
    ys = range(len(names))
    finite = [0.0 if not math.isfinite(v) else v for v in values]
    ax.barh(list(ys), finite, color=["tab:blue" if v >= 0 else "tab:red" for v in finite])
    for y, v in zip(ys, values):
        if not math.isfinite(v):
            ax.text(0.0, y, " n/a", va="center", fontsize=7)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.axvline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_yticks(list(ys))
    ax.set_yticklabels([n or "<model>" for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("effect = (patched - corrupted) / (clean - corrupted)")
    ax.set_title(title or f"activation patching (metric: clean {report.clean:.4g}, corrupted {report.corrupted:.4g})",
                 fontsize=9)
    return savefig(fig, path)
