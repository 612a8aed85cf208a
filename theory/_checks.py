"""Input validation shared by the theory modules (clear ``ValueError`` naming the argument)."""
from __future__ import annotations

import numpy as np


def finite_array(name: str, value, *, ndim_min: int = 0, dtype=float) -> np.ndarray:
    """Return ``value`` as an array, raising ``ValueError`` if it holds NaN or inf."""
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim < ndim_min:
        raise ValueError(f"{name} must have at least {ndim_min} dimension(s); got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return arr


def positive_scalar(name: str, value) -> float:
    """Return ``value`` as a float, raising ``ValueError`` unless it is finite and > 0."""
    try:
        val = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number; got {value!r}") from None
    if not np.isfinite(val) or val <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return val


def power_of_two_exponent(name: str, n: int) -> int:
    """Return ``L`` with ``n == 2**L`` (``L >= 1``), else raise ``ValueError``."""
    if n < 2 or (n & (n - 1)) != 0:
        raise ValueError(f"{name} must be a power of two >= 2 (n = 2^L); got {n}")
    return n.bit_length() - 1
