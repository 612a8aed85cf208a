"""Reducers merge: a batch split anywhere, reduced in parts and merged, gives the whole batch's
result to float64 rounding (aeprobe.reducers ``merge``); misuse fails with errors that say why.

Tolerance: float64 rounding of the data. For data of magnitude ``scale = max|x|`` and spread
``spread = max|x - mean|`` the mean's rounding error is a few ``eps * scale`` and the variance's a
few ``eps * scale * spread`` (the deviations from a mean known to ``eps * scale``); measured over
3000 random splits with offsets up to 1e8 the worst errors were 2.0 and 0.9 of those units. The
tests allow 16 units: far below float32 rounding (``2^29`` times larger), so a reducer that
accumulated in float32 or used ``E[x^2] - E[x]^2`` would fail.
"""
from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aeprobe.reducers import Fold, Mean, MinMax, Projection, Reducer, Variance

EPS = torch.finfo(torch.float64).eps


def _data(seed: int, n: int, f: int, offset: float, sd: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return offset + sd * torch.randn(n, f, 3, dtype=torch.float64, generator=g)


def _pieces(x: torch.Tensor, cuts: list[int], sub: int) -> list[list[torch.Tensor]]:
    """Split ``x`` at ``cuts`` (pieces may be empty); each piece fed in batches of ``sub`` rows."""
    n = x.shape[0]
    cuts = sorted(min(c, n) for c in cuts)
    bounds = list(zip([0] + cuts, cuts + [n]))
    return [list(x[a:b].split(sub)) if b > a else [] for a, b in bounds]


def _reduce(make, batches) -> Reducer:
    r = make()
    for b in batches:
        r.update(b)
    return r


def _sum_sq_fold() -> Fold:
    return Fold(lambda s, x: (x**2).sum(0) + (0 if s is None else s), merge=lambda a, b: a + b)


def _projection(x: torch.Tensor):
    d = torch.randn(2, x[0].numel(), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return lambda: Projection(d, keep=True)


# name -> (data -> factory of fresh reducers for that data)
REDUCERS = {
    "mean": lambda x: Mean,
    "mean_dims": lambda x: lambda: Mean(dims=(0, 2)),
    "variance": lambda x: Variance,
    "variance_ddof1_dims": lambda x: lambda: Variance(dims=(0, 2), ddof=1),
    "minmax": lambda x: MinMax,
    "projection": _projection,
    "fold": lambda x: _sum_sq_fold,
}


def _assert_same(name: str, whole: Reducer, merged: Reducer, x: torch.Tensor) -> None:
    scale = x.abs().max().item()
    spread = (x - x.mean(0)).abs().max().item()
    if name.startswith("mean"):
        assert merged.count == whole.count
        torch.testing.assert_close(merged.result(), whole.result(), rtol=0, atol=16 * EPS * scale)
    elif name.startswith("variance"):
        assert merged.count == whole.count
        torch.testing.assert_close(merged.mean, whole.mean, rtol=0, atol=16 * EPS * scale)
        torch.testing.assert_close(merged.result(), whole.result(), rtol=0, atol=16 * EPS * scale * spread)
    elif name == "minmax":  # exact
        assert all(torch.equal(a, b) for a, b in zip(merged.result(), whole.result()))
    elif name == "projection":
        c = whole.coordinates()
        cs, cspread = c.abs().max().item(), (c - c.mean(0)).abs().max().item()
        torch.testing.assert_close(merged.coordinates(), c, rtol=0, atol=16 * EPS * cs)
        torch.testing.assert_close(merged.mean, whole.mean, rtol=0, atol=16 * EPS * cs)
        torch.testing.assert_close(merged.result(), whole.result(), rtol=0, atol=16 * EPS * cs * cspread)
    else:  # fold: a float64 sum of squares
        torch.testing.assert_close(merged.result(), whole.result(), rtol=0, atol=16 * EPS * x.shape[0] * scale**2)


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(1, 40),
    f=st.integers(1, 4),
    offset=st.sampled_from([0.0, 1.0, -1e3, 1e6, 1e8]),
    sd=st.floats(1e-3, 1e3),
    cuts=st.lists(st.integers(0, 40), max_size=5),
    sub=st.integers(1, 7),
    name=st.sampled_from(sorted(REDUCERS)),
)
def test_merging_the_parts_of_a_split_batch_gives_the_whole(seed, n, f, offset, sd, cuts, sub, name):
    """Split anywhere (empty parts included), several updates per part, merged left to right ==
    one reducer fed the whole batch, to float64 rounding; MinMax exactly."""
    x = _data(seed, n, f, offset, sd)
    make = REDUCERS[name](x)
    whole = _reduce(make, [x])
    merged = make()
    for batches in _pieces(x, cuts, sub):
        merged.merge(_reduce(make, batches))
    _assert_same(name, whole, merged, x)


@settings(max_examples=25)
@given(seed=st.integers(0, 2**16), n=st.integers(3, 30), cut1=st.integers(0, 30), cut2=st.integers(0, 30),
       name=st.sampled_from(sorted(REDUCERS)))
def test_merge_is_associative(seed, n, cut1, cut2, name):
    """(a + b) + c == a + (b + c): all_reduce may combine the ranks in any grouping."""
    x = _data(seed, n, 2, 10.0, 2.0)
    make = REDUCERS[name](x)
    a, b, c = (_reduce(make, p) for p in _pieces(x, [cut1, cut2], 4))
    left = copy.deepcopy(a).merge(copy.deepcopy(b)).merge(copy.deepcopy(c))
    right = copy.deepcopy(a).merge(copy.deepcopy(b).merge(copy.deepcopy(c)))
    _assert_same(name, left, right, x)
    _assert_same(name, _reduce(make, [x]), right, x)


def test_merge_copies_the_other_state_and_returns_self():
    x = _data(0, 10, 2, 0.0, 1.0)
    for name, maker in REDUCERS.items():
        make = maker(x)
        a, b = make(), _reduce(make, [x[:4]])
        assert a.merge(b) is a
        before = copy.deepcopy(a)
        b.update(x[4:] * 100)  # the merged reducer must not share b's state
        _assert_same(name, before, a, x[:4])


def test_minmax_merge_is_exact_on_integers_too():
    x = torch.randint(-1000, 1000, (50, 7), generator=torch.Generator().manual_seed(1))
    whole = _reduce(MinMax, [x])
    merged = _reduce(MinMax, [x[:13]]).merge(MinMax()).merge(_reduce(MinMax, [x[13:]]))
    assert merged.min.dtype == torch.int64
    assert torch.equal(merged.min, whole.min) and torch.equal(merged.max, whole.max)


def test_variance_merge_is_stable_where_the_naive_formula_is_not():
    """Data 1e8 + N(0, 1): E[x^2] - E[x]^2 in float64 loses every digit (1e16 vs a variance of 1);
    Chan's merge keeps them."""
    x = _data(3, 400, 1, 1e8, 1.0)
    merged = Variance()
    for part in x.split(37):
        merged.merge(_reduce(Variance, [part]))
    exact = ((x - x.mean(0)) ** 2).mean(0)
    naive = (x**2).mean(0) - x.mean(0) ** 2
    assert (naive - exact).abs().max() > 0.1  # the control: the naive formula really fails here
    torch.testing.assert_close(merged.result(), exact, rtol=1e-6, atol=0)


def test_merge_refuses_what_cannot_be_merged():
    x = torch.randn(6, 4)
    with pytest.raises(TypeError, match="Mean.merge needs another Mean, got Variance"):
        Mean().merge(Variance())
    with pytest.raises(ValueError, match=r"shapes \(4,\) and \(5,\)"):
        _reduce(Mean, [x]).merge(_reduce(Mean, [torch.randn(3, 5)]))
    with pytest.raises(ValueError, match="ddof 0 and 1 differ"):
        Variance().merge(Variance(ddof=1))
    with pytest.raises(ValueError, match="shapes"):
        _reduce(MinMax, [x]).merge(_reduce(MinMax, [torch.randn(3, 5)]))
    with pytest.raises(ValueError, match="dtypes"):
        _reduce(MinMax, [x]).merge(_reduce(MinMax, [x.double()]))
    with pytest.raises(ValueError, match="different directions"):
        Projection(torch.ones(1, 4)).merge(Projection(torch.zeros(1, 4)))
    with pytest.raises(ValueError, match="keep"):
        Projection(torch.ones(1, 4), keep=True).merge(Projection(torch.ones(1, 4)))
    with pytest.raises(TypeError, match="Fold.merge needs the merge function"):
        _reduce(lambda: Fold(lambda s, x: x), [x]).merge(Fold(lambda s, x: x))
    with pytest.raises(TypeError, match="merge"):
        Fold(lambda s, x: x, merge=3)


def test_fold_merge_skips_folds_that_saw_no_data():
    """A fold that saw nothing still holds ``init`` (here None); merge must not feed it to merge_fn."""
    make = lambda: Fold(lambda s, x: [x.sum().item()] + (s or []), merge=lambda a, b: b + a)  # noqa: E731
    a = _reduce(make, [torch.ones(2), torch.ones(3)])
    merged = make().merge(a).merge(make())
    assert merged.result() == [3.0, 2.0] and merged.updates == 2


def test_all_reduce_without_a_process_group_says_how_to_start_one():
    import torch.distributed as dist

    assert not dist.is_initialized()
    for r in (Mean(), Variance(), MinMax(), Projection(torch.ones(1, 3)), _sum_sq_fold()):
        with pytest.raises(RuntimeError, match="init_process_group"):
            r.all_reduce()
