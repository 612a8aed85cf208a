"""Online reducers: statistics of a stream of activation batches in memory independent of their number.

Used by :func:`aeprobe.hooks.stream` (one reducer per module), and usable on their own::

    red = Variance(dims=0)
    for xb in batches:
        red.update(encoder(xb))
    red.result(), red.mean
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch

from aeprobe.utils import map_tensors

__all__ = ["Reducer", "Mean", "Variance", "MinMax", "Projection", "Fold", "make_reducer", "BUILTIN_REDUCERS"]


def _norm_dims(dims, ndim: int) -> tuple[int, ...]:
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = (dims,)
    out = []
    for d in dims:
        if not -ndim <= d < ndim:
            raise ValueError(f"reduction dim {d} out of range for an activation with {ndim} dims")
        out.append(d % ndim)
    return tuple(sorted(set(out)))


class Reducer:
    """Online reduction of a stream of activation batches; state size independent of the number of batches.

    Subclasses implement ``update(x)`` (``x`` detached, any dtype) and ``result()``; ``nbytes()``
    reports the memory of the state (tensors only).
    """

    def update(self, x: torch.Tensor) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def result(self):  # pragma: no cover - interface
        raise NotImplementedError

    def _state_tensors(self) -> list[torch.Tensor]:
        return [v for v in vars(self).values() if isinstance(v, torch.Tensor)]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._state_tensors())


class Mean(Reducer):
    """Running mean over ``dims`` (default ``0``: the batch; ``(0, 2, 3)`` = per conv channel).

    Accumulates the sum in float64 (exact enough for ~1e12 values of float32 data).
    """

    def __init__(self, dims=0):
        self.dims = dims
        self.count = 0
        self.sum: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        dims = _norm_dims(self.dims, x.dim())
        s = x.detach().to(torch.float64).sum(dim=dims)
        n = 1
        for d in dims:
            n *= x.shape[d]
        self.sum = s if self.sum is None else self.sum + s
        self.count += n

    def result(self) -> torch.Tensor:
        if self.sum is None or self.count == 0:
            raise ValueError("Mean: no data was reduced (did the module run inside the block?)")
        return self.sum / self.count


class Variance(Reducer):
    """Running mean and variance (Welford / Chan et al. parallel merge, float64 accumulators).

    Each batch's count ``n_b``, mean ``m_b`` and sum of squared deviations ``M2_b`` are merged into
    the running ``(n, mean, M2)`` with Chan's formula ``M2 += M2_b + delta^2 n n_b / (n + n_b)``,
    which has no catastrophic cancellation (unlike ``E[x^2] - E[x]^2``). ``result()`` returns the
    variance with ``ddof`` (0 = population); ``.mean``, ``.std()`` and ``.count`` are available.
    """

    def __init__(self, dims=0, ddof: int = 0):
        self.dims = dims
        self.ddof = ddof
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        dims = _norm_dims(self.dims, x.dim())
        xb = x.detach().to(torch.float64)
        nb = 1
        for d in dims:
            nb *= x.shape[d]
        if nb == 0:
            return
        mbk = xb.mean(dim=dims, keepdim=True)
        m2b = ((xb - mbk) ** 2).sum(dim=dims)
        mb = mbk.reshape(m2b.shape)
        if self.mean is None:
            self.count, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.count
        delta = mb - self.mean
        tot = n + nb
        self.mean = self.mean + delta * (nb / tot)
        self.m2 = self.m2 + m2b + delta**2 * (n * nb / tot)
        self.count = tot

    def result(self) -> torch.Tensor:
        if self.mean is None:
            raise ValueError("Variance: no data was reduced (did the module run inside the block?)")
        if self.count - self.ddof <= 0:
            raise ValueError(f"Variance: {self.count} values are not enough for ddof={self.ddof}")
        return self.m2 / (self.count - self.ddof)

    def std(self) -> torch.Tensor:
        return self.result().sqrt()


class MinMax(Reducer):
    """Running elementwise minimum and maximum over ``dims``; ``result()`` is ``(min, max)``."""

    def __init__(self, dims=0):
        self.dims = dims
        self.min: torch.Tensor | None = None
        self.max: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        dims = _norm_dims(self.dims, x.dim())
        x = x.detach()
        lo, hi = x.amin(dim=dims), x.amax(dim=dims)
        self.min = lo if self.min is None else torch.minimum(self.min, lo)
        self.max = hi if self.max is None else torch.maximum(self.max, hi)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.min is None:
            raise ValueError("MinMax: no data was reduced (did the module run inside the block?)")
        return self.min, self.max


class Projection(Reducer):
    """Project each sample's flattened activation onto given directions and reduce the coordinates.

    ``directions``: ``[k, D]`` (or ``[D]``) with ``D`` = number of features per sample. The
    coordinates ``c = x.flatten(1) @ directions.T`` (``[N, k]``) are reduced by a
    :class:`Variance` (``.mean``, ``result()`` = variance); with ``keep=True`` they are also kept
    (memory ``k`` floats per sample -- grows with the data, by design, and is off by default).
    """

    def __init__(self, directions: torch.Tensor, *, keep: bool = False, ddof: int = 0):
        d = torch.as_tensor(directions)
        if d.dim() == 1:
            d = d[None]
        if d.dim() != 2:
            raise ValueError(f"directions must be [k, D] or [D], got shape {tuple(d.shape)}")
        if not torch.isfinite(d).all():
            raise ValueError("directions contain NaN or inf")
        self.directions = d
        self.stats = Variance(dims=0, ddof=ddof)
        self.keep = keep
        self.kept: list[torch.Tensor] = []

    def update(self, x: torch.Tensor) -> None:
        flat = x.detach().reshape(x.shape[0], -1)
        if flat.shape[1] != self.directions.shape[1]:
            raise ValueError(
                f"Projection: activation has {flat.shape[1]} features per sample, directions have {self.directions.shape[1]}"
            )
        c = flat.to(torch.float64) @ self.directions.to(device=flat.device, dtype=torch.float64).T
        self.stats.update(c)
        if self.keep:
            self.kept.append(c)

    @property
    def mean(self) -> torch.Tensor | None:
        return self.stats.mean

    def result(self) -> torch.Tensor:
        return self.stats.result()

    def coordinates(self) -> torch.Tensor:
        if not self.keep:
            raise ValueError("Projection(keep=False) does not keep the coordinates; pass keep=True")
        return torch.cat(self.kept) if self.kept else torch.empty(0, self.directions.shape[0], dtype=torch.float64)

    def _state_tensors(self) -> list[torch.Tensor]:
        return self.stats._state_tensors() + self.kept


class Fold(Reducer):
    """Arbitrary reduction ``state = fn(state, x)`` (``state`` is ``init`` -- default ``None`` -- at first).

    Example -- running sum of squares: ``Fold(lambda s, x: (x**2).sum(0) + (0 if s is None else s))``.
    """

    def __init__(self, fn: Callable[[Any, torch.Tensor], Any], init: Any = None):
        if not callable(fn):
            raise TypeError(f"Fold needs a callable fn(state, x) -> state, got {type(fn).__name__}")
        self.fn = fn
        self.state = copy.deepcopy(init)

    def update(self, x: torch.Tensor) -> None:
        self.state = self.fn(self.state, x.detach())

    def result(self):
        return self.state

    def _state_tensors(self) -> list[torch.Tensor]:
        found: list[torch.Tensor] = []
        map_tensors(self.state, lambda t: found.append(t) or t)
        return found


BUILTIN_REDUCERS = {"mean": Mean, "variance": Variance, "var": Variance, "minmax": MinMax}


def make_reducer(spec, name: str) -> Reducer:
    """A fresh reducer for module ``name`` from a spec: a name, a Reducer (copied), a class, a callable or a dict."""
    if isinstance(spec, Mapping):
        if name not in spec:
            raise KeyError(f"no reducer given for module {name!r}; reducer dict has {list(spec)}")
        return make_reducer(spec[name], name)
    if isinstance(spec, Reducer):
        return copy.deepcopy(spec)  # one independent state per module
    if isinstance(spec, str):
        try:
            return BUILTIN_REDUCERS[spec]()
        except KeyError:
            raise ValueError(f"unknown reducer {spec!r}; use one of {sorted(BUILTIN_REDUCERS)} or a Reducer") from None
    if isinstance(spec, type) and issubclass(spec, Reducer):
        return spec()
    if callable(spec):
        return Fold(spec)
    raise TypeError(f"reducer must be a Reducer, a name, a callable fn(state, x) or a dict of them, got {spec!r}")
