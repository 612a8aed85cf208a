r"""Encoding and decoding the position of a Dirac (Newson et al., Sect. 5, Prop. 3).

The hand-crafted encoder applies ``L`` times the filter ``phi = [1, 2, 1]`` (Eq. 13) followed
by subsampling at even positions (stride 2), with zero padding and no bias or non-linearity
(Eq. 14):

.. math:: u^{(\ell)}(t) = u^{(\ell-1)}(2t-1) + 2\,u^{(\ell-1)}(2t) + u^{(\ell-1)}(2t+1).

Prop. 3 / Eq. (15): on ``x`` of length ``n = 2^L`` the whole linear network is

.. math:: E(x) = \sum_{i=0}^{2^L - 1} (2^L - i)\, x_i ,

so a one-hot at position ``a`` is encoded as ``2^L - a`` (the position in inverted order).
Decoding uses the triangular ("continuous") Dirac of Eq. (19).
"""
from __future__ import annotations

import numpy as np

from theory._checks import finite_array, positive_scalar, power_of_two_exponent

__all__ = ["FILTER", "layer", "encode", "closed_form_weights", "triangular_dirac"]

FILTER = np.array([1.0, 2.0, 1.0])
"""The hand-crafted filter ``phi`` of Eq. (13)."""


def _as_signal(x, name: str = "x") -> np.ndarray:
    x = finite_array(name, x, ndim_min=1)
    power_of_two_exponent(f"the last dimension of {name}", x.shape[-1])
    return x


def layer(x) -> np.ndarray:
    r"""One layer of the hand-crafted encoder (Eq. 14 with ``phi = [1, 2, 1]``, stride 2).

    ``u(t) = x(2t-1) + 2 x(2t) + x(2t+1)`` with ``x(-1) = x(n) = 0`` (zero padding).
    Works on the last axis, so ``x`` may be a batch ``(..., n)``; ``n`` must be a power of two.
    Returns an array of shape ``(..., n // 2)``.
    """
    x = _as_signal(x)
    padded = np.concatenate([np.zeros(x.shape[:-1] + (1,)), x, np.zeros(x.shape[:-1] + (1,))], axis=-1)
    # padded[j] = x[j-1]; for u(t) we need x[2t-1], x[2t], x[2t+1] = padded[2t], padded[2t+1], padded[2t+2]
    left = padded[..., 0:-2:2]
    mid = padded[..., 1:-1:2]
    right = padded[..., 2::2]
    return FILTER[0] * left + FILTER[1] * mid + FILTER[2] * right


def encode(x) -> np.ndarray:
    """Apply :func:`layer` ``L = log2(n)`` times: ``x`` of shape ``(..., 2^L)`` -> scalar(s) ``(...)``."""
    x = _as_signal(x)
    while x.shape[-1] > 1:
        x = layer(x)
    return x[..., 0]


def closed_form_weights(L: int) -> np.ndarray:
    """Weights ``w_i = 2^L - i`` (``i = 0 .. 2^L - 1``) with ``encode(x) = w @ x`` (Prop. 3, Eq. 15)."""
    if int(L) != L or L < 1:
        raise ValueError(f"L must be an integer >= 1; got {L!r}")
    n = 2 ** int(L)
    return (n - np.arange(n)).astype(float)


def triangular_dirac(a, n: int) -> np.ndarray:
    r"""Triangular approximation of a Dirac at continuous position ``a`` (Eq. 19).

    ``y_a(t) = 1 - |t - a|`` if ``|t - a| < 1`` else ``0``, sampled at ``t = 0, ..., n - 1``.
    ``a`` may be a scalar (returns ``(n,)``) or an array of positions (returns ``(..., n)``).
    For integer ``a`` this is the one-hot at ``a``; in general it has unit mass split linearly
    between the two nearest samples, so ``sum_t t y_a(t) = a`` for ``0 <= a <= n - 1``.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    positive_scalar("n", n)
    a = finite_array("a", a)
    t = np.arange(int(n), dtype=float)
    return np.clip(1.0 - np.abs(t - a[..., None]), 0.0, None)
