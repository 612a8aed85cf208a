"""Writing experiment outputs: ``results.json`` (numpy/torch aware) and a Markdown report.

Measuring and plotting live elsewhere; this module only serialises what they produced.
Files are written atomically (temporary file in the same folder, then ``os.replace``)
so an interrupted run never leaves a half-written results file behind.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, numpy arrays/scalars, torch tensors and paths to JSON types.

    Non-finite floats become ``None`` (JSON has no NaN) so that a missing measurement is
    visible as ``null`` rather than silently written as an invalid token.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch.Tensor without importing torch
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        val = float(obj)
        return val if math.isfinite(val) else None
    return obj


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, ``fsync``,
    ``os.replace``, then ``fsync`` of the folder. A crash leaves the old file or the new one,
    never half a file, and no temp file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable (POSIX); not available on every platform
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON after :func:`to_jsonable`."""
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


class MarkdownReport:
    """Tiny builder for ``report.md``: headings, paragraphs, tables and figures.

    Figures are referenced by path relative to the report, each with a one-line reading.
    """

    def __init__(self, title: str):
        self._lines: list[str] = [f"# {title}", ""]

    def heading(self, text: str, level: int = 2) -> "MarkdownReport":
        self._lines += ["#" * level + " " + text, ""]
        return self

    def paragraph(self, text: str) -> "MarkdownReport":
        self._lines += [text, ""]
        return self

    def bullets(self, items: list[str]) -> "MarkdownReport":
        self._lines += [f"- {it}" for it in items] + [""]
        return self

    def table(self, header: list[str], rows: list[list[Any]], floatfmt: str = ".4g") -> "MarkdownReport":
        def fmt(v: Any) -> str:
            if isinstance(v, (float, np.floating)):
                return format(float(v), floatfmt) if math.isfinite(float(v)) else "n/a"
            return "n/a" if v is None else str(v)

        self._lines.append("| " + " | ".join(header) + " |")
        self._lines.append("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self._lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
        self._lines.append("")
        return self

    def figure(self, relpath: str, caption: str, reading: str | None = None) -> "MarkdownReport":
        self._lines += [f"![{caption}]({relpath})", "", f"*{caption}.*" + (f" Reading: {reading}" if reading else ""), ""]
        return self

    def text(self) -> str:
        return "\n".join(self._lines).rstrip() + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, self.text())
