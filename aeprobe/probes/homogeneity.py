r"""Homogeneity probe: is a trained decoder positively homogeneous (Newson et al., Prop. 1)?

Prop. 1: a bias-free decoder made of linear layers and leaky ReLUs satisfies

.. math:: D(\lambda z) = \lambda D(z) \qquad \forall z,\ \forall \lambda > 0,

so with a scalar code it can only scale one fixed image per code sign: ``D(z) = z D(1)`` for
``z > 0`` and ``D(z) = |z| D(-1)`` for ``z < 0``. The paper observes that the trained bias-free
network uses *one* sign only (so its decoder is linear on the data). This probe wraps a torch
decoder for :func:`theory.homogeneity.check_homogeneity` and reports

* ``max_rel_error`` = max over codes ``z_j`` and scales ``l_i`` of
  ``||D(l_i z_j) - l_i D(z_j)|| / ||l_i D(z_j)||`` (0 iff Prop. 1 holds on those codes);
* which code signs the decoder is used with on the data codes (``signs_used``).

A decoder *with* biases need not be homogeneous; its error is typically O(1).

Example::

    z = aeprobe.autoencoder(model).codes(x, flatten=False)   # codes of the data
    rep = decoder_homogeneity(model, data_codes=z)
    rep.max_rel_error, rep.signs_used
    decoder_homogeneity(aeprobe.autoencoder(dec, decoder=dec), data_codes=z)   # a bare decoder module
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from aeprobe.view import as_view
from theory.homogeneity import CONDITIONS, DEFAULT_LAMBDAS, check_homogeneity

__all__ = ["DecoderHomogeneityReport", "decoder_homogeneity", "code_signs"]


@dataclass
class DecoderHomogeneityReport:
    """Result of :func:`decoder_homogeneity`.

    ``rel_errors[i, j]`` is the relative deviation for ``lambdas[i]`` and ``codes[j]``;
    ``max_rel_error_positive``/``_negative`` restrict the maximum to codes of that sign (``None``
    when no tested code has that sign). ``n_positive``/``n_negative``/``n_zero`` count the *data*
    codes by sign (first code unit when the code has several units; all units are counted in
    ``signs_used`` through their sum of signs), ``signs_used`` is ``"positive"``, ``"negative"``,
    ``"both"`` or ``"none"`` (no data codes given).
    """

    max_rel_error: float
    rel_errors: np.ndarray
    lambdas: np.ndarray
    codes: np.ndarray
    max_rel_error_positive: float | None
    max_rel_error_negative: float | None
    n_positive: int
    n_negative: int
    n_zero: int
    signs_used: str
    dtype: str
    statement: str = field(default=CONDITIONS, repr=False)

    def holds(self, tol: float = 1e-5) -> bool:
        """Whether ``max_rel_error <= tol`` (Prop. 1 up to float rounding)."""
        return bool(self.max_rel_error <= tol)


def _as_codes(z, name: str) -> torch.Tensor:
    if isinstance(z, np.ndarray):
        z = torch.from_numpy(np.ascontiguousarray(z))
    if not isinstance(z, torch.Tensor):
        z = torch.as_tensor(z)
    if z.ndim == 0:
        raise ValueError(f"{name} must be a batch of codes [N, ...], got a scalar")
    if z.ndim == 1:
        z = z[:, None]
    if z.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    z = z.detach().cpu()
    if not torch.is_floating_point(z):
        z = z.double()
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or inf")
    return z


def code_signs(data_codes) -> tuple[int, int, int, str]:
    """Count data codes by sign of their sum over units; return ``(n_pos, n_neg, n_zero, signs_used)``."""
    z = _as_codes(data_codes, "data_codes")
    z = z.reshape(z.shape[0], -1)
    s = torch.sign(z.sum(dim=1))
    n_pos, n_neg = int((s > 0).sum()), int((s < 0).sum())
    n_zero = int(z.shape[0] - n_pos - n_neg)
    used = "both" if (n_pos and n_neg) else "positive" if n_pos else "negative" if n_neg else "none"
    return n_pos, n_neg, n_zero, used


def decoder_homogeneity(
    model,
    codes=None,
    *,
    data_codes=None,
    lambdas=None,
    max_codes: int = 64,
    device=None,
    seed: int = 0,
) -> DecoderHomogeneityReport:
    """Check ``D(lambda z) = lambda D(z)`` (Prop. 1) on a torch decoder.

    Parameters
    ----------
    model : an autoencoder or an :func:`aeprobe.autoencoder` view with ``decode`` (refused before
        any work otherwise; a bare decoder module: ``aeprobe.autoencoder(dec, decoder=dec)``).
    codes : codes at which to test (``[N, ...]`` tensor/array; 1-D = scalar codes). Default: the
        data codes (at most ``max_codes`` of them, drawn with ``seed``).
    data_codes : the codes the decoder is used with on the data (e.g. ``ae.codes(x)``); used to
        report the signs and as the default test codes. Their shape fixes the code shape passed to
        the decoder (``codes`` are reshaped to it).
    lambdas : positive scales (default :data:`theory.homogeneity.DEFAULT_LAMBDAS`, 1e-3 .. 1e3).

    The scaled codes are formed in float64 and cast to the model's own dtype before decoding
    (float32 rounding gives relative errors ~1e-7 on an exactly homogeneous decoder); the decoder
    runs in eval mode on ``device`` (mode and device restored afterwards).
    """
    ae = as_view(model)
    ae.require("decode", probe="decoder_homogeneity")
    if codes is None and data_codes is None:
        raise ValueError("give codes= (test codes) and/or data_codes= (the codes the decoder sees on the data)")
    dz = _as_codes(data_codes, "data_codes") if data_codes is not None else None
    if codes is None:
        z = dz
        if z.shape[0] > max_codes:
            g = torch.Generator().manual_seed(seed)
            z = z[torch.randperm(z.shape[0], generator=g)[:max_codes]]
    else:
        z = _as_codes(codes, "codes")
    code_shape = tuple(dz.shape[1:]) if dz is not None else tuple(z.shape[1:])
    if int(np.prod(z.shape[1:])) != int(np.prod(code_shape)):
        raise ValueError(f"codes have {int(np.prod(z.shape[1:]))} units per sample but data codes have shape {code_shape}")
    mdtype = ae.dtype
    znp = z.reshape(z.shape[0], -1).double().numpy()
    lam = DEFAULT_LAMBDAS if lambdas is None else lambdas
    with ae.evaluating(device):

        def run(zn: np.ndarray) -> np.ndarray:
            # the probe's own scaled codes: cast on purpose to the dtype the decoder computes in
            # (decode moves them to the model's device)
            t = torch.as_tensor(zn, dtype=mdtype).reshape(zn.shape[0], *code_shape)
            return ae.decode(t).detach().cpu().double().numpy().reshape(zn.shape[0], -1)

        rep = check_homogeneity(run, znp, lam)
    sgn = np.sign(znp.sum(axis=1))
    pos, neg = sgn > 0, sgn < 0
    if dz is not None:
        n_pos, n_neg, n_zero, used = code_signs(dz)
    else:
        n_pos = n_neg = n_zero = 0
        used = "none"
    return DecoderHomogeneityReport(
        max_rel_error=rep.max_rel_error,
        rel_errors=rep.rel_errors,
        lambdas=rep.lambdas,
        codes=znp,
        max_rel_error_positive=float(rep.rel_errors[:, pos].max()) if pos.any() else None,
        max_rel_error_negative=float(rep.rel_errors[:, neg].max()) if neg.any() else None,
        n_positive=n_pos,
        n_negative=n_neg,
        n_zero=n_zero,
        signs_used=used,
        dtype=str(mdtype).replace("torch.", ""),
    )
