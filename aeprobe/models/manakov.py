r"""The convolutional autoencoder of Manakov et al. (Sect. 2.2), scaled for small CPU inputs.

Encoder: ``depth`` 3x3 convolutions ``s_1 .. s_depth`` with stride 2 (or 1), each followed by
instance norm and ReLU (and ``residual`` residual blocks of two convs each); decoder: the mirror
image, (bilinear x2 upsampling when the matching encoder layer had stride 2) + padded 3x3 conv.
Channels are multiplied by 4 at every stride-2 layer and divided by 4 at every upsampling layer,
so the activation *volume* (height x width x channels) equals the input volume everywhere except
at the bottleneck (their Eq. 3). The bottleneck is the only moving part:

* **area** -- ``"S"``: all ``depth`` layers have stride 2, area ``(size / 2^depth)^2``;
  ``"M"``: the last layer has stride 1 (area x4); ``"L"``: the last two have stride 1 (area x16).
  The paper's 96x96 inputs with ``depth=5`` give 3x3, 6x6, 12x12; our 32x32 default gives 1x1,
  2x2, 4x4 (the same ratios to the input area).
* **compression** -- bottleneck volume / input volume (paper: 1/64, 1/16, 1/4, 1); the code
  layer gets ``compression * C * size^2 / area`` channels, which must be a positive integer.

Deviation, stated: the code layer (last encoder conv) is linear, without instance norm or ReLU --
instance norm over a 1x1 map is identically zero, so a normalised 1x1 code would carry nothing.
The output layer is linear too (MSE training on [0, 1] images). Stride-1 layers of the M/L
variants keep their channel count, so the volume stays constant there as well.
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from aeprobe.models._base import AutoEncoder, check_input
from aeprobe.models.upsample import UPSAMPLE_KINDS, make_upsample

__all__ = ["ManakovCAE", "AREAS", "COMPRESSIONS", "NORMS", "ResidualBlock", "bottleneck_shape"]

#: Bottleneck areas and the number of trailing stride-1 encoder layers that define them.
AREAS: dict[str, int] = {"S": 0, "M": 1, "L": 2}
#: The paper's compression levels (bottleneck volume / input volume).
COMPRESSIONS: tuple[Fraction, ...] = (Fraction(1, 64), Fraction(1, 16), Fraction(1, 4), Fraction(1, 1))


NORMS = ("instance", "batch", "none")


def _norm(kind: str, ch: int) -> nn.Module:
    """Instance norm (paper), batch norm, or nothing."""
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    return nn.Identity()


def _conv_block(cin: int, cout: int, stride: int = 1, norm: str = "instance") -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), _norm(norm, cout),
                         nn.ReLU())


class ResidualBlock(nn.Module):
    """``relu(x + IN(conv(relu(IN(conv(x))))))`` (He et al.), channels unchanged."""

    def __init__(self, ch: int, norm: str = "instance"):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), _norm(norm, ch), nn.ReLU(),
                                  nn.Conv2d(ch, ch, 3, padding=1), _norm(norm, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class Upsample(nn.Module):
    """Bilinear x2 upsampling (``align_corners=False``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _strides(depth: int, area: str) -> list[int]:
    k = AREAS[area]
    return [2] * (depth - k) + [1] * k


def bottleneck_shape(in_channels: int, size: int, area: str, compression, depth: int) -> tuple[int, int, int]:
    """``(channels, h, w)`` of the code, or a ``ValueError`` saying why the combination is impossible."""
    if area not in AREAS:
        raise ValueError(f"area must be one of {tuple(AREAS)}, got {area!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < AREAS[area] + 1:
        raise ValueError(f"depth must be an integer >= {AREAS[area] + 1} for area {area!r}, got {depth!r}")
    n2 = depth - AREAS[area]
    if size % (2 ** n2):
        raise ValueError(f"size {size} is not divisible by 2^{n2} (area {area!r}, depth {depth})")
    side = size // 2 ** n2
    comp = Fraction(compression).limit_denominator(4096)
    if comp <= 0:
        raise ValueError(f"compression must be > 0, got {compression!r}")
    ch = comp * in_channels * size * size / (side * side)
    if ch.denominator != 1 or ch < 1:
        raise ValueError(f"compression {comp} of a {in_channels}x{size}x{size} input at area {area!r} "
                         f"({side}x{side}) needs {float(ch):g} code channels, not a positive integer; "
                         f"use a larger depth or input, or another compression")
    return int(ch), side, side


class ManakovCAE(AutoEncoder):
    """Manakov et al.'s CAE with a chosen bottleneck ``area`` and ``compression``.

    Parameters
    ----------
    in_channels, size : input ``[N, in_channels, size, size]``.
    area : ``"S"``, ``"M"`` or ``"L"`` (see module docstring).
    compression : bottleneck volume / input volume (float or Fraction).
    depth : number of encoder (and decoder) conv layers (paper: 5).
    residual : residual blocks after each conv layer (``True`` = 2, as in the paper; default none).
    norm : ``"instance"`` (paper, after every hidden conv), ``"batch"`` or ``"none"``. Instance
        norm removes each feature map's mean and scale per image, so per-image brightness must
        survive through the linear code layer alone; on small grey patches that is a large part of
        the error (see ``experiments/bottleneck.py``'s report).
    upsample : decoder upsampling, ``"bilinear"`` resize + conv (paper) or another kind of
        :func:`aeprobe.models.upsample.make_upsample` (``"transposed"``, ``"pixel_shuffle"``, ``"nearest"``).
    """

    def __init__(self, in_channels: int = 1, size: int = 32, area: str = "S", compression=Fraction(1, 16),
                 depth: int = 5, residual: bool | int = False, upsample: str = "bilinear", norm: str = "instance"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"ManakovCAE: norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm
        if upsample not in UPSAMPLE_KINDS:
            raise ValueError(f"ManakovCAE: upsample must be one of {UPSAMPLE_KINDS}, got {upsample!r}")
        self.upsample = upsample
        code_ch, side, _ = bottleneck_shape(in_channels, size, area, compression, depth)
        n_res = 2 if residual is True else int(residual)
        if n_res < 0:
            raise ValueError(f"residual must be a bool or a non-negative int, got {residual!r}")
        self.in_channels, self.size, self.area, self.depth = in_channels, size, area, depth
        self.compression = Fraction(compression).limit_denominator(4096)
        self.code_shape = (code_ch, side, side)
        strides = _strides(depth, area)
        chans = [in_channels]
        for s in strides[:-1]:
            chans.append(chans[-1] * s * s)
        chans.append(code_ch)
        enc: list[nn.Module] = []
        for i, s in enumerate(strides):
            if i < depth - 1:
                enc.append(_conv_block(chans[i], chans[i + 1], s, norm))
                enc.extend(ResidualBlock(chans[i + 1], norm) for _ in range(n_res))
            else:
                enc.append(nn.Conv2d(chans[i], chans[i + 1], 3, stride=s, padding=1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = []
        rch, rs = chans[::-1], strides[::-1]
        for i, s in enumerate(rs):
            last = i == depth - 1
            if s == 2 and upsample != "bilinear":  # transposed conv / pixel shuffle / nearest + conv
                up = make_upsample(upsample, rch[i], rch[i + 1], 2, 3)
                dec.append(up if last else nn.Sequential(up, _norm(norm, rch[i + 1]), nn.ReLU()))
            else:  # the paper's bilinear upsampling + padded conv (or a plain conv at stride 1)
                if s == 2:
                    dec.append(Upsample())
                dec.append(nn.Conv2d(rch[i], rch[i + 1], 3, padding=1) if last else _conv_block(rch[i], rch[i + 1], norm=norm))
            if not last:
                dec.extend(ResidualBlock(rch[i + 1], norm) for _ in range(n_res))
        self.decoder = nn.Sequential(*dec)

    @property
    def code_volume(self) -> int:
        return math.prod(self.code_shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, 4, self.in_channels, (self.size, self.size), "ManakovCAE.encode")
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2 and z.shape[1] == self.code_volume:
            z = z.reshape(-1, *self.code_shape)
        if z.ndim != 4 or tuple(z.shape[1:]) != self.code_shape:
            raise ValueError(f"ManakovCAE.decode expects codes of shape [N, {', '.join(map(str, self.code_shape))}] "
                             f"(or flattened [N, {self.code_volume}]), got {tuple(z.shape)}")
        return self.decoder(z)
