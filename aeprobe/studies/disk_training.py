"""One training of the disk study as a self-contained job, so that jobs can run in other processes.

A :class:`DiskJob` names its training set by a ``.npy`` file (written once by the parent, read by
every job that uses it) and holds everything else the training needs; :func:`train_disk_job`
trains a :class:`aeprobe.models.DiskAE` on it and returns the weights and a summary. Jobs are
seeded on their own (the init by ``torch.manual_seed(seed)`` inside ``fork_rng``, the batches by
:func:`aeprobe.train.train`'s ``seed``), so where a job runs does not change its result.

    job = DiskJob(key="free", label="bias-free", data="x.npy", n=3000, bias=False, epochs=15, seed=0,
                  batch_size=50, lr=1e-3)
    out = train_disk_job(job)            # {"key", "state", "info", "per_epoch"}
    model = disk_model(job, out["state"])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import math
import os
import time

import numpy as np
import torch

from aeprobe.models import DiskAE
from aeprobe.progress import file_task
from aeprobe.studies.evaluate import is_stuck, stuck_at
from aeprobe.train import train

__all__ = ["DiskJob", "train_disk_job", "disk_model", "make_regularizer", "REGULARIZERS"]

#: Newson et al. Sect. 4.4.1, types 1-3 (names of :mod:`aeprobe.regularizers`)
REGULARIZERS = ("psi1", "psi2", "psi3")


@dataclass(frozen=True)
class DiskJob:
    """One DiskAE training. ``data``: ``.npy`` of the training images ``[n, 1, size, size]``;
    ``reg``/``lam``: a regulariser of :mod:`aeprobe.regularizers` (``"none"``: no regulariser);
    ``airy_eval``: ``.npz`` with ``x``, ``radii``, ``R`` to log the Airy correlation after every epoch;
    ``stuck_patience``: stop once the data loss has stayed at >= 99% of the constant output's MSE
    (:func:`aeprobe.studies.evaluate.stuck_at`) for that many epochs -- the net transmits nothing and
    further epochs change no measurement of it (None: never stop)."""

    key: str
    label: str
    data: str
    n: int
    bias: bool
    epochs: int
    seed: int
    batch_size: int
    lr: float
    size: int = 64
    reg: str = "none"
    lam: float = 0.0
    airy_eval: str | None = None
    device: str | None = None
    stuck_patience: int | None = None

    @property
    def cost(self) -> float:
        """Estimated work, in epochs x images: psi1 encodes every batch twice (measured +10-30%), a
        bias-free net is ~8% cheaper, the per-epoch Airy evaluation adds ~5%."""
        return (self.epochs * self.n * (1.25 if self.reg == "psi1" else 1.0) * (1.0 if self.bias else 0.92)
                * (1.05 if self.airy_eval else 1.0))


def make_regularizer(kind: str, lam: float):
    """``None`` for ``"none"``, else ``aeprobe.regularizers.<kind>(lam)``."""
    from aeprobe import regularizers

    if kind == "none":
        return None
    if kind not in REGULARIZERS:
        raise ValueError(f"unknown regulariser {kind!r}; choose none or one of {', '.join(REGULARIZERS)}")
    return getattr(regularizers, kind)(lam)


def disk_model(job: DiskJob, state: dict[str, torch.Tensor] | None = None) -> DiskAE:
    """The job's freshly initialised net (seeded), or the trained one when ``state`` is given (eval mode)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(job.seed)
        model = DiskAE(bias=job.bias, code_size=1, size=job.size)
    if state is not None:
        model.load_state_dict(state)
        model.eval()
    return model


def _airy_logger(path: str, per_epoch: list[dict]):
    from aeprobe.probes.profile import compare_to_airy
    from aeprobe.probes.separable import separable_decomposition
    from aeprobe.utils import eval_mode, model_device

    ev = np.load(path)
    xe, radii, R = torch.from_numpy(ev["x"]), ev["radii"], float(ev["R"])

    def log(epoch: int, hist: dict, model) -> None:
        with eval_mode(model), torch.no_grad():
            y = model(xe.to(model_device(model)).contiguous(memory_format=torch.channels_last)).cpu()
        sep = separable_decomposition(y, radii)
        per_epoch.append(dict(epoch=epoch, train_loss=hist["train_loss"][-1],
                              airy_correlation=compare_to_airy(sep.t, sep.f_radial, R).correlation))

    return log


def train_disk_job(job: DiskJob) -> dict[str, Any]:
    """Train the job's net; returns ``key``, the CPU ``state`` dict, ``info`` (seconds, final data and
    regulariser losses, loss curve, ``epochs_run`` and ``stopped_stuck``), ``per_epoch`` (Airy correlation log, or ``[]``) and ``timeline``
    (process id, start and end times of the job, for the run's timeline)."""
    t_start = time.time()
    x = torch.from_numpy(np.load(job.data))
    model = disk_model(job)
    per_epoch: list[dict] = []
    log = _airy_logger(job.airy_eval, per_epoch) if job.airy_eval else None
    task = file_task(job.key, job.label, job.epochs, weight=job.n / 1000)
    reg = make_regularizer(job.reg, job.lam)
    data_key = "data_loss" if reg is not None else "train_loss"
    threshold = stuck_at(x) if job.stuck_patience else math.inf

    def on_epoch_end(epoch, hist, model) -> bool:
        if log is not None:
            log(epoch, hist, model)
        task.update(epoch)
        return is_stuck(hist[data_key], threshold, job.stuck_patience)

    res = train(model, x, epochs=job.epochs, batch_size=job.batch_size, lr=job.lr, regularizer=reg, device=job.device,
                seed=job.seed, progress=False, channels_last=True, on_epoch_end=on_epoch_end)
    task.done()
    model = model.to(memory_format=torch.contiguous_format).cpu()
    hist = res.history
    data_loss = hist[data_key]
    info = dict(label=job.label, bias=job.bias, epochs=job.epochs, epochs_run=len(data_loss),
                stopped_stuck=res.stopped_early, seed=job.seed, seconds=res.seconds,
                images_per_second=res.images_per_second, final_loss=float(data_loss[-1]),
                final_reg_loss=float(hist["reg_loss"][-1]) if reg is not None else 0.0,
                loss_curve=[float(v) for v in data_loss])
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return dict(key=job.key, state=state, info=info, per_epoch=per_epoch,
                timeline=dict(process=os.getpid(), started=t_start, ended=time.time()))
