"""The interface every aeprobe autoencoder follows, so probes can split encoder and decoder."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["AutoEncoder", "check_input"]


def check_input(x: torch.Tensor, ndim: int, channels: int, spatial: tuple[int, ...] | None, who: str) -> None:
    """Raise a ``ValueError`` naming the expected shape when ``x`` does not fit."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects a torch.Tensor, got {type(x).__name__}")
    want = f"[N, {channels}, {', '.join(map(str, spatial))}]" if spatial else f"[N, {channels}, ...]"
    if x.ndim != ndim or x.shape[1] != channels or (spatial is not None and tuple(x.shape[2:]) != tuple(spatial)):
        raise ValueError(f"{who} expects input of shape {want}, got {tuple(x.shape)}")


class AutoEncoder(nn.Module):
    """``forward(x) = decode(encode(x))`` with ``.encoder`` and ``.decoder`` submodules.

    Subclasses set ``self.encoder`` / ``self.decoder``; ``encode`` / ``decode`` default to calling
    them, so hooks on ``"encoder"`` / ``"decoder"`` see every code and every output.
    """

    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @property
    def has_bias(self) -> bool:
        """True when any parameter is named ``*.bias``."""
        return any(n.endswith("bias") for n, _ in self.named_parameters())
