r"""Position probes: learned 1-D encoder filters vs ``[1, 2, 1]`` and Dirac encoding/decoding (Newson et al., Sect. 5).

Prop. 3: ``L`` layers of the filter ``phi = [1, 2, 1]`` (Eq. 13) with stride 2 at even positions
and zero padding map a one-hot at position ``a`` of a signal of length ``2^L`` to ``2^L - a``
(Eq. 15), and any ``b * phi`` (``b != 0``) extracts the position as well. Fig. 9: a trained
encoder with depth-1 layers finds these weights.

* :func:`filter_cosine` -- for every 1-D conv layer with kernel size 3 (found with
  :func:`aeprobe.weights.layer_weights`), the cosine similarity of each filter ``w`` (one per
  output/input channel pair) to ``phi`` *up to scale and sign*: ``|<w, phi>| / (||w|| ||phi||)``
  (1 iff ``w = b phi``). Per layer the mean over its filters is reported. With ``input_length``
  (the signal length entering the first layer) only the *live* taps enter the cosine: a tap that
  multiplies nothing but zero padding for every output sample gets no gradient and keeps its
  initial value, so it says nothing about what was learned. In the encoder of Prop. 3 this is the
  left tap of the last layer (input of length 2: ``u(0) = w0 x(-1) + w1 x(0) + w2 x(1)``,
  ``x(-1) = 0``), which is then compared on ``(w1, w2)`` vs ``(2, 1)``.
* :func:`position_encoding` -- encode Diracs (one-hots, or the triangular Diracs of Eq. 19 at
  continuous positions) and compare the code with the closed form ``2^L - a`` (which for a
  triangular Dirac, by linearity of Eq. 15, is also ``2^L - a``): linear ``R^2``, Spearman
  correlation, the least-squares scale ``c`` of ``z ~ c (2^L - a)`` and the largest deviation from
  it relative to ``max |c (2^L - a)|``.
* :func:`dirac_decoding` -- decode and compare the output with the input Dirac (Fig. 10): the
  position of the output's maximum and its *local* centroid (positive part within ``window``
  samples of the maximum: a sub-sample estimate, exact for a triangular Dirac, Eq. 19) against
  ``a``, the MSE to the triangular Dirac, and ``peak_energy_fraction`` -- the share of the output's
  energy ``sum y^2`` within ``|t - a| < 2`` (1 for a clean Dirac; ripples elsewhere lower it).
  A centroid over the whole signal would be dominated by small ripples far from the peak.

PyTorch's ``Conv1d(1, 1, 3, stride=2, padding=1)`` computes ``u[t] = w0 x[2t-1] + w1 x[2t] +
w2 x[2t+1]``, exactly the layer of :func:`theory.position.layer` with ``phi = (w0, w1, w2)``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import nn

from aeprobe._modules import get_module
from aeprobe.view import Autoencoder, as_view
from aeprobe.weights import LayerRecord, layer_weights
from theory.position import FILTER, triangular_dirac

__all__ = [
    "FilterCosineReport", "filter_cosine", "PositionEncodingReport", "position_encoding",
    "DiracDecodingReport", "dirac_decoding",
]


@dataclass
class FilterCosineReport:
    """``layers[i]``: layer name; ``cosines[i]``: mean ``|cos|`` of its filters to ``target``;
    ``per_filter[i]``: ``[out, in]`` array of ``|cos|``; ``signed[i]``: the signed cosines;
    ``filters[i]``: ``[out, in, 3]`` weights (oriented as a conv); ``live[i]``: boolean mask of the
    taps used in the cosine (all True without ``input_length``)."""

    layers: list[str]
    cosines: list[float]
    per_filter: list[np.ndarray]
    signed: list[np.ndarray]
    filters: list[np.ndarray]
    target: np.ndarray
    live: list[np.ndarray]

    @property
    def min_cosine(self) -> float:
        return float(min(self.cosines)) if self.cosines else float("nan")


def _part_modules(ae: Autoencoder, part, x) -> list[tuple[str, nn.Module]]:
    """``[(name, module)]`` to search: the encoder (``part="encoder"``), named submodules, or the whole model."""
    model = ae.model
    if part is None:
        return [("", model)]
    if isinstance(part, str) and part == "encoder":
        if ae.can_encode and x is not None:
            return list(ae.encoder_modules(x).items())
        if ae.can_encode:
            try:
                return list(ae.encoder_modules().items())  # known by name (encoder=, or .encoder without encode)
            except ValueError:
                pass  # a method or callable encoder: its modules are found by running it, which needs x
        if isinstance(getattr(model, "encoder", None), nn.Module):
            return [("encoder", model.encoder)]
        if ae.can_encode:
            raise ValueError(f"filter_cosine(part='encoder'): the modules of {type(model).__name__}'s encoder are "
                             "not known by name; pass x= (an example input: encode runs once), part= (submodule "
                             "names), or a view read with encoder=")
        try:
            get_module(model, "encoder")
        except KeyError as e:
            raise type(e)(f"{e}; filter_cosine(part='encoder') needs the encoder: pass part=None to search the "
                          "whole model, part='<name>', or a view aeprobe.autoencoder(model, encoder=...)") from None
    names = [part] if isinstance(part, (str, nn.Module)) else list(part)
    out = []
    for item in names:
        if isinstance(item, nn.Module):
            out.append((next((n for n, m in model.named_modules() if m is item), "<module outside the model>"), item))
        else:
            out.append((item, get_module(model, item)))  # KeyError with close matches for a misspelt name
    return out


def _layer_records(ae: Autoencoder, mods: list[tuple[str, nn.Module]]) -> list[LayerRecord]:
    """Weight records of the layers inside ``mods`` (each once), named and ordered as in the model."""
    inside = {id(sub) for _, m in mods for sub in m.modules()}
    in_model = {id(m) for m in ae.model.modules()}
    recs = [r for r in layer_weights(ae.model) if id(ae.model.get_submodule(r.name)) in inside]
    for name, m in mods:  # modules given to the view that are not part of the model
        if id(m) not in in_model:
            recs += [dataclasses.replace(r, name=f"{name}.{r.name}" if r.name else name) for r in layer_weights(m)]
    return recs


def _live_taps(k: int, stride: int, padding: int, dilation: int, length: int) -> tuple[np.ndarray, int]:
    """Taps of a 1-D conv that touch a real input sample for some output, and the output length."""
    out_len = (length + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    if out_len < 1:
        raise ValueError(f"a conv layer with kernel {k}, stride {stride}, padding {padding} gets an input of "
                         f"length {length}: no output")
    t = np.arange(out_len)[:, None]
    idx = stride * t - padding + dilation * np.arange(k)[None, :]
    return ((idx >= 0) & (idx < length)).any(axis=0), int(out_len)


def filter_cosine(model, target=FILTER, *, part: str | list | None = "encoder", input_length: int | None = None,
                  x=None) -> FilterCosineReport:
    """Cosine (up to scale and sign) of every 1-D size-``len(target)`` conv filter of the encoder to ``target``.

    ``model``: a model or an :func:`aeprobe.autoencoder` view. ``part``: where to look --
    ``"encoder"`` (default): the encoder's modules (the ``.encoder`` submodule, the view's
    ``encoder=``, or, for an encoder that is a method or callable, the modules that run during
    ``encode(x)`` of the example input ``x``); a submodule name or a list of names (an unknown name
    is a ``KeyError`` with close matches); ``None``: the whole model (e.g. a bare encoder network).
    Layers are named as in the model. ``input_length``: length of the signal entering the first
    matched layer; the matched layers are assumed to run one after the other with no other
    resampling (as in :class:`aeprobe.models.PositionEncoder`), and only their live taps are
    compared (module docstring). Raises ``ValueError`` when no matching 1-D conv layer exists.
    """
    ae = as_view(model)
    tgt = np.asarray(target, dtype=float).reshape(-1)
    if tgt.size < 2 or not np.all(np.isfinite(tgt)) or not np.any(tgt):
        raise ValueError(f"target must be a finite non-zero 1-D filter, got {target!r}")
    if input_length is not None and (int(input_length) != input_length or input_length < 1):
        raise ValueError(f"input_length must be a positive integer, got {input_length!r}")
    mods = _part_modules(ae, part, x)
    recs = [r for r in _layer_records(ae, mods) if r.kind == "conv" and r.kernel_size == (tgt.size,)]
    if not recs:
        where = ", ".join(repr(n) if n else "(the whole model)" for n, _ in mods)
        raise ValueError(f"{type(ae.model).__name__} has no 1-D conv layer with kernel size {tgt.size} in {where}")
    names, cos, per, sig, fil, lives = [], [], [], [], [], []
    length = None if input_length is None else int(input_length)
    for r in recs:
        w = r.oriented_weight().astype(float)  # [out, in, k]
        live = np.ones(tgt.size, dtype=bool)
        if length is not None:
            if isinstance(r.padding, str):
                raise ValueError(f"layer {r.name}: padding={r.padding!r}; input_length needs numeric padding")
            live, length = _live_taps(tgt.size, r.stride[0], int(np.atleast_1d(r.padding)[0]), r.dilation[0], length)
        wl, tl = w[..., live], tgt[live]
        norms = np.linalg.norm(wl, axis=-1) * np.linalg.norm(tl)
        dots = wl @ tl
        s = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        names.append(r.name)
        sig.append(s)
        per.append(np.abs(s))
        cos.append(float(np.abs(s).mean()))
        fil.append(w)
        lives.append(live)
    return FilterCosineReport(layers=names, cosines=cos, per_filter=per, signed=sig, filters=fil, target=tgt,
                              live=lives)


def _dirac_batch(positions, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Triangular Diracs ``[N, 1, n]`` made (not cast from data) in the model's dtype."""
    return torch.as_tensor(triangular_dirac(np.asarray(positions, dtype=float), n), dtype=dtype)[:, None, :]


@dataclass
class PositionEncodingReport:
    positions: np.ndarray
    z: np.ndarray
    closed_form: np.ndarray  # 2^L - a
    linear_r2: float
    spearman: float
    scale: float
    max_rel_deviation: float


def position_encoding(model, L: int, positions=None, *, device=None) -> PositionEncodingReport:
    """Encode Diracs of length ``2^L`` and compare the scalar code with ``2^L - a`` (Prop. 3).

    ``positions``: positions ``a`` in ``[0, 2^L - 1]`` (default the integers -> one-hots); the input
    is :func:`theory.position.triangular_dirac` of shape ``[N, 1, 2^L]`` in the model's dtype.
    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view with ``encode`` (refused
    before any work otherwise; a bare encoder network: ``aeprobe.autoencoder(enc, encoder=enc)``).
    """
    ae = as_view(model)
    ae.require("encode", probe="position_encoding")
    if int(L) != L or L < 1:
        raise ValueError(f"L must be an integer >= 1, got {L!r}")
    n = 2 ** int(L)
    a = np.arange(n, dtype=float) if positions is None else np.asarray(positions, dtype=float).reshape(-1)
    if a.size < 3 or np.any(a < 0) or np.any(a > n - 1) or not np.all(np.isfinite(a)):
        raise ValueError(f"positions must be >= 3 finite values in [0, {n - 1}]")
    x = _dirac_batch(a, n, ae.dtype)
    with ae.evaluating(device):
        z = ae.encode(x)
    z = z.detach().cpu().double().numpy().reshape(a.size, -1)
    if z.shape[1] != 1:
        raise ValueError(f"the encoder must output one scalar per signal; got {z.shape[1]} values")
    z = z[:, 0]
    closed = n - a
    c = float(z @ closed / (closed @ closed))
    dev_max = float(np.max(np.abs(z - c * closed)) / np.max(np.abs(c * closed))) if c != 0 else float("inf")
    zc, cc = z - z.mean(), closed - closed.mean()
    den = float(np.linalg.norm(zc) * np.linalg.norm(cc))
    r2 = float((zc @ cc / den) ** 2) if den > 0 else float("nan")
    rho = float(stats.spearmanr(z, closed).statistic) if np.ptp(z) > 0 else float("nan")
    return PositionEncodingReport(positions=a, z=z, closed_form=closed, linear_r2=r2, spearman=rho, scale=c,
                                  max_rel_deviation=dev_max)


@dataclass
class DiracDecodingReport:
    """``outputs[i]``: decoded signal for ``positions[i]``; ``argmax``/``centroid``: estimated positions
    (centroid local to the maximum, see the module docstring); ``argmax_error``/``centroid_error``:
    mean absolute error to ``positions``; ``mse``: mean squared error to the triangular Dirac input;
    ``peak_energy_fraction``: mean share of ``sum y^2`` within ``|t - a| < 2``."""

    positions: np.ndarray
    codes: np.ndarray
    outputs: np.ndarray
    argmax: np.ndarray
    centroid: np.ndarray
    argmax_error: float
    centroid_error: float
    mse: float
    peak_energy_fraction: float


def dirac_decoding(model, positions, n: int, *, codes=None, window: int = 2,
                   device=None) -> DiracDecodingReport:
    """Decode Diracs at ``positions`` and locate the decoded peak (Fig. 10).

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view. Without ``codes``: autoencode
    the triangular Diracs (Eq. 19), ``decode(encode(x))`` -- needs ``encode`` and ``decode``, signals
    ``[N, 1, n]``. With ``codes`` (``[N, ...]``, e.g. the positions themselves, rescaled): decode
    them directly -- needs ``decode`` only (a decoder trained from position to signal, Sect. 5.4:
    ``aeprobe.autoencoder(dec, decoder=dec)``) -- and compare with the Dirac at ``positions``.
    ``codes`` are cast to the model's dtype only when that loses nothing (float32 codes for a
    float32 decoder; float64 numpy codes need a float64 decoder or an explicit cast). A missing
    piece is refused before any work.
    """
    ae = as_view(model)
    if codes is None:
        ae.require("encode", "decode", probe="dirac_decoding")
    else:
        ae.require("decode", probe="dirac_decoding(codes=...)")
    a = np.asarray(positions, dtype=float).reshape(-1)
    if a.size < 1 or np.any(a < 0) or np.any(a > n - 1) or not np.all(np.isfinite(a)):
        raise ValueError(f"positions must be finite values in [0, {n - 1}]")
    if int(window) != window or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if codes is not None:
        z = ae.prepare(codes if isinstance(codes, (torch.Tensor, np.ndarray)) else np.asarray(codes), "codes")
        if z.ndim < 1 or z.shape[0] != a.size:
            raise ValueError(f"got {z.shape[0] if z.ndim else 0} codes for {a.size} positions")
    with ae.evaluating(device):
        if codes is None:
            z = ae.encode(_dirac_batch(a, n, ae.dtype))
        y = ae.decode(z)
    y = y.detach().cpu().double().numpy().reshape(a.size, -1)
    if y.shape[1] != n:
        raise ValueError(f"decoded signals have length {y.shape[1]}, expected {n}")
    t = np.arange(n, dtype=float)
    am = y.argmax(axis=1)
    near = np.abs(t[None, :] - am[:, None]) <= window
    pos = np.where(near, np.clip(y, 0, None), 0.0)
    mass = pos.sum(axis=1)
    cen = np.where(mass > 0, (pos * t).sum(axis=1) / np.where(mass > 0, mass, 1), np.nan)
    energy = (y**2).sum(axis=1)
    peak = np.where(np.abs(t[None, :] - a[:, None]) < 2, y**2, 0.0).sum(axis=1)
    frac = np.divide(peak, energy, out=np.zeros_like(peak), where=energy > 0)
    target = triangular_dirac(a, n)
    return DiracDecodingReport(
        positions=a, codes=z.detach().cpu().double().numpy().reshape(a.size, -1)[:, 0], outputs=y,
        argmax=am.astype(float), centroid=cen, argmax_error=float(np.mean(np.abs(am - a))),
        centroid_error=float(np.nanmean(np.abs(cen - a))), mse=float(np.mean((y - target) ** 2)),
        peak_energy_fraction=float(frac.mean()),
    )
