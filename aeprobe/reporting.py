"""Writing experiment outputs: ``results.json`` (numpy/torch aware) and a Markdown report.

Measuring and plotting live elsewhere; this module only serialises what they produced.
Every file is written atomically (temporary file in the same folder, then ``os.replace``,
through :func:`atomic_writer`) so an interrupted run never leaves a half-written file behind;
files get the permissions a plain ``open()`` would give (``0o666 & ~umask``, or the mode of the
file being replaced). :func:`atomic_write_bytes`, :func:`atomic_write_text`, :func:`write_json`
and :func:`atomic_write_npz` cover bytes, text, JSON and numpy archives; PNGs go through
:func:`aeprobe.plots.savefig`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import secrets
import stat
from pathlib import Path
from typing import Any, BinaryIO, Iterator

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


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary file handle whose content replaces ``path`` atomically when the block ends.

    The data go to a temporary file in the same folder (parents created), which is ``fsync``-ed
    and renamed over ``path`` with ``os.replace`` (then the folder is ``fsync``-ed). A crash or an
    exception in the block leaves the old file (or none) and no temporary file behind, never
    half a file. Permissions are those a plain ``open(path, "wb")`` would give: an existing file
    keeps its mode, a new one gets ``0o666 & ~umask``::

        with atomic_writer("out/profile.npz") as fh:
            np.savez(fh, t=t, f=f)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _create_temp(path: Path) -> tuple[int, str]:
    """A new file next to ``path`` created like ``open()`` would (mode ``0o666`` filtered by the
    umask by the OS itself), with the mode of ``path`` when it already exists."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        if mode is not None:
            try:
                os.chmod(tmp, mode)
            except OSError:  # e.g. a file system without POSIX modes: keep the default
                pass
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file next to {path}")


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON after :func:`to_jsonable` (atomically)."""
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def atomic_write_npz(path: str | os.PathLike, *, compressed: bool = False, **arrays: Any) -> Path:
    """``np.savez(path, **arrays)`` (``np.savez_compressed`` with ``compressed=True``), atomically.

    Unlike ``np.savez`` no ``.npz`` suffix is appended: the file is written at ``path`` exactly.
    Tensors are accepted (moved to CPU).
    """
    if not arrays:
        raise ValueError("atomic_write_npz needs at least one array")
    arrs = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") and hasattr(v, "cpu") else np.asarray(v))
            for k, v in arrays.items()}
    with atomic_writer(path) as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrs)
    return Path(path)


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
