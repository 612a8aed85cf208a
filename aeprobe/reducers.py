"""Online reducers: statistics of a stream of activation batches in memory independent of their number.

Used by :func:`aeprobe.hooks.stream` (one reducer per module), and usable on their own::

    red = Variance(dims=0)
    for xb in batches:
        red.update(encoder(xb))
    red.result(), red.mean

Reducers merge: ``a.merge(b)`` folds the state of ``b`` (the same kind of reducer, fed other
data) into ``a``, and ``a.all_reduce()`` merges the states of every rank of an initialised
:mod:`torch.distributed` process group, so that each rank holds the statistic of the whole
dataset -- equal to a single process's result to float64 rounding::

    torch.distributed.init_process_group("gloo")          # e.g. under torchrun; "nccl" on GPUs
    with stream(model, ["encoder"], "variance") as red:
        for xb in aeprobe.shard(batches):                  # this rank's part of the data
            model(xb)
    red["encoder"].all_reduce()                           # every rank: the global mean and variance

Merging is exact up to float64 rounding: means and variances are accumulated in float64 and
variances are merged with Chan et al.'s pairwise formula, min/max are exact. The collectives
run on the CPU for gloo and on each rank's current CUDA device for NCCL (call
``torch.cuda.set_device(local_rank)`` first, as usual); the merged state goes back to the
device the reducer's state was on.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist

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


def _check_same_kind(a: "Reducer", b: Any) -> None:
    if type(b) is not type(a):
        raise TypeError(f"{type(a).__name__}.merge needs another {type(a).__name__}, got {type(b).__name__}")


def _check_shapes(kind: str, what: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{kind}.merge: the {what} have shapes {tuple(a.shape)} and {tuple(b.shape)} -- were the reducers fed "
            "activations of the same module, reduced over the same dims?"
        )


# ---------------------------------------------------------------------------------- collectives
# Tensor collectives for the built-in reducers. Ranks that saw no data still take part in every
# collective (with neutral values); shapes and dtypes are agreed on first, and a disagreement is
# raised on *every* rank (each rank sees the same gathered metadata), so no rank is left waiting.

_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.bool)


def _world_size(group, reducer: "Reducer") -> int:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{type(reducer).__name__}.all_reduce needs an initialised torch.distributed process group: call "
            "torch.distributed.init_process_group(...) first (torchrun sets its environment up), or use "
            "merge() to combine reducers within one process"
        )
    return dist.get_world_size(group)


def _comm_device(group) -> torch.device:
    """CUDA (the current device) for an NCCL group, CPU otherwise (gloo, mpi, ...)."""
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend and "gloo" not in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _tensor_devices(reducer: "Reducer") -> list[torch.device]:
    return [t.device for t in reducer._state_tensors()]


def _agree(local: torch.Tensor | None, group, kind: str, what: str) -> tuple[torch.Size, torch.dtype, list[bool]]:
    """Shape and dtype of a state tensor that every rank holding data agrees on, and which ranks hold data.

    Two small all_gathers (header ``[has, dtype, ndim]``, then the shapes padded to the largest ndim).
    """
    dev = _comm_device(group)
    world = dist.get_world_size(group)
    code = -1 if local is None else _DTYPES.index(local.dtype) if local.dtype in _DTYPES else len(_DTYPES)
    head = torch.tensor([0, -1, -1] if local is None else [1, code, local.dim()], dtype=torch.int64, device=dev)
    heads = [torch.empty_like(head) for _ in range(world)]
    dist.all_gather(heads, head, group=group)
    heads = [h.tolist() for h in heads]
    if any(h[0] == 1 and h[1] == len(_DTYPES) for h in heads):  # raised after the gather: on every rank
        raise TypeError(f"{kind}.all_reduce: {what} of a dtype that is not one of {[str(d) for d in _DTYPES]}")
    nd = max(1, max(h[2] for h in heads))
    shape = torch.full((nd,), -1, dtype=torch.int64, device=dev)
    if local is not None and local.dim():
        shape[: local.dim()] = torch.tensor(local.shape, dtype=torch.int64)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape, group=group)
    has = [h[0] == 1 for h in heads]
    seen = {(h[1], tuple(s.tolist()[: h[2]])) for h, s in zip(heads, shapes) if h[0] == 1}
    if len(seen) > 1:  # every rank sees the same set, so every rank raises
        desc = ", ".join(f"rank {r}: shape {tuple(s.tolist()[: h[2]])} {_DTYPES[h[1]]}"
                         for r, (h, s) in enumerate(zip(heads, shapes)) if h[0] == 1)
        raise ValueError(f"{kind}.all_reduce: the ranks hold {what} of different shapes or dtypes ({desc})")
    if not seen:
        return torch.Size(), torch.float64, has
    (code, shp), = seen
    return torch.Size(shp), _DTYPES[code], has


def _reduce(t: torch.Tensor, op, group) -> torch.Tensor:
    dist.all_reduce(t, op=op, group=group)
    return t


def _sum_count(count: int, group) -> int:
    t = torch.tensor([int(count)], dtype=torch.int64, device=_comm_device(group))
    return int(_reduce(t, dist.ReduceOp.SUM, group).item())


def _home(reducer: "Reducer", group) -> torch.device:
    """Where the merged state lives: the device of the local state, else the group's device."""
    devs = _tensor_devices(reducer)
    return devs[0] if devs else _comm_device(group)


class Reducer:
    """Online reduction of a stream of activation batches; state size independent of the number of batches.

    Subclasses implement ``update(x)`` (``x`` detached, any dtype), ``result()`` and
    ``merge(other)``; ``nbytes()`` reports the memory of the state (tensors only).

    ``merge(other)`` folds the state of ``other`` into this reducer (in place; returns ``self``):
    after ``a.merge(b)``, ``a`` holds what one reducer fed ``a``'s batches and then ``b``'s would
    hold, to float64 rounding. ``all_reduce(group=None)`` does the same across the ranks of a
    :mod:`torch.distributed` process group. The base class's ``all_reduce`` gathers every rank's
    reducer (``all_gather_object``: pickled, fine between the ranks of one job) and merges them in
    rank order, so a subclass that implements ``merge`` is distributed for free; the built-in
    reducers override it with tensor collectives (``all_reduce`` sums, min and max).
    """

    def update(self, x: torch.Tensor) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def result(self):  # pragma: no cover - interface
        raise NotImplementedError

    def merge(self, other: "Reducer") -> "Reducer":
        raise NotImplementedError(f"{type(self).__name__} does not implement merge(other)")

    def all_reduce(self, group=None) -> "Reducer":
        """Merge this reducer's state with the same reducer on every rank of ``group`` (default: the
        whole world); afterwards every rank holds the global state. Collective: every rank of the
        group must call it, in the same order as the other collectives. Returns ``self``."""
        world = _world_size(group, self)
        if world == 1:
            return self
        home = _home(self, group)
        # only the state travels (callables -- a Fold's functions -- stay with each rank)
        state = {k: map_tensors(v, lambda t: t.detach().cpu()) for k, v in vars(self).items() if not callable(v)}
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, state, group=group)
        parts = []
        for st in gathered:
            part = copy.copy(self)
            part.__dict__.update(st)
            parts.append(part)
        merged = parts[0]
        for part in parts[1:]:
            merged.merge(part)
        self.__dict__.update(
            {k: map_tensors(v, lambda t: t.to(home)) for k, v in vars(merged).items() if not callable(v)}
        )
        return self

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

    def merge(self, other: "Mean") -> "Mean":
        """Add ``other``'s sum and count to this one (exact up to float64 rounding); returns ``self``."""
        _check_same_kind(self, other)
        if other.sum is None:
            return self
        if self.sum is None:
            self.sum, self.count = other.sum.clone(), other.count
            return self
        _check_shapes("Mean", "sums", self.sum, other.sum)
        self.sum = self.sum + other.sum.to(self.sum.device)
        self.count += other.count
        return self

    def all_reduce(self, group=None) -> "Mean":
        """Sum the float64 sums and the counts over the ranks of ``group``; every rank then holds the global mean."""
        if _world_size(group, self) == 1:
            return self
        shape, _, has = _agree(self.sum, group, "Mean", "sums")
        count = _sum_count(self.count, group)
        if not any(has):
            return self
        home, dev = _home(self, group), _comm_device(group)
        t = torch.zeros(shape, dtype=torch.float64, device=dev) if self.sum is None else self.sum.to(dev, copy=True)
        self.sum = _reduce(t, dist.ReduceOp.SUM, group).to(home)
        self.count = count
        return self


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
        self._add_moments(nb, mbk.reshape(m2b.shape), m2b)

    def _add_moments(self, nb: int, mb: torch.Tensor, m2b: torch.Tensor) -> None:
        """Chan et al.'s pairwise update of ``(count, mean, M2)`` with a part's ``(nb, mb, m2b)``."""
        if nb == 0:
            return
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

    def merge(self, other: "Variance") -> "Variance":
        """Merge ``other``'s ``(count, mean, M2)`` with Chan et al.'s formula; returns ``self``."""
        _check_same_kind(self, other)
        if self.ddof != other.ddof:
            raise ValueError(f"Variance.merge: ddof {self.ddof} and {other.ddof} differ")
        if other.mean is None:
            return self
        if self.mean is not None:
            _check_shapes("Variance", "means", self.mean, other.mean)
            dev = self.mean.device
        else:
            dev = other.mean.device
        self._add_moments(other.count, other.mean.to(dev, copy=True), other.m2.to(dev, copy=True))
        return self

    def all_reduce(self, group=None) -> "Variance":
        """Merge ``(count, mean, M2)`` over the ranks of ``group``; every rank then holds the global moments.

        The k-part form of Chan et al.'s formula, in two float64 sums: ``n = sum n_r``,
        ``mean = sum n_r mean_r / n``, then ``M2 = sum (M2_r + n_r (mean_r - mean)^2)`` -- deviations
        from the global mean, so no ``E[x^2] - E[x]^2`` cancellation.
        """
        if _world_size(group, self) == 1:
            return self
        shape, _, has = _agree(self.mean, group, "Variance", "means")
        n = _sum_count(self.count, group)
        if not any(has):
            return self
        home, dev = _home(self, group), _comm_device(group)
        if self.mean is None:
            mean_r = torch.zeros(shape, dtype=torch.float64, device=dev)
            m2_r = torch.zeros(shape, dtype=torch.float64, device=dev)
        else:
            mean_r, m2_r = self.mean.to(dev), self.m2.to(dev)
        mean = _reduce(mean_r * float(self.count), dist.ReduceOp.SUM, group) / n
        m2 = _reduce(m2_r + (mean_r - mean) ** 2 * float(self.count), dist.ReduceOp.SUM, group)
        self.count, self.mean, self.m2 = n, mean.to(home), m2.to(home)
        return self


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

    def merge(self, other: "MinMax") -> "MinMax":
        """Elementwise minimum of the minima and maximum of the maxima (exact); returns ``self``."""
        _check_same_kind(self, other)
        if other.min is None:
            return self
        if self.min is None:
            self.min, self.max = other.min.clone(), other.max.clone()
            return self
        _check_shapes("MinMax", "minima", self.min, other.min)
        if self.min.dtype != other.min.dtype:
            raise ValueError(f"MinMax.merge: dtypes {self.min.dtype} and {other.min.dtype} differ")
        self.min = torch.minimum(self.min, other.min.to(self.min.device))
        self.max = torch.maximum(self.max, other.max.to(self.max.device))
        return self

    def all_reduce(self, group=None) -> "MinMax":
        """Elementwise MIN and MAX over the ranks of ``group`` (exact); every rank then holds the global extremes."""
        if _world_size(group, self) == 1:
            return self
        shape, dtype, has = _agree(self.min, group, "MinMax", "minima")
        if not any(has):
            return self
        home, dev = _home(self, group), _comm_device(group)
        if self.min is None:  # neutral elements: +largest for the minimum, -largest for the maximum
            if dtype == torch.bool:
                lo, hi = True, False
            elif dtype.is_floating_point:
                lo, hi = float("inf"), float("-inf")
            else:
                lo, hi = torch.iinfo(dtype).max, torch.iinfo(dtype).min
            mn = torch.full(shape, lo, dtype=dtype, device=dev)
            mx = torch.full(shape, hi, dtype=dtype, device=dev)
        else:
            mn, mx = self.min.to(dev, copy=True), self.max.to(dev, copy=True)
        self.min = _reduce(mn, dist.ReduceOp.MIN, group).to(home)
        self.max = _reduce(mx, dist.ReduceOp.MAX, group).to(home)
        return self


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

    def merge(self, other: "Projection") -> "Projection":
        """Merge the coordinate statistics (and append ``other``'s kept coordinates); returns ``self``."""
        _check_same_kind(self, other)
        if self.directions.shape != other.directions.shape or not torch.equal(
            self.directions.cpu(), other.directions.cpu()
        ):
            raise ValueError("Projection.merge: the two reducers project onto different directions")
        if self.keep != other.keep:
            raise ValueError(f"Projection.merge: keep={self.keep} and keep={other.keep} differ")
        self.stats.merge(other.stats)
        self.kept.extend(c.clone() for c in other.kept)
        return self

    def all_reduce(self, group=None) -> "Projection":
        """Merge the coordinate statistics over the ranks of ``group``; with ``keep=True`` every rank
        then also holds all coordinates, in rank order (an all_gather: memory grows with the data)."""
        if _world_size(group, self) == 1:
            return self
        dev = _comm_device(group)
        # the same directions on every rank: compare the elementwise min and max over the ranks
        d = self.directions.to(dev, torch.float64)
        shape, _, _ = _agree(d, group, "Projection", "directions")
        lo, hi = _reduce(d.clone(), dist.ReduceOp.MIN, group), _reduce(d.clone(), dist.ReduceOp.MAX, group)
        keeps = _sum_count(int(self.keep), group)
        if not torch.equal(lo, hi) or keeps not in (0, dist.get_world_size(group)):
            raise ValueError("Projection.all_reduce: the ranks project onto different directions or differ in keep=")
        self.stats.all_reduce(group)
        if self.keep:
            world = dist.get_world_size(group)
            home = self.directions.device if not self.kept else self.kept[0].device
            mine = self.coordinates().to(dev)
            sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(world)]
            dist.all_gather(sizes, torch.tensor([mine.shape[0]], dtype=torch.int64, device=dev), group=group)
            sizes = [int(n.item()) for n in sizes]
            pad = torch.zeros(max(sizes), mine.shape[1], dtype=torch.float64, device=dev)
            pad[: mine.shape[0]] = mine
            parts = [torch.empty_like(pad) for _ in range(world)]
            dist.all_gather(parts, pad, group=group)
            self.kept = [p[:n].to(home) for p, n in zip(parts, sizes) if n]
        return self

    def _state_tensors(self) -> list[torch.Tensor]:
        return self.stats._state_tensors() + self.kept


class Fold(Reducer):
    """Arbitrary reduction ``state = fn(state, x)`` (``state`` is ``init`` -- default ``None`` -- at first).

    Example -- running sum of squares, mergeable::

        Fold(lambda s, x: (x**2).sum(0) + (0 if s is None else s), merge=lambda a, b: a + b)

    ``merge(a, b) -> state`` combines the states of two folds over consecutive parts of the data
    (it must be associative; it is only called on states that saw data, so it never sees ``init``
    unless ``fn`` returned it). Without it :meth:`merge` and :meth:`all_reduce` raise. Across ranks
    the states travel pickled (``all_gather_object``, tensors moved to CPU), then are merged in
    rank order on every rank.
    """

    def __init__(self, fn: Callable[[Any, torch.Tensor], Any], init: Any = None, *,
                 merge: Callable[[Any, Any], Any] | None = None):
        if not callable(fn):
            raise TypeError(f"Fold needs a callable fn(state, x) -> state, got {type(fn).__name__}")
        if merge is not None and not callable(merge):
            raise TypeError(f"Fold(merge=...) must be a callable merge(state_a, state_b) -> state, got {type(merge).__name__}")
        self.fn = fn
        self.merge_fn = merge
        self.state = copy.deepcopy(init)
        self.updates = 0

    def update(self, x: torch.Tensor) -> None:
        self.state = self.fn(self.state, x.detach())
        self.updates += 1

    def result(self):
        return self.state

    def merge(self, other: "Fold") -> "Fold":
        """``state = merge_fn(state, other.state)``; a fold that saw no data is the identity. Returns ``self``."""
        _check_same_kind(self, other)
        if self.merge_fn is None:
            raise TypeError("Fold.merge needs the merge function: build it as Fold(fn, merge=lambda a, b: ...)")
        if other.updates == 0:
            return self
        if self.updates == 0:
            self.state = copy.deepcopy(other.state)
        else:
            self.state = self.merge_fn(self.state, other.state)
        self.updates += other.updates
        return self

    def all_reduce(self, group=None) -> "Fold":
        if self.merge_fn is None:
            raise TypeError("Fold.all_reduce needs the merge function: build it as Fold(fn, merge=lambda a, b: ...)")
        return super().all_reduce(group)

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
