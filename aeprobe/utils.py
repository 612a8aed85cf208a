"""Small public helpers shared across the package: tensor checks, modes, devices, batching.

Everything here is used by more than one module (core, view, probes, trainer, studies), so it
is public and lives in the lowest layer that needs it. Each helper restores what it changes::

    with eval_mode(model), on_device(model, "cpu"):
        y = batched(model, x, batch_size=256, device=model_device(model))
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from aeprobe.device import resolve_device

__all__ = [
    "map_tensors",
    "check_tensor",
    "check_images",
    "eval_mode",
    "model_device",
    "model_dtype",
    "on_device",
    "batched",
]


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Apply ``fn`` to every tensor inside tuples, namedtuples, lists and dicts; other leaves are kept."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(map_tensors(o, fn) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(map_tensors(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    return obj


def check_tensor(name: str, t: Any, *, n: int | None = None) -> torch.Tensor:
    """Return ``t`` unchanged after checking it is a tensor with a non-empty leading (sample) dim,
    ``n`` samples if given, and only finite values when floating point.

    Errors name the argument: ``ValueError: x_val has 10 samples but the matching inputs have 12``.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim < 1 or t.shape[0] == 0:
        raise ValueError(f"{name} must have a non-empty leading (sample) dimension, got shape {tuple(t.shape)}")
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} samples but the matching inputs have {n}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf values")
    return t


def check_images(x: Any, name: str = "x") -> torch.Tensor:
    """Return ``x`` (tensor or numpy array) as a floating tensor with a batch dimension.

    Integer data become float32; empty, 0/1-d or non-finite input is a ``ValueError`` naming ``name``.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have a batch dimension, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if not torch.is_floating_point(x):
        x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return x


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put modules in ``eval`` mode; every submodule's own ``training`` flag is restored on exit."""
    saved = [(m, m.training) for mod in modules for m in mod.modules()]
    try:
        for mod in modules:
            mod.eval()
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def model_device(model: nn.Module, device=None) -> torch.device:
    """``device`` if given, else the device of the model's first parameter or buffer, else CPU."""
    if device is not None:
        return resolve_device(device)
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


_DEFAULT = object()


def model_dtype(model: nn.Module, default=_DEFAULT) -> torch.dtype | None:
    """dtype of the model's first floating parameter or buffer; when it has none, ``default`` if given,
    else ``torch.get_default_dtype()``."""
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    for t in model.buffers():
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype() if default is _DEFAULT else default


@contextlib.contextmanager
def on_device(model: nn.Module, device=None) -> Iterator[torch.device]:
    """Run the block with ``model`` on ``device`` (``None``: where it is); move it back on exit.

    ``Module.to`` keeps the same ``Parameter`` objects, so optimizers holding them stay valid.
    Nothing is moved when the model is already there.
    """
    before = model_device(model)
    target = before if device is None else resolve_device(device)
    moved = target != before
    if moved:
        model.to(target)
    try:
        yield target
    finally:
        if moved:
            model.to(before)


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, batch_size: int = 256,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in mini-batches (moved to ``device`` when given); the result is on CPU."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    outs = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size]
        if device is not None:
            xb = xb.to(device)
        outs.append(fn(xb).detach().cpu())
    return torch.cat(outs)
