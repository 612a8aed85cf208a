"""Independent trainings side by side: ``workers`` processes of one torch thread each.

On 2 CPU cores two single-thread processes train two small nets faster than one process with
two threads trains them one after the other (``benchmarks/train.py`` section 5 measures it),
because these nets are too small for torch's intra-op threads to keep two cores busy.

    from aeprobe.studies.parallel import map_jobs
    results = map_jobs(train_one, jobs, workers=2)      # results in the order of ``jobs``

``fn`` must be a module-level function and the jobs picklable (they are sent to spawned
processes); a script that calls a study with several workers needs the usual
``if __name__ == "__main__":`` guard (``python -c``, stdin and the ``aeprobe`` command do not).
This is the one place the studies start processes; when ``aeprobe.sweep`` lands, the pool
branch of :func:`map_jobs` becomes ``results = aeprobe.sweep(fn, list(jobs), backend="processes",
workers=workers, out=...)``, followed by the ``on_result`` calls (the disk study then draws its
figures after the last training instead of during it: a few seconds more).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable

import torch

from aeprobe.progress import STATUS_ENV

__all__ = ["map_jobs", "default_workers", "balanced_order"]


def default_workers(n_jobs: int, threads: int | None = None) -> int:
    """Processes for ``n_jobs`` independent trainings: one per torch thread the run may use
    (``threads``, default ``torch.get_num_threads()``), at most one per job."""
    t = torch.get_num_threads() if threads is None else int(threads)
    return max(1, min(t, int(n_jobs)))


def balanced_order(costs: Sequence[float], workers: int, *, first: Sequence[int] | None = None) -> list[int]:
    """An order in which to submit jobs of estimated ``costs`` to a first-come first-served pool of
    ``workers`` processes so that they finish together.

    Two workers and at most 16 jobs: the best split of the jobs in two (every subset is tried;
    plain longest-first can leave one process idle for a whole job at the end), then the order in
    which the two processes would ask for their next job. Otherwise longest first. ``first``: the
    jobs allowed to start the run (e.g. those whose data are ready first); each process starts with
    one of them when possible. Returns a permutation of ``range(len(costs))``.

        >>> balanced_order([3, 3, 2, 2, 2], 2)      # {3, 3} and {2, 2, 2}: both finish at 6
        [0, 2, 3, 1, 4]
    """
    n = len(costs)
    lpt = sorted(range(n), key=lambda i: -costs[i])
    if workers != 2 or n < 3 or n > 16:
        return lpt
    allowed = set(range(n) if first is None else first)
    total = float(sum(costs))
    best, best_key = None, None
    for mask in range(1, 1 << (n - 1)):  # job n-1 always on the second process: each split once
        side = [i for i in range(n) if mask >> i & 1]
        rest = [i for i in range(n) if not mask >> i & 1]
        load = sum(costs[i] for i in side)
        ok = bool(allowed.intersection(side)) and bool(allowed.intersection(rest))
        key = (not ok, max(load, total - load))
        if best_key is None or key < best_key:
            best, best_key = (side, rest), key
    queues = [sorted(q, key=lambda i: (i not in allowed, -costs[i])) for q in best]
    clock, order = [0.0, 0.0], []
    while queues[0] or queues[1]:
        w = min((k for k in (0, 1) if queues[k]), key=lambda k: clock[k])
        i = queues[w].pop(0)
        clock[w] += costs[i]
        order.append(i)
    return order


@contextlib.contextmanager
def _status_env(status_dir: str | os.PathLike | None) -> Iterator[None]:
    old = os.environ.get(STATUS_ENV)
    if status_dir is None:
        os.environ.pop(STATUS_ENV, None)
    else:
        os.environ[STATUS_ENV] = str(status_dir)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(STATUS_ENV, None)
        else:
            os.environ[STATUS_ENV] = old


def _init_worker(module: str) -> None:
    """Worker start: one torch thread; import the jobs' module now (while the parent prepares the jobs)."""
    import importlib

    torch.set_num_threads(1)
    importlib.import_module(module)


def _ready() -> None:
    """A no-op job: submitting one per worker starts the processes (and their imports) at once."""


def map_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any] | Iterable[Any], *, workers: int = 1,
             cost: Callable[[Any], float] | None = None, status_dir: str | os.PathLike | Path | None = None,
             on_result: Callable[[int, Any, int], None] | None = None) -> list:
    """``[fn(job) for job in jobs]``, in ``workers`` spawned processes of one torch thread each
    when ``workers > 1``, else in this process; the results come in the order of ``jobs``.

    ``jobs`` is a sequence (with ``cost``, submitted in :func:`balanced_order`) or an iterator,
    whose jobs are started as it yields them: the code between two ``yield`` (e.g. building the
    next training set) then runs while the first jobs train. ``on_result(index, result, pending)``
    is called in this process as each job finishes (``pending``: jobs still running or queued),
    so work that needs some results can start while the others train (with ``pending <
    workers`` a core is free). ``status_dir`` is exported as ``$AEPROBE_STATUS_DIR`` for
    :func:`aeprobe.progress.file_task`. Every job is seeded on its own, so the results do not
    depend on ``workers``.
    """
    with _status_env(status_dir):
        if workers <= 1:
            out = [fn(job) for job in jobs] if on_result is None else []
            if on_result is not None:
                todo = list(jobs)
                for i, job in enumerate(todo):
                    out.append(fn(job))
                    on_result(i, out[-1], len(todo) - i - 1)
            return out
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        if isinstance(jobs, Sequence):
            order = balanced_order([cost(j) for j in jobs], workers) if cost is not None else range(len(jobs))
            stream: Iterable[tuple[int, Any]] = ((i, jobs[i]) for i in order)
            workers = min(workers, max(len(jobs), 1))
        else:
            stream = enumerate(jobs)
        prev = torch.get_num_threads()
        torch.set_num_threads(1)  # this process works only between the workers' jobs (on_result)
        try:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                     initargs=(fn.__module__,)) as pool:
                for _ in range(workers):  # start every process now, while the first jobs are being built
                    pool.submit(_ready)
                futures = {i: pool.submit(fn, job) for i, job in stream}
                if on_result is not None:
                    index = {f: i for i, f in futures.items()}
                    for done, f in enumerate(as_completed(futures.values()), 1):
                        on_result(index[f], f.result(), len(futures) - done)
                return [futures[i].result() for i in range(len(futures))]
        finally:
            torch.set_num_threads(prev)
