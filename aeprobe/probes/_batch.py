"""Batched, gradient-free evaluation helpers shared by the bottleneck probes.

Every probe needs the same three things from an autoencoder: its codes, its
reconstructions and the per-sample reconstruction error, computed in ``eval`` mode in
mini-batches on a chosen device. The model's train/eval mode is restored afterwards.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from aeprobe.device import resolve_device


def check_images(x, name: str = "x") -> torch.Tensor:
    """Return ``x`` as a float tensor with a batch dimension; reject empty or NaN input."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
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


def check_autoencoder(model: nn.Module) -> None:
    """Raise ``TypeError`` unless ``model`` follows the package's AE contract
    (:class:`aeprobe.models.AutoEncoder`): an ``nn.Module`` with ``encode(x)`` and ``decode(z)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    missing = [fn for fn in ("encode", "decode") if not callable(getattr(model, fn, None))]
    if missing:
        raise TypeError(f"model {type(model).__name__} has no {' / '.join(m + '()' for m in missing)} method; "
                        "the bottleneck probes need an autoencoder with encode(x) and decode(z) "
                        "(see aeprobe.models.AutoEncoder)")


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put modules in ``eval`` mode and restore each submodule's flag afterwards."""
    saved = [(m, m.training) for mod in modules for m in mod.modules()]
    try:
        for mod in modules:
            mod.eval()
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def model_device(model: nn.Module, device=None) -> torch.device:
    """``device`` if given, else the device of the model's first parameter/buffer, else CPU."""
    if device is not None:
        return resolve_device(device)
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, batch_size: int = 256,
            device: torch.device) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in mini-batches on ``device``; return the result on CPU."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outs = [fn(x[i:i + batch_size].to(device)).detach().cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs)


def codes(model: nn.Module, x, *, batch_size: int = 256, device=None, flatten: bool = True) -> torch.Tensor:
    """Codes ``model.encode(x)`` (eval mode, no grad), flattened to ``[N, m]`` by default."""
    check_autoencoder(model)
    x = check_images(x)
    dev = model_device(model, device)
    model.to(dev)
    with eval_mode(model):
        z = batched(model.encode, x, batch_size=batch_size, device=dev)
    return z.reshape(z.shape[0], -1) if flatten else z


def reconstruct(model: nn.Module, x, *, batch_size: int = 256, device=None) -> torch.Tensor:
    """Reconstructions ``model(x)`` (eval mode, no grad) on CPU."""
    x = check_images(x)
    dev = model_device(model, device)
    model.to(dev)
    with eval_mode(model):
        return batched(model, x, batch_size=batch_size, device=dev)


def per_sample_mse(model: nn.Module, x, *, batch_size: int = 256, device=None) -> np.ndarray:
    """Mean squared reconstruction error of each sample (mean over all its elements)."""
    x = check_images(x)
    xh = reconstruct(model, x, batch_size=batch_size, device=device)
    if xh.shape != x.shape:
        raise ValueError(f"model output shape {tuple(xh.shape)} differs from input shape {tuple(x.shape)}")
    return ((xh - x) ** 2).reshape(x.shape[0], -1).mean(1).double().numpy()
