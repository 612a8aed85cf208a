"""One progress display for a whole run: the stage, the nets training now (with their epoch) and
the ETA of the stage -- one status line, not one bar per net.

    from aeprobe.progress import Progress

    with Progress("disks", live=None) as p:                 # live=None: a status line on a TTY
        with p.stage("main nets", work=4 * 15):             # work: planned epochs (x weight)
            task = p.task("bias-free", epochs=15)
            train(model, x, epochs=15, batch_size=50, progress=False, on_epoch_end=task.on_epoch_end)

On a terminal the line is redrawn about twice a second::

    [disks 0:41] 2/3 hole regularisers | psi1 λ=1e-07 ep 7/15, none ep 9/15 | 3/6 nets done | ETA 0:31

Otherwise (``live=False``: ``--no-progress``, or output that is not a TTY) it prints one line
when each stage ends. Trainings in other processes report through small status files: the
parent exports :meth:`Progress.status_dir` as ``$AEPROBE_STATUS_DIR`` (see
:func:`aeprobe.studies.parallel.map_jobs`), the training reports its epochs through
:func:`file_task`, and the parent's line includes them.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

__all__ = ["Progress", "Task", "file_task", "hms", "STATUS_ENV"]

#: environment variable naming the directory where trainings write their status files
STATUS_ENV = "AEPROBE_STATUS_DIR"


def hms(seconds: float) -> str:
    """``1:02:03`` / ``2:03`` for a duration in seconds (``?`` when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Task:
    """One net being trained: ``label``, ``epochs``, ``weight`` (work per epoch, e.g. images / 1000).

    Pass :meth:`on_epoch_end` to :func:`aeprobe.train.train` (it never stops training), or call
    :meth:`update`; :meth:`done` marks it finished.
    """

    def __init__(self, label: str, epochs: int, weight: float = 1.0, _sink=None):
        self.label, self.epochs, self.weight = label, max(int(epochs), 0), float(weight)
        self.epoch = 0
        self.finished = False
        self._sink = _sink

    def update(self, epoch: int) -> None:
        self.epoch = min(int(epoch), self.epochs) if self.epochs else int(epoch)
        if self._sink is not None:
            self._sink(self)

    def on_epoch_end(self, epoch: int, history: Any = None, model: Any = None) -> None:
        self.update(epoch)

    def done(self) -> None:
        self.epoch, self.finished = self.epochs, True
        if self._sink is not None:
            self._sink(self)

    @property
    def work_done(self) -> float:
        return self.epoch * self.weight

    def as_dict(self) -> dict[str, Any]:
        return dict(label=self.label, epoch=self.epoch, epochs=self.epochs, weight=self.weight,
                    finished=self.finished)


def _write_status(path: Path, task: Task) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".status.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(task.as_dict(), fh)
    os.replace(tmp, path)


def file_task(key: str, label: str, epochs: int, weight: float = 1.0) -> Task:
    """A :class:`Task` for a training that may run in another process: every update rewrites
    ``$AEPROBE_STATUS_DIR/key.json`` (atomically) for the parent's :class:`Progress` to read.
    Without that variable it is a plain task that reports nowhere."""
    status_dir = os.environ.get(STATUS_ENV)
    if not status_dir or not Path(status_dir).is_dir():
        return Task(label, epochs, weight)
    path = Path(status_dir) / f"{key}.json"
    task = Task(label, epochs, weight, _sink=lambda t: _write_status(path, t))
    task.update(0)
    return task


class _Stage:
    def __init__(self, name: str, index: int, work: float | None, status_dir: Path | None):
        self.name, self.index, self.work = name, index, work
        self.tasks: list[Task] = []
        self.note: str | None = None
        self.status_dir = status_dir
        self.t0 = time.perf_counter()

    def all_tasks(self) -> list[Task]:
        tasks = list(self.tasks)
        if self.status_dir is not None and self.status_dir.is_dir():
            for f in sorted(self.status_dir.glob("*.json")):
                try:
                    d = json.loads(f.read_text())
                except (OSError, ValueError):
                    continue
                t = Task(d["label"], d["epochs"], d.get("weight", 1.0))
                t.epoch, t.finished = d["epoch"], d.get("finished", False)
                tasks.append(t)
        return tasks


class Progress:
    """The run's display. ``live``: redraw one status line (default: when ``stream`` is a TTY);
    ``enabled=False`` prints nothing at all."""

    def __init__(self, title: str, *, live: bool | None = None, enabled: bool = True, stream: IO[str] | None = None,
                 stages: int | None = None, interval: float = 0.5):
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.live = enabled and (isatty if live is None else bool(live))
        self.n_stages = stages
        self.interval = interval
        self._stage: _Stage | None = None
        self._count = 0
        self._t0 = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0
        self._tmp: tempfile.TemporaryDirectory | None = None
        #: (stage name, seconds) of every finished stage, in order
        self.timings: list[tuple[str, float]] = []

    # ---- stages and tasks

    def stage(self, name: str, *, work: float | None = None) -> "_StageContext":
        """Context manager for one stage; ``work`` = planned epochs x weight of its tasks (for the ETA)."""
        return _StageContext(self, name, work)

    def task(self, label: str, epochs: int, weight: float = 1.0) -> Task:
        """Register a net trained in this process (in the current stage)."""
        t = Task(label, epochs, weight)
        with self._lock:
            if self._stage is not None:
                self._stage.tasks.append(t)
        return t

    def note(self, text: str | None) -> None:
        """A short note on what this process is doing now (e.g. "figures of the main part"), shown at
        the end of the status line until the stage ends or the next note; ``None`` clears it."""
        with self._lock:
            if self._stage is not None:
                self._stage.note = text

    def status_dir(self) -> Path | None:
        """A directory for worker processes' status files (see :func:`file_task`); None when not live."""
        if not self.live or self._stage is None:
            return None
        return self._stage.status_dir

    # ---- rendering

    def line(self) -> str:
        """The current status line."""
        st = self._stage
        head = f"[{self.title} {hms(time.perf_counter() - self._t0)}]"
        if st is None:
            return head
        of = f"/{self.n_stages}" if self.n_stages else ""
        tasks = st.all_tasks()
        running = [t for t in tasks if not t.finished]
        done = len(tasks) - len(running)
        parts = [f"{head} {st.index}{of} {st.name}"]
        if running:
            parts.append(", ".join(f"{t.label} ep {t.epoch}/{t.epochs}" for t in running[:3])
                         + (f" +{len(running) - 3}" if len(running) > 3 else ""))
        if tasks:
            parts.append(f"{done}/{len(tasks)} nets done")
        work_done = sum(t.work_done for t in tasks)
        total = st.work if st.work else sum(t.epochs * t.weight for t in tasks)
        elapsed = time.perf_counter() - st.t0
        if total and work_done > 0 and running:
            parts.append(f"ETA {hms(elapsed * max(total - work_done, 0.0) / work_done)}")
        if st.note:
            parts.append(st.note)
        return " | ".join(parts)

    def _draw(self, final: bool = False) -> None:
        text = self.line()
        cols = 0
        try:
            cols = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            pass
        if cols >= 40:  # an unknown or tiny width (a pty without size): do not cut
            text = text[: cols - 1]
        pad = " " * max(self._width - len(text), 0)
        self.stream.write("\r" + text + pad + ("\n" if final else ""))
        self.stream.flush()
        self._width = 0 if final else len(text)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self._stage is not None:
                    self._draw()

    def _begin(self, name: str, work: float | None) -> None:
        with self._lock:
            self._count += 1
            status = None
            if self.live:
                if self._tmp is None:
                    self._tmp = tempfile.TemporaryDirectory(prefix="aeprobe-progress-")
                status = Path(self._tmp.name) / f"stage{self._count}"
                status.mkdir()
            self._stage = _Stage(name, self._count, work, status)
        if self.live and self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def _end(self, failed: bool) -> None:
        with self._lock:
            st = self._stage
            if st is None:
                return
            self.timings.append((st.name, time.perf_counter() - st.t0))
            if self.live:
                self._draw(final=True)
            elif self.enabled:
                n = len(st.all_tasks())
                of = f"/{self.n_stages}" if self.n_stages else ""
                nets = f", {n} net{'s' if n != 1 else ''}" if n else ""
                state = "failed" if failed else "done"
                print(f"[{self.title}] stage {st.index}{of} {st.name}: {state} in "
                      f"{hms(time.perf_counter() - st.t0)}{nets}", file=self.stream, flush=True)
            self._stage = None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _StageContext:
    def __init__(self, progress: Progress, name: str, work: float | None):
        self.p, self.name, self.work = progress, name, work

    def __enter__(self) -> Progress:
        self.p._begin(self.name, self.work)
        return self.p

    def __exit__(self, exc_type, exc, tb) -> None:
        self.p._end(exc_type is not None)
