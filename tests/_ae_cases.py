"""Constructed autoencoders with known answers, shared by the bottleneck-probe tests."""
from __future__ import annotations

import torch
from torch import nn

from aeprobe.models import AutoEncoder


class TinyAE(AutoEncoder):
    """``decode(encode(x))`` from any encoder/decoder modules (the package's AE contract)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder


def identity_ae() -> TinyAE:
    return TinyAE(nn.Identity(), nn.Identity())


def orthonormal(d: int, k: int, seed: int = 0) -> torch.Tensor:
    """A ``[d, k]`` matrix with orthonormal columns."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))
    return q.float()


def subspace_data(n: int, d: int, k: int, seed: int = 0, basis_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points ``c @ U^T`` in the span of a fixed orthonormal ``U`` (``[d, k]``)."""
    u = orthonormal(d, k, basis_seed)
    g = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(n, k, generator=g) @ u.T, u


def pca_ae(u: torch.Tensor) -> TinyAE:
    """Linear AE ``x -> U U^T x`` (encoder ``U^T``, decoder ``U``), no biases."""
    d, k = u.shape
    enc, dec = nn.Linear(d, k, bias=False), nn.Linear(k, d, bias=False)
    with torch.no_grad():
        enc.weight.copy_(u.T)
        dec.weight.copy_(u)
    return TinyAE(enc, dec)
