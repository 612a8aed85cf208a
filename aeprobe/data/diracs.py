r"""Diracs for the position experiments (Newson et al., Sect. 5).

:func:`one_hots` gives the ``2^L`` one-hot signals of length ``2^L`` (position ``a = 0 .. 2^L-1``),
shaped ``[2^L, 1, 2^L]`` for a 1-D conv net; :func:`triangular_diracs` the continuous
approximation of Eq. (19), ``y_a(t) = max(0, 1 - |t - a|)``, at arbitrary real positions (via
:func:`theory.position.triangular_dirac`). Positions are 0-based, matching
:func:`theory.position.closed_form_weights` (``E(x) = sum_i (2^L - i) x_i``).
"""
from __future__ import annotations

import numpy as np
import torch

from aeprobe.device import resolve_device
from theory.position import triangular_dirac

__all__ = ["one_hots", "triangular_diracs", "random_positions"]


def one_hots(L: int, *, device=None) -> torch.Tensor:
    """The identity: ``x[a, 0, t] = 1`` iff ``t == a``, shape ``[2^L, 1, 2^L]``."""
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or not 1 <= L <= 16:
        raise ValueError(f"L must be an integer in 1..16, got {L!r}")
    n = 2 ** int(L)
    return torch.eye(n, device=resolve_device(device)).unsqueeze(1)


def triangular_diracs(positions, n: int, *, device=None) -> torch.Tensor:
    """Eq. (19) at each position, shape ``[len(positions), 1, n]``; NaN/inf positions are refused."""
    a = positions.detach().cpu().numpy() if isinstance(positions, torch.Tensor) else np.asarray(positions, float)
    a = np.atleast_1d(a).astype(float)
    if a.ndim != 1:
        raise ValueError(f"positions must be 1-D, got shape {a.shape}")
    y = triangular_dirac(a, n)
    return torch.as_tensor(y, dtype=torch.float32, device=resolve_device(device)).unsqueeze(1)


def random_positions(count: int, n: int, *, seed: int = 0) -> np.ndarray:
    """``count`` positions uniform on ``[0, n - 1]`` (continuous Diracs for training)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    return np.random.default_rng(seed).uniform(0.0, n - 1.0, int(count))
