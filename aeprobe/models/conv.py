"""A small fully-convolutional autoencoder whose decoder upsampling is a choice.

``ConvAE(in_channels=1, channels=(16, 32), latent_channels=4, upsample="nearest")``:

* encoder: ``len(channels)`` blocks ``Conv2d(3x3, stride 2, padding 1) -> ReLU`` (each halves
  ``H`` and ``W``), then a ``1x1`` convolution to ``latent_channels`` (the code, linear);
* decoder: ``Conv2d(3x3) latent -> channels[-1] -> ReLU``, then ``len(channels)`` upsampling
  blocks from :func:`aeprobe.models.upsample.make_upsample` (``channels[-1] -> ... ->
  channels[0] -> in_channels``, ReLU between them), the *last one producing the pixels* (so
  its artifacts are not smoothed by a later convolution), then ``output`` (``"sigmoid"``
  default, or ``None`` for a linear output).

Fully convolutional: any ``H, W`` divisible by ``2 ** len(channels)`` works, and the code is
``[N, latent_channels, H / 2**d, W / 2**d]`` -- which is what progressive resizing
(:mod:`aeprobe.schedules`) needs. Follows the aeprobe contract: ``.encoder``/``.decoder``
submodules, ``encode(x)``, ``decode(z)``, ``forward(x) = decode(encode(x))``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from aeprobe.models._base import AutoEncoder
from aeprobe.models.upsample import UPSAMPLE_KINDS, make_upsample

__all__ = ["ConvAE"]


class ConvAE(AutoEncoder):
    """Fully-convolutional AE with a configurable decoder upsampling (see module docstring)."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32), latent_channels: int = 4, *,
                 upsample: str = "nearest", kernel_size: int = 3, output: str | None = "sigmoid",
                 icnr: bool = True):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty sequence of positive ints, got {channels}")
        if in_channels < 1 or latent_channels < 1:
            raise ValueError(f"in_channels and latent_channels must be >= 1, got {in_channels}, {latent_channels}")
        if upsample not in UPSAMPLE_KINDS:
            raise ValueError(f"upsample must be one of {list(UPSAMPLE_KINDS)}, got {upsample!r}")
        if output not in ("sigmoid", None):
            raise ValueError(f"output must be 'sigmoid' or None, got {output!r}")
        self.in_channels, self.channels, self.latent_channels = int(in_channels), channels, int(latent_channels)
        self.upsample, self.kernel_size, self.output = upsample, int(kernel_size), output
        self.depth = len(channels)
        enc: list[nn.Module] = []
        c_prev = in_channels
        for c in channels:
            enc += [nn.Conv2d(c_prev, c, 3, stride=2, padding=1), nn.ReLU()]
            c_prev = c
        enc.append(nn.Conv2d(c_prev, latent_channels, 1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, channels[-1], 3, padding=1), nn.ReLU()]
        outs = list(channels[-2::-1]) + [in_channels]
        c_prev = channels[-1]
        for i, c in enumerate(outs):
            dec.append(make_upsample(upsample, c_prev, c, 2, kernel_size, icnr=icnr))
            if i < len(outs) - 1:
                dec.append(nn.ReLU())
            c_prev = c
        if output == "sigmoid":
            dec.append(nn.Sigmoid())
        self.decoder = nn.Sequential(*dec)

    @property
    def factor(self) -> int:
        """Total down/upsampling factor ``2 ** depth`` (input sizes must be divisible by it)."""
        return 2 ** self.depth

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvAE expects [N, {self.in_channels}, H, W] inputs, got {tuple(x.shape)}")
        if x.shape[2] % self.factor or x.shape[3] % self.factor:
            raise ValueError(f"ConvAE with {self.depth} stride-2 layers needs H and W divisible by {self.factor}, "
                             f"got {tuple(x.shape[2:])}")
        return x

    def _check_code(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"ConvAE expects codes [N, {self.latent_channels}, h, w], got {tuple(z.shape)}")
        return z

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._check_input(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._check_code(z))

    def code_shape(self, height: int, width: int | None = None) -> tuple[int, int, int]:
        """Code shape ``(latent_channels, h, w)`` for inputs of size ``height x width``."""
        width = height if width is None else width
        return (self.latent_channels, height // self.factor, width // self.factor)

    def extra_repr(self) -> str:
        return f"upsample={self.upsample!r}, kernel_size={self.kernel_size}, channels={self.channels}"
