r"""Decoder upsampling as a choice: transposed convolution, resize + convolution, pixel shuffle.

"Applying modern best practices to autoencoders" (seed 003) and Odena, Dumoulin & Olah
("Deconvolution and checkerboard artifacts", Distill 2016): a transposed convolution whose
kernel size ``k`` is not divisible by its stride ``s`` covers the output *unevenly* -- with
``k = 3, s = 2`` the even output positions receive one kernel tap per input pixel and the odd
ones two -- so even a constant input produces a period-2 ("checkerboard") pattern. Separating
upsampling from convolution (nearest/bilinear resize, then a stride-1 convolution) or using a
sub-pixel convolution (pixel shuffle, Shi et al. 2016) avoids the uneven overlap.
:mod:`aeprobe.probes.checkerboard` measures the resulting pattern.

:func:`make_upsample` ``(kind, in_ch, out_ch, scale=2, kernel_size=3)`` returns an
:class:`UpsampleBlock` (an ``nn.Sequential``) mapping ``[N, in_ch, H, W]`` to
``[N, out_ch, scale * H, scale * W]`` for every kind (any ``H, W``):

``"transposed"``
    ``ConvTranspose2d(in_ch, out_ch, k, stride=scale, padding=p, output_padding=op)`` with
    ``p = ceil((k - scale) / 2)`` (0 when ``k < scale``) and ``op = scale + 2 p - k`` so that
    the output is exactly ``scale`` times larger. ``k`` divisible by ``scale`` (e.g. 4 with
    stride 2) gives even overlap; ``k = 3, scale = 2`` (the common default) does not.
``"nearest"``, ``"bilinear"``
    ``Upsample(scale_factor=scale, mode)`` then ``Conv2d(in_ch, out_ch, k, padding="same")``.
``"pixel_shuffle"``
    ``Conv2d(in_ch, out_ch * scale**2, k, padding="same")`` then ``PixelShuffle(scale)``. With
    ``icnr=True`` (default; Aitken et al. 2017, "ICNR") the convolution is initialised so that
    the ``scale**2`` sub-pixel channels of every output channel share one kernel, which makes
    the block *equal* to ``nearest_upsample(conv_sub(x))`` at initialisation (no checkerboard
    at the start of training).
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["UPSAMPLE_KINDS", "UpsampleBlock", "make_upsample", "transposed_padding", "icnr_"]

UPSAMPLE_KINDS: tuple[str, ...] = ("transposed", "nearest", "bilinear", "pixel_shuffle")


def transposed_padding(kernel_size: int, scale: int) -> tuple[int, int]:
    """``(padding, output_padding)`` making ``ConvTranspose2d(k, stride=scale)`` upsample by exactly ``scale``.

    Output size of a transposed convolution: ``(H - 1) s - 2 p + k + op``; setting it to
    ``s H`` gives ``op = s + 2 p - k``, which must lie in ``[0, s)``: ``p = max(0, ceil((k - s) / 2))``.
    """
    if kernel_size < 1 or scale < 1:
        raise ValueError(f"kernel_size and scale must be >= 1, got {kernel_size}, {scale}")
    p = max(0, math.ceil((kernel_size - scale) / 2))
    op = scale + 2 * p - kernel_size
    if not 0 <= op < scale:
        raise ValueError(f"a transposed convolution with kernel {kernel_size} and stride {scale} cannot upsample by "
                         f"exactly {scale} (needs output_padding {op}, which must be in [0, {scale}))")
    return p, op


@torch.no_grad()
def icnr_(weight: torch.Tensor, scale: int, init=nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR initialisation in place: ``weight`` ``[out * scale**2, in, k, k]`` gets one kernel per
    output channel, repeated for its ``scale**2`` sub-pixel channels (``PixelShuffle`` order)."""
    out_total = weight.shape[0]
    r2 = scale * scale
    if out_total % r2:
        raise ValueError(f"weight has {out_total} output channels, not a multiple of scale**2 = {r2}")
    sub = torch.empty(out_total // r2, *weight.shape[1:], dtype=weight.dtype, device=weight.device)
    init(sub)
    weight.copy_(sub.repeat_interleave(r2, dim=0))
    return weight


class UpsampleBlock(nn.Sequential):
    """An upsampling block made by :func:`make_upsample`; ``kind``, ``scale``, ``kernel_size`` recorded."""

    def __init__(self, *layers: nn.Module, kind: str, scale: int, kernel_size: int):
        super().__init__(*layers)
        self.kind, self.scale, self.kernel_size = kind, scale, kernel_size

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, scale={self.scale}, kernel_size={self.kernel_size}"


def _check_int(name: str, v, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return v


def make_upsample(kind: str, in_ch: int, out_ch: int, scale: int = 2, kernel_size: int = 3, *,
                  bias: bool = True, icnr: bool = True) -> UpsampleBlock:
    """An upsampling layer of the given ``kind`` (:data:`UPSAMPLE_KINDS`, see the module docstring).

    Maps ``[N, in_ch, H, W] -> [N, out_ch, scale H, scale W]``. ``kernel_size`` is the kernel
    of the (transposed or sub-pixel) convolution; ``icnr`` only affects ``"pixel_shuffle"``.
    """
    in_ch, out_ch = _check_int("in_ch", in_ch), _check_int("out_ch", out_ch)
    scale, kernel_size = _check_int("scale", scale), _check_int("kernel_size", kernel_size)
    if kind == "transposed":
        p, op = transposed_padding(kernel_size, scale)
        conv = nn.ConvTranspose2d(in_ch, out_ch, kernel_size, stride=scale, padding=p, output_padding=op, bias=bias)
        return UpsampleBlock(conv, kind=kind, scale=scale, kernel_size=kernel_size)
    if kind in ("nearest", "bilinear"):
        up = nn.Upsample(scale_factor=scale, mode=kind, **({"align_corners": False} if kind == "bilinear" else {}))
        conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding="same", bias=bias)
        return UpsampleBlock(up, conv, kind=kind, scale=scale, kernel_size=kernel_size)
    if kind == "pixel_shuffle":
        conv = nn.Conv2d(in_ch, out_ch * scale * scale, kernel_size, padding="same", bias=bias)
        if icnr:
            icnr_(conv.weight, scale)
            if conv.bias is not None:
                with torch.no_grad():
                    conv.bias.copy_(conv.bias[::scale * scale].repeat_interleave(scale * scale))
        return UpsampleBlock(conv, nn.PixelShuffle(scale), kind=kind, scale=scale, kernel_size=kernel_size)
    import difflib

    close = difflib.get_close_matches(str(kind), UPSAMPLE_KINDS, n=2)
    raise ValueError(f"unknown upsample kind {kind!r}; choose from {list(UPSAMPLE_KINDS)}"
                     + (f" (did you mean {close}?)" if close else ""))
