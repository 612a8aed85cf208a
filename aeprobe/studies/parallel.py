"""Independent trainings side by side: ``workers`` processes of one torch thread each.

On 2 CPU cores two single-thread processes train two small nets faster than one process with
two threads trains them one after the other (``benchmarks/train.py`` section 5 measures it),
because these nets are too small for torch's intra-op threads to keep two cores busy.

    from aeprobe.studies.parallel import map_jobs
    results = map_jobs(train_one, jobs, workers=2)      # results in the order of ``jobs``

``fn`` must be a module-level function and the jobs picklable (they are sent to spawned
processes); a script that calls a study with several workers needs the usual
``if __name__ == "__main__":`` guard (``python -c``, stdin and the ``aeprobe`` command do not).
The processes are those of :func:`aeprobe.sweeps.imap_processes`, the one process pool of the
package (also behind ``aeprobe.sweep(..., backend="processes")``); :func:`map_jobs` adds what the
studies' own trainings need on top of it: a job order in which the processes finish together,
callbacks as each job finishes (probes of a part while the last nets train) and the progress
status files. The bottleneck and zoo grids, whose cells are JSON-like configurations worth
storing, run through :func:`aeprobe.sweep` itself (``--backend local|processes|ray``).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable

import torch

from aeprobe.progress import STATUS_ENV

__all__ = ["map_jobs", "sweep_jobs", "default_workers", "balanced_order", "status_env"]


def add_sweep_arguments(p, *, jobs: str, store: str) -> None:
    """The ``--workers``, ``--backend`` and ``--fresh`` flags of a study whose ``jobs`` (e.g. "grid cells")
    run through :func:`sweep_jobs` and are stored in ``store`` (e.g. "OUT/cells")."""
    p.add_argument("--workers", type=int, default=None,
                   help=f"processes running {jobs} side by side, one torch thread each (default: one per torch "
                        "thread of the run; results do not depend on it)")
    p.add_argument("--backend", choices=("local", "processes", "ray"), default=None,
                   help=f"how aeprobe.sweep runs the {jobs}: in this process one after the other, in --workers "
                        "processes (default with more than one thread), or as Ray tasks (a local Ray, or the "
                        "cluster of $RAY_ADDRESS)")
    p.add_argument("--fresh", action="store_true",
                   help=f"run all {jobs} again (default: {jobs} already stored in {store} are read back)")


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
def status_env(status_dir: str | os.PathLike | None) -> Iterator[None]:
    """``$AEPROBE_STATUS_DIR`` set to ``status_dir`` (unset when None) inside the block, for the
    :func:`aeprobe.progress.file_task` of jobs run in this process or in processes started in it."""
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
    with status_env(status_dir):
        if workers <= 1:
            out = [fn(job) for job in jobs] if on_result is None else []
            if on_result is not None:
                todo = list(jobs)
                for i, job in enumerate(todo):
                    out.append(fn(job))
                    on_result(i, out[-1], len(todo) - i - 1)
            return out
        from aeprobe.sweeps import imap_processes

        if isinstance(jobs, Sequence):
            order = balanced_order([cost(j) for j in jobs], workers) if cost is not None else range(len(jobs))
            stream: Iterable[tuple[int, Any]] = ((i, jobs[i]) for i in order)
            workers = min(workers, max(len(jobs), 1))
        else:
            stream = enumerate(jobs)
        submitted = 0

        def counted() -> Iterator[tuple[int, Any]]:
            nonlocal submitted
            for item in stream:
                submitted += 1
                yield item

        prev = torch.get_num_threads()
        torch.set_num_threads(1)  # this process works only between the workers' jobs (on_result)
        results: dict[int, Any] = {}
        finished = imap_processes(fn, counted(), workers=workers, threads=1, preload=fn.__module__)
        try:
            for done, (i, fut) in enumerate(finished, 1):
                results[i] = fut.result()
                if on_result is not None:
                    on_result(i, results[i], submitted - done)  # every job is submitted before the first result
            return [results[i] for i in range(len(results))]
        finally:
            finished.close()
            torch.set_num_threads(prev)


def sweep_jobs(fn: Callable[[Any], Any], configs: Sequence[Any], *, backend: str, out: str | os.PathLike,
               workers: int, fresh: bool = False, status_dir: str | os.PathLike | None = None) -> tuple[list, int]:
    """A study grid through :func:`aeprobe.sweep`: ``(results in the order of configs, number read back
    from out)``.

    ``backend``: ``local`` (this process, its torch threads), ``processes`` (``workers`` processes of
    one torch thread) or ``ray`` (tasks of one CPU and one thread; at most ``workers`` in flight on a
    local Ray, or on the cluster of ``$RAY_ADDRESS`` when set). Each result is stored in ``out`` and
    read back by a later call (``fresh=True``: run everything again). ``status_dir`` as in
    :func:`map_jobs`.
    """
    from aeprobe.sweeps import config_key, sweep

    if backend not in ("local", "processes", "ray"):
        raise ValueError(f"--backend must be local, processes or ray, got {backend!r}")
    store = Path(out)
    reused = 0 if fresh else sum((store / f"{config_key(c)}.json").exists() for c in configs)
    address = (os.environ.get("RAY_ADDRESS") or None) if backend == "ray" else None
    with status_env(status_dir):
        results = sweep(fn, list(configs), backend=backend, out=store, resume=not fresh,
                        workers=None if address else workers,  # on a cluster: as many tasks as it takes
                        threads=None if backend == "local" else 1, address=address)
    return results, reused
