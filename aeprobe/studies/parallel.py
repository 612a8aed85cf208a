"""Independent trainings side by side: ``workers`` processes of one torch thread each.

On 2 CPU cores two single-thread processes train two small nets faster than one process with
two threads trains them one after the other (``benchmarks/train.py`` section 5 measures it),
because these nets are too small for torch's intra-op threads to keep two cores busy.

    from aeprobe.studies.parallel import map_jobs
    results = map_jobs(train_one, jobs, workers=2)      # results in the order of ``jobs``

``fn`` must be a module-level function and the jobs picklable (they are sent to spawned
processes). This is the one place the studies start processes; when ``aeprobe.sweep`` lands,
the body of :func:`map_jobs` becomes ``return aeprobe.sweep(fn, jobs, backend="processes",
workers=workers, out=...)``.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from aeprobe.progress import STATUS_ENV

__all__ = ["map_jobs", "default_workers"]


def default_workers(n_jobs: int, threads: int | None = None) -> int:
    """Processes for ``n_jobs`` independent trainings: one per torch thread the run may use
    (``threads``, default ``torch.get_num_threads()``), at most one per job."""
    t = torch.get_num_threads() if threads is None else int(threads)
    return max(1, min(t, int(n_jobs)))


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


def _init_worker() -> None:
    torch.set_num_threads(1)


def map_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], *, workers: int = 1,
             cost: Callable[[Any], float] | None = None, status_dir: str | os.PathLike | Path | None = None) -> list:
    """``[fn(job) for job in jobs]``, in ``workers`` spawned processes of one torch thread each
    when ``workers > 1`` (the most expensive jobs by ``cost`` start first), else in this process.

    ``status_dir`` is exported as ``$AEPROBE_STATUS_DIR`` for :func:`aeprobe.progress.file_task`.
    Every job is seeded on its own, so the results do not depend on ``workers``.
    """
    jobs = list(jobs)
    with _status_env(status_dir):
        if workers <= 1 or len(jobs) <= 1:
            return [fn(job) for job in jobs]
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i])) if cost is not None else range(len(jobs))
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker) as pool:
            futures = {i: pool.submit(fn, jobs[i]) for i in order}
            return [futures[i].result() for i in range(len(jobs))]
