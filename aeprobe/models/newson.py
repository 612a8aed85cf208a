r"""The networks of Newson et al. (Sect. 3, Table 1; Sect. 5).

:class:`DiskAE` -- 3x3 convolutions with stride 2 from ``size x size`` (64) down to a ``1 x 1``
code of ``code_size`` numbers (encoder depths 1, 8, 4, 4, 3, 2, d), leaky ReLU with slope 0.2,
and the mirrored decoder of (x2 upsampling + 3x3 conv) layers back to ``size x size``. ``bias``
switches every bias of the net on or off. Without biases every layer is linear or a leaky ReLU,
so the decoder is positively homogeneous, ``D(lambda z) = lambda D(z)`` for ``lambda > 0``
(Prop. 1): with a 1-number code its output is ``h(r) f(t)``, which :mod:`aeprobe.probes.profile`
compares with the Airy profile of :mod:`theory.disks`.

The code layer and the output layer are linear (no activation): the code is then a linear
read-out of the last hidden layer and the output can take any sign, as in ``y = h(r) f``.

:class:`PositionEncoder`, :class:`PositionDecoder`, :class:`PositionAE` -- the 1-D nets of Sect. 5:
``L`` layers ``Conv1d(1, 1, 3, stride=2, padding=1)`` (depth 1, so the learned filter can be set
against ``[1, 2, 1]``: PyTorch's layer computes ``u[t] = w0 x[2t-1] + w1 x[2t] + w2 x[2t+1]``,
exactly :func:`theory.position.layer`) down to a scalar, and a decoder of (x2 upsampling +
size-3 conv) layers with depths ``[1, 2, 4, 4, 4, 8]`` up to length ``2^L``. ``activation=False``
with ``bias=False`` is the linear network of Prop. 3.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from aeprobe.models._base import AutoEncoder, check_input
from aeprobe.models.upsample import UPSAMPLE_KINDS, make_upsample

__all__ = ["DiskAE", "PositionEncoder", "PositionDecoder", "PositionAE", "DISK_DEPTHS", "POSITION_DECODER_DEPTHS"]

#: Hidden encoder depths of Table 1 (between the 1-channel input and the code).
DISK_DEPTHS: tuple[int, ...] = (8, 4, 4, 3, 2)
#: Decoder depths of Sect. 5 (input channels of each upsampling layer).
POSITION_DECODER_DEPTHS: tuple[int, ...] = (1, 2, 4, 4, 4, 8)


def _levels(size: int, who: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 2 or size & (size - 1):
        raise ValueError(f"{who}: size must be a power of two >= 2, got {size!r}")
    return int(math.log2(size))


def _act(negative_slope: float) -> nn.Module:
    return nn.LeakyReLU(negative_slope)


class DiskAE(AutoEncoder):
    """Newson et al.'s disk autoencoder (Table 1).

    Parameters
    ----------
    bias : biases in every conv (``False``: the ablated net of Sect. 4.3).
    code_size : ``d``, channels of the ``1 x 1`` code.
    size : input side, a power of two (64 in the paper: 6 stride-2 layers).
    depths : hidden depths, ``log2(size) - 1`` of them (default Table 1, truncated or padded with
        its last value for other sizes).
    negative_slope : leaky ReLU slope (0.2).
    upsample : x2 upsampling in the decoder, one of :data:`aeprobe.models.upsample.UPSAMPLE_KINDS`:
        ``"nearest"`` (default) or ``"bilinear"`` resize + conv, ``"transposed"`` (3x3 transposed
        conv), ``"pixel_shuffle"``. All are linear, so the bias-free decoder stays homogeneous.

    ``encode(x)`` maps ``[N, 1, size, size]`` to ``[N, d]``; ``decode(z)`` maps ``[N, d]`` back.
    """

    def __init__(self, bias: bool = True, code_size: int = 1, size: int = 64, depths: Sequence[int] | None = None,
                 negative_slope: float = 0.2, upsample: str = "nearest"):
        super().__init__()
        levels = _levels(size, "DiskAE")
        if isinstance(code_size, bool) or not isinstance(code_size, int) or code_size < 1:
            raise ValueError(f"DiskAE: code_size must be a positive integer, got {code_size!r}")
        if depths is None:
            depths = tuple(DISK_DEPTHS[:levels - 1]) + (DISK_DEPTHS[-1],) * max(0, levels - 1 - len(DISK_DEPTHS))
        depths = tuple(int(d) for d in depths)
        if len(depths) != levels - 1 or min(depths, default=1) < 1:
            raise ValueError(f"DiskAE: size {size} needs {levels - 1} positive hidden depths, got {depths}")
        if upsample not in UPSAMPLE_KINDS:
            raise ValueError(f"DiskAE: upsample must be one of {UPSAMPLE_KINDS}, got {upsample!r}")
        self.size, self.code_size, self.bias, self.depths = size, code_size, bool(bias), depths
        chans = (1,) + depths + (code_size,)
        enc: list[nn.Module] = []
        for i in range(levels):
            enc.append(nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1, bias=bias))
            if i < levels - 1:
                enc.append(_act(negative_slope))
        enc.append(nn.Flatten(1))
        self.encoder = nn.Sequential(*enc)
        rchans = chans[::-1]
        dec: list[nn.Module] = [nn.Unflatten(1, (code_size, 1, 1))]
        for i in range(levels):
            if upsample in ("nearest", "bilinear"):  # the paper's layout: Upsample, Conv2d
                kw = {} if upsample == "nearest" else {"align_corners": False}
                dec.append(nn.Upsample(scale_factor=2, mode=upsample, **kw))
                dec.append(nn.Conv2d(rchans[i], rchans[i + 1], 3, padding=1, bias=bias))
            else:  # transposed conv or pixel shuffle: one block
                dec.append(make_upsample(upsample, rchans[i], rchans[i + 1], 2, 3, bias=bias))
            if i < levels - 1:
                dec.append(_act(negative_slope))
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, 4, 1, (self.size, self.size), "DiskAE.encode")
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 4 and tuple(z.shape[2:]) == (1, 1):
            z = z.flatten(1)
        if z.ndim != 2 or z.shape[1] != self.code_size:
            raise ValueError(f"DiskAE.decode expects codes of shape [N, {self.code_size}], got {tuple(z.shape)}")
        return self.decoder(z)


class PositionEncoder(nn.Module):
    """``L`` layers ``Conv1d(1, 1, 3, stride=2, padding=1)`` from length ``2^L`` to a scalar ``[N, 1]``.

    ``activation=True`` puts a leaky ReLU (slope ``negative_slope``) between layers (not after the
    last); with ``bias=False, activation=False`` the net is Prop. 3's linear encoder ``E``.
    """

    def __init__(self, L: int = 6, bias: bool = False, activation: bool = False, negative_slope: float = 0.2):
        super().__init__()
        if isinstance(L, bool) or not isinstance(L, int) or not 1 <= L <= 16:
            raise ValueError(f"PositionEncoder: L must be an integer in 1..16, got {L!r}")
        self.L, self.n = L, 2 ** L
        layers: list[nn.Module] = []
        for i in range(L):
            layers.append(nn.Conv1d(1, 1, 3, stride=2, padding=1, bias=bias))
            if activation and i < L - 1:
                layers.append(_act(negative_slope))
        layers.append(nn.Flatten(1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, 3, 1, (self.n,), "PositionEncoder")
        return self.net(x)


class PositionDecoder(nn.Module):
    """From a scalar code ``[N, 1]`` to a signal ``[N, 1, 2^L]`` through ``L`` (x2 upsampling +
    ``Conv1d`` size 3) layers with input depths ``depths`` (Sect. 5: ``[1, 2, 4, 4, 4, 8]``),
    leaky ReLU between layers and a linear output."""

    def __init__(self, L: int = 6, bias: bool = True, depths: Sequence[int] | None = None,
                 negative_slope: float = 0.2, upsample: str = "nearest"):
        super().__init__()
        if isinstance(L, bool) or not isinstance(L, int) or not 1 <= L <= 16:
            raise ValueError(f"PositionDecoder: L must be an integer in 1..16, got {L!r}")
        if depths is None:
            depths = POSITION_DECODER_DEPTHS[:L] + (POSITION_DECODER_DEPTHS[-1],) * max(0, L - 6)
        depths = tuple(int(d) for d in depths)
        if len(depths) != L or depths[0] != 1 or min(depths) < 1:
            raise ValueError(f"PositionDecoder: need {L} positive depths starting with 1, got {depths}")
        self.L, self.n = L, 2 ** L
        chans = depths + (1,)
        layers: list[nn.Module] = [nn.Unflatten(1, (1, 1))]
        for i in range(L):
            layers.append(nn.Upsample(scale_factor=2, mode=upsample))
            layers.append(nn.Conv1d(chans[i], chans[i + 1], 3, padding=1, bias=bias))
            if i < L - 1:
                layers.append(_act(negative_slope))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 3 and z.shape[1:] == (1, 1):
            z = z.flatten(1)
        if z.ndim == 1:
            z = z[:, None]
        if z.ndim != 2 or z.shape[1] != 1:
            raise ValueError(f"PositionDecoder expects scalar codes of shape [N, 1], got {tuple(z.shape)}")
        return self.net(z)


class PositionAE(AutoEncoder):
    """:class:`PositionEncoder` + :class:`PositionDecoder` (Sect. 5). ``bias`` and ``activation``
    apply to the encoder; the decoder has biases and leaky ReLUs unless ``decoder_bias=False``."""

    def __init__(self, L: int = 6, bias: bool = False, activation: bool = False, decoder_bias: bool | None = None,
                 negative_slope: float = 0.2):
        super().__init__()
        self.L, self.n = L, 2 ** L
        self.encoder = PositionEncoder(L, bias=bias, activation=activation, negative_slope=negative_slope)
        self.decoder = PositionDecoder(L, bias=bias if decoder_bias is None else decoder_bias,
                                       negative_slope=negative_slope)
