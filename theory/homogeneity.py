r"""Positive homogeneity of bias-free decoders (Newson et al., Prop. 1).

Prop. 1: a decoder built only from linear maps without bias (convolutions, transposed
convolutions, fully-connected layers, linear up/down-sampling such as nearest or bilinear
resizing, average pooling) and positively homogeneous activations (ReLU, leaky ReLU
``phi_alpha``, Eq. 2) satisfies

.. math:: \forall z,\ \forall \lambda > 0:\quad D(\lambda z) = \lambda D(z).

Consequently, with a scalar code, ``D(z) = z D(1)`` for ``z > 0`` and ``D(z) = |z| D(-1)`` for
``z < 0``: the decoder can only scale one of two fixed images, one per sign of the code.

It **must** hold (up to float rounding) when every layer is bias-free and every non-linearity
is positively homogeneous of degree 1 (ReLU, leaky ReLU, max-pooling). It **need not** hold
with biases, with normalisation layers that use batch statistics or learned shifts
(BatchNorm/InstanceNorm/LayerNorm with affine shift), with saturating or offset activations
(sigmoid, tanh, softplus, ELU, GELU), or with an additive constant anywhere in the graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from theory._checks import finite_array

__all__ = ["CONDITIONS", "HomogeneityReport", "check_homogeneity", "DEFAULT_LAMBDAS"]

CONDITIONS = (
    "D(lambda z) = lambda D(z) for all lambda > 0 must hold (Prop. 1) when the decoder is bias-free and "
    "uses only linear layers and positively homogeneous activations (ReLU, leaky ReLU, max-pool); it need "
    "not hold with biases, affine normalisation, or saturating/offset activations (sigmoid, tanh, ELU, GELU)."
)

DEFAULT_LAMBDAS = np.array([1e-3, 0.01, 0.1, 0.5, 0.9, 1.1, 2.0, 10.0, 100.0, 1e3])


@dataclass
class HomogeneityReport:
    """Result of :func:`check_homogeneity`.

    ``rel_errors[i, j]`` is ``||D(l_i z_j) - l_i D(z_j)|| / ||l_i D(z_j)||`` (Prop. 1 holds iff all are 0).
    """

    max_rel_error: float
    rel_errors: np.ndarray
    lambdas: np.ndarray
    n_codes: int
    statement: str = field(default=CONDITIONS, repr=False)

    def holds(self, tol: float = 1e-5) -> bool:
        """Whether the largest relative deviation is at most ``tol``."""
        return bool(self.max_rel_error <= tol)


def check_homogeneity(
    fn: Callable[[np.ndarray], np.ndarray],
    z,
    lambdas=None,
    *,
    eps: float = 1e-30,
) -> HomogeneityReport:
    r"""Largest relative deviation from ``D(lambda z) = lambda D(z)`` (Prop. 1).

    Parameters
    ----------
    fn : callable mapping a batch of codes ``(N, d)`` to a batch of outputs ``(N, ...)``
        (array-like). Wrap torch modules so they accept and return numpy arrays.
    z : codes, shape ``(N, d)`` (a 1-D array is read as ``N`` scalar codes).
    lambdas : positive scales (default :data:`DEFAULT_LAMBDAS`, 1e-3 .. 1e3).

    The relative error for code ``z_j`` and scale ``l_i`` is
    ``||D(l_i z_j) - l_i D(z_j)||_2 / max(||l_i D(z_j)||_2, eps)``.
    """
    z = finite_array("z", z, ndim_min=1)
    if z.ndim == 1:
        z = z[:, None]
    if z.shape[0] == 0:
        raise ValueError("z must contain at least one code")
    lambdas = DEFAULT_LAMBDAS if lambdas is None else finite_array("lambdas", lambdas, ndim_min=1)
    if np.any(lambdas <= 0):
        raise ValueError("lambdas must all be > 0 (Prop. 1 is about positive scales)")
    base = finite_array("fn(z)", fn(z))
    if base.shape[0] != z.shape[0]:
        raise ValueError(f"fn returned {base.shape[0]} outputs for {z.shape[0]} codes")
    base = base.reshape(z.shape[0], -1)
    errs = np.empty((lambdas.size, z.shape[0]))
    for i, lam in enumerate(lambdas):
        out = finite_array(f"fn({lam} * z)", fn(lam * z)).reshape(z.shape[0], -1)
        expected = lam * base
        num = np.linalg.norm(out - expected, axis=1)
        den = np.maximum(np.linalg.norm(expected, axis=1), eps)
        errs[i] = num / den
    return HomogeneityReport(
        max_rel_error=float(errs.max()), rel_errors=errs, lambdas=np.asarray(lambdas, float), n_codes=z.shape[0]
    )
