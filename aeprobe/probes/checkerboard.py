r"""Checkerboard-artifact probe: how much of a decoder's output sits at the stride-2 alias frequencies.

Odena, Dumoulin & Olah ("Deconvolution and checkerboard artifacts", 2016; cited by seed 003):
a stride-2 upsampling layer whose kernel covers the output unevenly (transposed convolution
with kernel size not divisible by the stride) adds a pattern of period 2 to its output. A
period-2 pattern lives exactly on the three *Nyquist* bins of the 2-D discrete Fourier
transform: for an ``H x W`` image ``y`` (``H``, ``W`` even) with DFT
``Y(u, v) = sum_{r,c} y[r, c] e^{-2 pi i (u r / H + v c / W)}``,

.. math::

    Y(H/2, 0) = \sum_{r,c} (-1)^r y[r,c],\quad Y(0, W/2) = \sum (-1)^c y[r,c],\quad
    Y(H/2, W/2) = \sum (-1)^{r+c} y[r,c],

i.e. the frequencies ``(pi, 0)``, ``(0, pi)`` and ``(pi, pi)`` (the last one is the
checkerboard ``(-1)^(r+c)`` proper). The figures, per image and channel:

* ``E_nyq = |Y(pi,0)|^2 + |Y(0,pi)|^2 + |Y(pi,pi)|^2``;
* ``E_ac = sum_{u,v} |Y(u,v)|^2 - |Y(0,0)|^2 = H W sum (y - mean y)^2`` (Parseval): all
  non-constant energy;
* ``nyquist_fraction = sum E_nyq / sum E_ac`` pooled over images and channels, in ``[0, 1]``:
  0 = no period-2 structure, 1 = the output is a constant plus a pure period-2 pattern
  (any 2x2 tile repeated);
* ``checker_fraction``: the same with ``|Y(pi,pi)|^2`` only;
* ``alias_rms = sqrt(mean E_nyq) / (H W)``: root-mean-square amplitude, in output units, of the
  period-2 component ``p`` of the image (``sum p^2 = E_nyq / (H W)`` by Parseval). Unlike the
  fractions it is defined (0) for a constant output.

Pooling sums before dividing, so near-constant outputs (``E_ac ~ 0``) do not dominate.
``crop`` removes that many pixels at every border first (zero-padding borders add structure
of their own); the cropped size must stay even.

:func:`checkerboard_probe` evaluates a decoder on two kinds of codes:

* **constant codes**: spatially constant per channel (``z[n, c, ...] = v[n, c]``; for flat codes
  ``[N, m]``, which have no spatial axes, every unit gets the same value ``v[n]``). A
  resize + convolution decoder maps a spatially constant feature map to a constant image away
  from the borders (every layer is shift-invariant and the resize of a constant is constant),
  so its interior alias energy is exactly 0 for *any* weights; a stride-2 transposed
  convolution maps it to a periodic image (a 2x2 tile per layer) unless its kernel's polyphase
  sums happen to be equal -- the Odena et al. artifact. A pixel shuffle is a transposed
  convolution with kernel divisible by the stride: even overlap, but its four sub-pixel kernels
  may still learn different sums (ICNR initialisation makes them equal at the start). Any
  Nyquist energy on constant codes is artifact.
* **random codes**: i.i.d. Gaussian with the mean and standard deviation of ``data_codes``
  (per unit for flat codes, per channel for spatial codes; standard normal without them).

Zero-padding borders add structure of their own. For a fully-convolutional decoder pass a
``code_shape`` with a *larger spatial size* than the data codes (e.g. 4x) and ``crop`` the
border of the output, so the statistics describe the interior; spatial codes use per-channel
moments precisely so that the code size can differ from the data's.

An output that is constant up to float rounding (``E_ac <= REL_FLOOR * total energy``) has
fractions 0 (there is no structure to apportion) and ``alias_rms`` ~ 1e-8.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aeprobe.utils import on_device
from aeprobe.view import as_view

#: Relative energy below which an output counts as constant (float32 rounding gives ~1e-14).
REL_FLOOR = 1e-10

__all__ = ["REL_FLOOR", "SpectrumStats", "CheckerboardReport", "alias_energy", "alias_stats", "checkerboard_probe",
           "constant_codes", "random_codes"]


@dataclass
class SpectrumStats:
    """Pooled Nyquist-energy figures of a batch of images (see module docstring)."""

    nyquist_fraction: float
    checker_fraction: float
    alias_rms: float
    ac_rms: float
    n_images: int
    height: int
    width: int


@dataclass
class CheckerboardReport:
    """:func:`checkerboard_probe` result: ``constant`` and ``random`` code statistics."""

    constant: SpectrumStats
    random: SpectrumStats
    code_shape: tuple
    crop: int


def _as_images(y) -> torch.Tensor:
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"images must be a tensor or array, got {type(y).__name__}")
    if y.ndim == 2:
        y = y[None, None]
    elif y.ndim == 3:
        y = y[:, None]
    if y.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], [N, H, W] or [H, W], got shape {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError("images contain NaN or inf")
    return y.detach().to("cpu", torch.float64)


def alias_energy(images, *, crop: int = 0) -> dict[str, np.ndarray]:
    """Per image and channel: ``{"nyquist", "checker", "ac", "dc"}`` energies (arrays ``[N, C]``).

    ``images``: ``[N, C, H, W]`` (or ``[N, H, W]``, ``[H, W]``); ``H - 2 crop`` and
    ``W - 2 crop`` must be even and positive. ``nyquist`` = ``E_nyq``, ``checker`` =
    ``|Y(pi,pi)|^2``, ``ac`` = ``E_ac``, ``dc`` = ``|Y(0,0)|^2`` (module docstring).
    """
    y = _as_images(images)
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 0:
        raise ValueError(f"crop must be a non-negative int, got {crop!r}")
    if crop:
        y = y[..., crop:y.shape[-2] - crop, crop:y.shape[-1] - crop]
    h, w = y.shape[-2:]
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise ValueError(f"the (cropped) images must have even height and width >= 2 to have Nyquist bins, "
                         f"got {h}x{w} (crop={crop})")
    sr = torch.tensor([(-1.0) ** r for r in range(h)], dtype=y.dtype)[:, None]
    sc = torch.tensor([(-1.0) ** c for c in range(w)], dtype=y.dtype)[None, :]
    y_r = (y * sr).sum((-2, -1))          # Y(pi, 0)
    y_c = (y * sc).sum((-2, -1))          # Y(0, pi)
    y_rc = (y * sr * sc).sum((-2, -1))    # Y(pi, pi)
    dc = y.sum((-2, -1))
    ac = h * w * ((y - y.mean((-2, -1), keepdim=True)) ** 2).sum((-2, -1))
    return {"nyquist": (y_r ** 2 + y_c ** 2 + y_rc ** 2).numpy(), "checker": (y_rc ** 2).numpy(),
            "ac": ac.numpy(), "dc": (dc ** 2).numpy(), "hw": np.array([h, w])}


def alias_stats(images, *, crop: int = 0) -> SpectrumStats:
    """Pooled :class:`SpectrumStats` of a batch of images (module docstring)."""
    e = alias_energy(images, crop=crop)
    h, w = (int(v) for v in e["hw"])
    nyq, chk, ac = e["nyquist"].sum(), e["checker"].sum(), e["ac"].sum()
    count = e["nyquist"].size
    # E_nyq <= E_ac always (the Nyquist bins are part of the non-DC spectrum). An output that is
    # constant up to float rounding (E_ac <= REL_FLOOR * total energy) has no structure to
    # apportion: its fractions are reported as 0 instead of ratios of rounding noise.
    structured = ac > REL_FLOOR * (ac + e["dc"].sum()) and ac > 0
    return SpectrumStats(
        nyquist_fraction=float(nyq / ac) if structured else 0.0,
        checker_fraction=float(chk / ac) if structured else 0.0,
        alias_rms=float(np.sqrt(nyq / count) / (h * w)),
        ac_rms=float(np.sqrt(ac / count) / (h * w)),
        n_images=int(e["nyquist"].shape[0]), height=h, width=w)


def _code_moments(data_codes, code_shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sd of the data codes, broadcastable to ``code_shape``.

    Flat codes ``[N, m]``: per unit (``code_shape`` must be ``(m,)``). Spatial codes
    ``[N, C, h, w, ...]``: per channel, pooled over positions and samples (``[C, 1, 1, ...]``), so
    ``code_shape`` may have any spatial size (a fully-convolutional decoder then makes larger
    outputs, whose interior is far from the zero-padding borders). Without data codes: 0 and 1.
    """
    if data_codes is None:
        return torch.zeros(()), torch.ones(())
    z = data_codes.detach().to("cpu", torch.float32)
    if z.shape[0] * max(1, int(np.prod(z.shape[2:]))) < 2:
        raise ValueError("data_codes need at least 2 values per unit/channel to estimate a spread")
    if len(code_shape) == 1:
        if tuple(z.shape[1:]) != tuple(code_shape):
            raise ValueError(f"data_codes have per-sample shape {tuple(z.shape[1:])}, expected {tuple(code_shape)}")
        return z.mean(0), z.std(0)
    if z.ndim != len(code_shape) + 1 or z.shape[1] != code_shape[0]:
        raise ValueError(f"data_codes of shape {tuple(z.shape)} do not have the channels/rank of code_shape "
                         f"{tuple(code_shape)}")
    zc = z.transpose(0, 1).reshape(z.shape[1], -1)
    extra = [1] * (len(code_shape) - 1)
    return zc.mean(1).reshape(-1, *extra), zc.std(1).reshape(-1, *extra)


def random_codes(n: int, code_shape, *, data_codes=None, seed: int = 0) -> torch.Tensor:
    """``n`` i.i.d. Gaussian codes with the mean/sd of ``data_codes`` (per unit for flat codes,
    per channel for spatial ones; N(0, 1) without data codes)."""
    code_shape = tuple(int(s) for s in code_shape)
    mu, sd = _code_moments(data_codes, code_shape)
    g = torch.Generator().manual_seed(seed)
    return mu + sd * torch.randn((n, *code_shape), generator=g)


def constant_codes(n: int, code_shape, *, data_codes=None, seed: int = 0) -> torch.Tensor:
    """``n`` spatially constant codes (module docstring): ``[N, C, h, w]`` codes are constant
    over ``h, w`` per channel (values from the per-channel data moments); flat ``[N, m]`` codes
    are constant over their ``m`` units (value from the moments pooled over all units)."""
    code_shape = tuple(int(s) for s in code_shape)
    g = torch.Generator().manual_seed(seed)
    if len(code_shape) == 1:
        if data_codes is None:
            mu, sd = torch.zeros(()), torch.ones(())
        else:
            z = data_codes.detach().to("cpu", torch.float32).reshape(data_codes.shape[0], -1)
            if z.shape[1] != code_shape[0]:
                raise ValueError(f"data_codes have {z.shape[1]} units, expected {code_shape[0]}")
            mu, sd = z.mean(), z.std()
        v = mu + sd * torch.randn((n, 1), generator=g)
        return v.expand(n, code_shape[0]).clone()
    mu, sd = _code_moments(data_codes, code_shape)
    mu_c = mu.reshape(-1)[:, None].expand(code_shape[0], 1).reshape(-1) if mu.ndim else mu.expand(code_shape[0])
    sd_c = sd.reshape(-1)[:, None].expand(code_shape[0], 1).reshape(-1) if sd.ndim else sd.expand(code_shape[0])
    v = mu_c + sd_c * torch.randn((n, code_shape[0]), generator=g)
    return v.reshape(n, code_shape[0], *([1] * (len(code_shape) - 1))).expand(n, *code_shape).clone()


def checkerboard_probe(model, *, code_shape=None, data_codes=None, n: int = 32, crop: int = 0,
                       batch_size: int = 64, seed: int = 0, device=None) -> CheckerboardReport:
    """Nyquist-energy statistics of ``model``'s decoder on constant and on random codes.

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view with ``decode`` (refused before
    any work otherwise; a bare decoder module: ``aeprobe.autoencoder(dec, decoder=dec)``);
    ``code_shape``: per-sample code shape (default: that of ``data_codes``; spatial codes may be
    larger than the data's, see module docstring); ``data_codes``: codes of real data (set the
    code distribution); ``n``: codes of each kind; ``crop``: border pixels dropped from the
    outputs. The generated codes are made in the model's dtype. Runs in ``eval`` mode on
    ``device`` (mode and device restored afterwards).

    Example::

        z = aeprobe.autoencoder(model).codes(x, flatten=False)
        rep = checkerboard_probe(model, data_codes=z, code_shape=(z.shape[1], 4 * z.shape[2], 4 * z.shape[3]),
                                 crop=8)
        rep.constant.alias_rms, rep.random.nyquist_fraction
    """
    ae = as_view(model)
    ae.require("decode", probe="checkerboard_probe")
    if data_codes is not None:
        if isinstance(data_codes, np.ndarray):
            data_codes = torch.from_numpy(data_codes)
        if not isinstance(data_codes, torch.Tensor) or data_codes.ndim < 2:
            raise ValueError("data_codes must be a tensor [N, ...] of codes")
        if not torch.isfinite(data_codes).all():
            raise ValueError("data_codes contain NaN or inf")
        if code_shape is None:
            code_shape = tuple(data_codes.shape[1:])
    if code_shape is None:
        raise ValueError("give code_shape= or data_codes=")
    code_shape = tuple(int(s) for s in code_shape)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    zc = constant_codes(n, code_shape, data_codes=data_codes, seed=seed).to(ae.dtype)
    zr = random_codes(n, code_shape, data_codes=data_codes, seed=seed + 1).to(ae.dtype)
    with on_device(ae.model, device):  # moved once, and back on exit
        yc = ae.decodings(zc, batch_size=batch_size)
        yr = ae.decodings(zr, batch_size=batch_size)
    return CheckerboardReport(constant=alias_stats(yc, crop=crop), random=alias_stats(yr, crop=crop),
                              code_shape=code_shape, crop=crop)
