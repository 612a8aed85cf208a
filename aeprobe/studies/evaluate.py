"""Codes, reconstructions and per-sample errors of the studies' own autoencoders (``encode`` / ``decode``),
in eval mode, in mini-batches, without gradients; results on CPU. Built on :mod:`aeprobe.utils`.

    z = codes(model, x)                    # [N, m] (flatten=False keeps the code's shape)
    y = reconstruct(model, x)              # model(x)
    e = per_sample_mse(model, x)           # numpy [N], float64
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aeprobe.utils import batched, check_images, eval_mode, model_device

__all__ = ["codes", "reconstruct", "per_sample_mse", "mse_per_sample", "constant_output_mse", "stuck_at", "is_stuck",
           "stuck_note"]


def codes(model: nn.Module, x, *, batch_size: int = 256, device=None, flatten: bool = True) -> torch.Tensor:
    """``model.encode(x)`` (eval mode, no grad), flattened to ``[N, m]`` unless ``flatten=False``."""
    x = check_images(x)
    dev = model_device(model, device)
    model.to(dev)
    with eval_mode(model):
        z = batched(model.encode, x, batch_size=batch_size, device=dev)
    return z.reshape(z.shape[0], -1) if flatten else z


def reconstruct(model: nn.Module, x, *, batch_size: int = 256, device=None) -> torch.Tensor:
    """``model(x)`` (eval mode, no grad) on CPU."""
    x = check_images(x)
    dev = model_device(model, device)
    model.to(dev)
    with eval_mode(model):
        return batched(model, x, batch_size=batch_size, device=dev)


def mse_per_sample(y: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """Mean squared difference of each sample of ``y`` and ``x`` (computed in their dtype, returned as
    float64 numpy)."""
    if y.shape != x.shape:
        raise ValueError(f"output shape {tuple(y.shape)} differs from input shape {tuple(x.shape)}")
    return ((y - x) ** 2).reshape(x.shape[0], -1).mean(1).double().numpy()


def per_sample_mse(model: nn.Module, x, *, batch_size: int = 256, device=None) -> np.ndarray:
    """Reconstruction MSE of each sample (mean over its elements)."""
    x = check_images(x)
    return mse_per_sample(reconstruct(model, x, batch_size=batch_size, device=device), x)


def constant_output_mse(x: torch.Tensor) -> float:
    """MSE of the best constant output (the mean image): the error of a net that transmits nothing."""
    return float(((x - x.mean(0, keepdim=True)) ** 2).mean())


def stuck_at(x: torch.Tensor) -> float:
    """The data loss at or above which a net counts as stuck: 99% of the MSE of the best constant
    output (the mean image), i.e. the net reconstructs at most 1% of the variance."""
    return 0.99 * constant_output_mse(x)


def is_stuck(losses: list[float], threshold: float, patience: int | None) -> bool:
    """Whether the last ``patience`` data losses are all at or above ``threshold``."""
    return bool(patience) and len(losses) >= patience and min(losses[-patience:]) >= threshold


def stuck_note(info: dict) -> str:
    """`` (stuck: stopped after k of n epochs)`` for a training summary that stopped because it was
    stuck (``stopped_stuck``, ``epochs_run``, ``epochs``), else ``""``."""
    if not info.get("stopped_stuck"):
        return ""
    return f" (stuck: stopped after {info['epochs_run']} of {info['epochs']} epochs)"
