"""Batched, gradient-free evaluation helpers shared by the bottleneck probes.

Every probe needs the same three things from an autoencoder: its codes, its
reconstructions and the per-sample reconstruction error, computed in ``eval`` mode in
mini-batches on a chosen device. The model's train/eval mode is restored afterwards.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aeprobe.utils import batched, check_images, eval_mode, model_device

__all__ = ["check_images", "check_autoencoder", "eval_mode", "model_device", "batched", "codes", "reconstruct",
           "per_sample_mse"]


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
