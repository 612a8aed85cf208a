"""Progressive resizing: train a fully-convolutional AE on small images first, then on larger ones.

Seed 003 ("Applying modern best practices to autoencoders", *Progressive resizing*): start
training on low-resolution versions of the images and increase the resolution during
training; the early epochs are cheap (a ``s x s`` epoch costs about ``(s / S)^2`` of a full
``S x S`` one) and find the coarse structure. A fully-convolutional AE (e.g.
:class:`aeprobe.models.conv.ConvAE`) accepts every size divisible by its down-sampling
factor, so the *same* weights train at every stage -- no new head is needed.

:func:`progressive_resize` runs one :func:`aeprobe.train.train` call per size in increasing
order on ``resize_images(x, size)`` (area averaging, i.e. anti-aliased, when shrinking).
Each stage starts a fresh Adam optimizer (its moment estimates are per-size statistics);
stage ``i`` uses seed ``seed + i``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["resize_images", "ProgressiveResult", "progressive_resize"]


def resize_images(x: torch.Tensor, size: int | tuple[int, int], *, mode: str = "auto") -> torch.Tensor:
    """Resize ``[N, C, H, W]`` images to ``size`` (int = square).

    ``mode="auto"``: ``"area"`` (mean over each source block, anti-aliased) when shrinking,
    ``"bilinear"`` when enlarging; any ``F.interpolate`` mode is accepted. Same size = ``x``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a [N, C, H, W] tensor, got {type(x).__name__} "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
    hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"size must be a positive int or (H, W), got {size!r}")
    if tuple(x.shape[-2:]) == hw:
        return x
    if mode == "auto":
        mode = "area" if hw[0] <= x.shape[-2] and hw[1] <= x.shape[-1] else "bilinear"
    kw = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(x, size=hw, mode=mode, **kw)


@dataclass
class ProgressiveResult:
    """Outcome of :func:`progressive_resize`: one :class:`aeprobe.train.TrainResult` per size.

    ``histories[size]`` is that stage's per-epoch history; ``seconds`` the total training time.
    """

    sizes: list[int]
    epochs: list[int]
    results: list[Any] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def histories(self) -> dict[int, dict[str, list[float]]]:
        return {s: r.history for s, r in zip(self.sizes, self.results)}

    @property
    def final_loss(self) -> float:
        return self.results[-1].final_loss if self.results else float("nan")


def _stage_checkpoint(checkpoint, size: int):
    if checkpoint is None:
        return None
    p = Path(checkpoint)
    return p.with_name(f"{p.stem}_s{size}{p.suffix}")


def progressive_resize(model: nn.Module, x: torch.Tensor, sizes: Sequence[int] = (8, 16, 32),
                       epochs_per_size: int | Sequence[int] = 5, *, y: torch.Tensor | None = None,
                       x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, seed: int = 0,
                       mode: str = "auto", checkpoint: str | os.PathLike | None = None,
                       **train_kw: Any) -> ProgressiveResult:
    """Train ``model`` on ``x`` resized to each of ``sizes`` in turn (module docstring).

    ``sizes``: strictly increasing square sizes (typically ending at the data size);
    ``epochs_per_size``: one int for all stages or one per size; ``y``/``x_val``/``y_val`` are
    resized alongside ``x``; ``train_kw`` go to :func:`aeprobe.train.train` (``batch_size``
    required, ``lr``, ``loss_fn``, ``device``, ``progress``, ...). With ``checkpoint=path`` stage
    ``size`` checkpoints to ``<stem>_s<size><suffix>``. Raises ``ValueError`` when the model
    does not map a ``size x size`` batch to the same shape (not fully convolutional, or the
    size is not divisible by its down-sampling factor).
    """
    from aeprobe.train import train

    sizes = [int(s) for s in sizes]
    if not sizes or any(s < 1 for s in sizes) or any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"sizes must be a non-empty strictly increasing list of positive ints, got {sizes}")
    if isinstance(epochs_per_size, int):
        epochs = [epochs_per_size] * len(sizes)
    else:
        epochs = [int(e) for e in epochs_per_size]
        if len(epochs) != len(sizes):
            raise ValueError(f"epochs_per_size has {len(epochs)} entries for {len(sizes)} sizes")
    if any(e < 0 for e in epochs):
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W] images, got {tuple(getattr(x, 'shape', ()))}")
    if "epochs" in train_kw:
        raise TypeError("pass epochs_per_size=, not epochs=")
    out = ProgressiveResult(sizes=sizes, epochs=epochs)
    for i, (size, ep) in enumerate(zip(sizes, epochs)):
        xs = resize_images(x, size, mode=mode)
        _check_fully_convolutional(model, xs[:2], size)
        ys = None if y is None else resize_images(y, size, mode=mode)
        xv = None if x_val is None else resize_images(x_val, size, mode=mode)
        yv = None if y_val is None else resize_images(y_val, size, mode=mode)
        res = train(model, xs, ys, epochs=ep, x_val=xv, y_val=yv, seed=seed + i,
                    checkpoint=_stage_checkpoint(checkpoint, size), **train_kw)
        out.results.append(res)
        out.seconds += res.seconds
    return out


@torch.no_grad()
def _check_fully_convolutional(model: nn.Module, xb: torch.Tensor, size: int) -> None:
    from aeprobe.utils import eval_mode, model_device

    dev = model_device(model)
    try:
        with eval_mode(model):
            out = model(xb.to(dev))
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"model cannot process {size}x{size} inputs (progressive resizing needs a fully-"
                         f"convolutional model and sizes divisible by its down-sampling factor): {exc}") from exc
    if tuple(out.shape) != tuple(xb.shape):
        raise ValueError(f"model maps {size}x{size} inputs {tuple(xb.shape)} to {tuple(out.shape)}; progressive "
                         "resizing needs output shape = input shape at every size")
