"""Capture, streaming reducers and interventions (aeprobe.hooks) do what they claim."""
from __future__ import annotations

import copy
import gc
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from aeprobe._modules import get_module, leaf_names, resolve_modules
from aeprobe.models import AutoEncoder
from aeprobe.hooks import (
    Fold,
    Inputs,
    Mean,
    MinMax,
    Projection,
    Variance,
    capture,
    intervene,
    set_value,
    stream,
    zero_channels,
)


class TinyAE(AutoEncoder):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 3, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 2))
        self.decoder = nn.Sequential(nn.Linear(2, 3 * 16), nn.Unflatten(1, (3, 4, 4)), nn.ConvTranspose2d(3, 1, 4, 2, 1))


@pytest.fixture
def ae():
    torch.manual_seed(0)
    return TinyAE()


X = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- names
def test_unknown_name_lists_close_matches(ae):
    with pytest.raises(KeyError, match=r"'encodr\.0'.*close matches: 'encoder\.0'"):
        get_module(ae, "encodr.0")
    with pytest.raises(KeyError, match="encoder.3"):
        with capture(ae, ["encoder.0", "encoder.33"]):
            pass
    with pytest.raises(TypeError, match="str"):
        get_module(ae, 3)
    with pytest.raises(ValueError, match="empty"):
        resolve_modules(ae, [])
    assert get_module(ae, "") is ae
    # a submodule object is accepted and mapped back to its name
    assert list(resolve_modules(ae, [ae.encoder[0], "encoder.0"])) == ["encoder.0"]
    assert leaf_names(ae)[:2] == ["encoder.0", "encoder.1"]


# ----------------------------------------------------------------------------- capture
def test_capture_records_exact_outputs(ae):
    with capture(ae, ["encoder", "encoder.0", "decoder"]) as acts:
        y = ae(X)
    with torch.no_grad():
        h = ae.encoder[0](X)
        z = ae.encoder(X)
    # same ops on the same data in the same order: bit-equal, no tolerance needed
    assert torch.equal(acts["encoder.0"], h)
    assert torch.equal(acts["encoder"], z)
    assert torch.equal(acts["decoder"], y.detach())
    assert acts["encoder"].grad_fn is None  # detached by default
    with pytest.raises(KeyError, match="not captured"):
        acts["decoder.0"]


def test_capture_stores_references_not_copies(ae):
    with capture(ae, ["decoder"]) as acts:
        y = ae(X)
    assert acts["decoder"].data_ptr() == y.data_ptr()  # detach() is a view: no copy made
    with capture(ae, ["decoder"], clone=True) as acts:
        y = ae(X)
    assert acts["decoder"].data_ptr() != y.data_ptr()


def test_capture_without_detach_gives_gradients(ae):
    with capture(ae, ["encoder"], detach=False) as acts:
        y = ae(X)
    z = acts["encoder"]
    (g,) = torch.autograd.grad(y.sum(), z)
    # d(sum decoder(z))/dz through the decoder computed independently
    z2 = z.detach().requires_grad_(True)
    (g2,) = torch.autograd.grad(ae.decoder(z2).sum(), z2)
    torch.testing.assert_close(g, g2)


def test_inplace_op_overwrites_reference_unless_clone():
    """A later in-place op overwrites a captured reference: the block warns (naming the module and
    suggesting clone=True); clone=True keeps the captured values and does not warn."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True))
    x = torch.randn(16, 4)
    with pytest.warns(RuntimeWarning, match=r"output of module '0'.*clone=True"):
        with capture(net, ["0"]) as ref, capture(net, ["0"], clone=True) as cop:
            net(x)
    pre = net[0](x).detach()
    assert (pre < 0).any()
    assert torch.equal(cop["0"], pre)  # clone kept the pre-ReLU values
    assert torch.equal(ref["0"], pre.clamp(min=0))  # the reference was overwritten in place (and warned)


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(self.lin(x))


def test_module_called_twice_last_or_all():
    torch.manual_seed(0)
    m = Shared()
    x = torch.randn(2, 3)
    with capture(m, ["lin"]) as last, capture(m, ["lin"], calls="all", inputs=True) as every:
        m(x)
    with torch.no_grad():
        h1 = m.lin(x)
        h2 = m.lin(h1)
    assert torch.equal(last["lin"], h2)
    assert len(every["lin"]) == 2 and torch.equal(every["lin"][0], h1) and torch.equal(every["lin"][1], h2)
    assert torch.equal(every.inputs["lin"][0], x) and torch.equal(every.inputs["lin"][1], h1)
    with pytest.raises(ValueError, match="calls"):
        with capture(m, ["lin"], calls="first"):
            pass


def test_tuple_outputs_and_multi_arg_inputs():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    with capture(lstm, [""], inputs=True) as acts:
        out, (h, c) = lstm(x)
    rec = acts[""]
    assert isinstance(rec, tuple) and torch.equal(rec[0], out.detach()) and torch.equal(rec[1][0], h.detach())
    assert torch.equal(acts.inputs[""], x)

    class Two(nn.Module):
        def forward(self, a, b, scale=1.0):
            return (a + b) * scale

    two = Two()
    a, b = torch.ones(2), torch.zeros(2)
    with capture(two, [""], inputs=True) as acts:
        two(a, b, scale=2.0)
    inp = acts.inputs[""]
    assert isinstance(inp, Inputs) and torch.equal(inp.args[0], a) and inp.kwargs == {"scale": 2.0}


# ----------------------------------------------------------------------------- streaming
def _chunks(data: torch.Tensor, sizes: list[int]):
    start = 0
    for s in sizes:
        yield data[start : start + s]
        start += s


@settings(max_examples=25)
@given(
    sizes=st.lists(st.integers(1, 7), min_size=1, max_size=8),
    offset=st.sampled_from([0.0, 1e4]),
    seed=st.integers(0, 1000),
)
def test_streamed_statistics_equal_full_data(sizes, offset, seed):
    """Welford/Chan merge over any batch split = statistics of the concatenated data.

    float64 accumulators: relative error ~1e-12 even with a large offset (1e4) that would break the
    naive E[x^2]-E[x]^2 in float32; the tolerance 1e-9 leaves 3 orders of margin.
    """
    g = torch.Generator().manual_seed(seed)
    data = (torch.randn(sum(sizes), 3, 2, generator=g) + offset).float()
    ident = nn.Identity()
    with stream(ident, [""], {"": Variance(ddof=1)}) as var, stream(ident, [""], "mean") as mean, stream(
        ident, [""], MinMax()
    ) as mm, stream(ident, [""], Variance(dims=(0, 2))) as per_channel:
        for xb in _chunks(data, sizes):
            ident(xb)
    ref = data.double().numpy()
    if len(data) > 1:
        np.testing.assert_allclose(var[""].result().numpy(), ref.var(axis=0, ddof=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(var[""].mean.numpy(), ref.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(mean[""].result().numpy(), ref.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(per_channel[""].result().numpy(), ref.var(axis=(0, 2)), rtol=1e-9, atol=1e-12)
    lo, hi = mm[""].result()
    assert torch.equal(lo, data.amin(0)) and torch.equal(hi, data.amax(0))
    assert var[""].count == len(data)


def test_projection_and_fold_reducers(ae):
    torch.manual_seed(0)
    dirs = torch.randn(2, 3 * 4 * 4)
    data = torch.randn(12, 1, 8, 8)
    with stream(ae, ["encoder.0"], Projection(dirs, keep=True)) as proj, stream(
        ae, ["encoder.0"], lambda s, x: (0 if s is None else s) + x.square().sum(0)
    ) as fold:
        for xb in data.split(5):
            ae(xb)
    with torch.no_grad():
        h = ae.encoder[0](data).flatten(1).double()
    coords = h @ dirs.double().T
    torch.testing.assert_close(proj["encoder.0"].coordinates(), coords)
    torch.testing.assert_close(proj["encoder.0"].mean, coords.mean(0))
    torch.testing.assert_close(proj["encoder.0"].result(), coords.var(0, unbiased=False))
    assert isinstance(fold["encoder.0"], Fold)
    torch.testing.assert_close(fold["encoder.0"].result(), ae.encoder[0](data).detach().square().sum(0))
    with pytest.raises(ValueError, match="features"):
        with stream(ae, ["encoder.0"], Projection(torch.randn(2, 5))):
            ae(data[:1])


def test_stream_errors(ae):
    with pytest.raises(ValueError, match="unknown reducer"):
        with stream(ae, ["encoder"], "median"):
            pass
    with pytest.raises(ValueError, match="no data"):
        with stream(ae, ["encoder"], "mean") as red:
            pass
        red["encoder"].result()
    lstm = nn.LSTM(2, 2)
    with pytest.raises(TypeError, match="select="):
        with stream(lstm, [""], "mean"):
            lstm(torch.randn(3, 1, 2))
    with stream(lstm, [""], "mean", select=lambda out: out[0]) as red:
        lstm(torch.randn(3, 1, 2))
    assert red[""].result().shape == (1, 2)


def _python_peak_and_state(reducers: dict, n_batches: int) -> tuple[int, int]:
    """(tracemalloc peak of the Python heap while streaming n batches, reducer state bytes).

    ``reducers`` maps the names "0".."3" of a 4-module net to reducers. Minimum over 2 repetitions
    after a warm-up: the peak fluctuates by a few kB from delayed frees.
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh())
    names = sorted(reducers)
    batches = [torch.randn(8, 16) for _ in range(4)]
    with torch.no_grad(), stream(net, names, copy.deepcopy(reducers)):  # warm-up: first-call caches
        for i in range(20):
            net(batches[i % 4])
    peaks = []
    for _ in range(2):
        gc.collect()
        tracemalloc.start()
        try:
            with torch.no_grad(), stream(net, names, reducers) as red:
                for i in range(n_batches):
                    net(batches[i % 4])
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return min(peaks), sum(r.nbytes() for r in red.values())


# Streaming 160 instead of 10 batches: a reducer that kept one tensor per batch would add
# >= 150 * ~180 B ~ 27 kB of Python objects alone (the control test below checks it is caught);
# the interpreter's noise on the peak is < 8 kB (measured), so 12 kB separates flat from growing.
_SLACK = 12 * 1024
_MANY = 160


def test_stream_memory_is_flat_in_number_of_batches():
    """Mean, Variance, MinMax and Projection (one per module): the reducer state bytes are identical
    for 10 and 160 batches and the Python-heap peak does not grow."""
    reducers = {"0": Mean(), "1": Variance(), "2": MinMax(), "3": Projection(torch.randn(3, 32))}
    peak10, state10 = _python_peak_and_state(reducers, 10)
    peak_many, state_many = _python_peak_and_state(reducers, _MANY)
    assert state10 == state_many > 0
    assert peak_many - peak10 < _SLACK, (peak10, peak_many)


def test_memory_check_detects_a_growing_reducer():
    """Control: a reducer that keeps every batch is caught by both measurements."""
    leaky = {"0": Fold(lambda s, x: (s or []) + [x.clone()])}
    peak10, state10 = _python_peak_and_state(leaky, 10)
    peak_many, state_many = _python_peak_and_state(leaky, _MANY)
    assert state_many == _MANY // 10 * state10
    assert peak_many - peak10 > _SLACK, (peak10, peak_many)


# ----------------------------------------------------------------------------- interventions
def test_intervene_sets_code_value(ae):
    with intervene(ae, {"encoder": set_value(0, 2.0)}):
        y = ae(X)
    with torch.no_grad():
        z = ae.encode(X)
        z[:, 0] = 2.0
        ref = ae.decode(z)
    torch.testing.assert_close(y.detach(), ref, rtol=0, atol=0)
    # outside the block the model is back to normal
    with torch.no_grad():
        assert not torch.equal(ae(X), ref)


def test_intervene_zero_channel_input_side_and_inplace(ae):
    with capture(ae, ["encoder.1"]) as acts, intervene(ae, {"encoder.0": zero_channels(1)}):
        ae(X)
    assert (acts["encoder.1"][:, 1] == 0).all() and (acts["encoder.1"][:, 0] != 0).any()

    def halve_inplace(t):
        t.mul_(0.5)  # returns None-equivalent usage: edit in place, keep the object

    with intervene(ae, {"decoder.2": lambda t: halve_inplace(t)}):
        y = ae(X).detach()
    with torch.no_grad():
        torch.testing.assert_close(y, ae(X) * 0.5)

    with intervene(ae, {"decoder": lambda z: torch.zeros_like(z)}, on="input"):
        y0 = ae(X).detach()
    with torch.no_grad():
        ref = ae.decode(torch.zeros(5, 2))
    assert torch.equal(y0, ref)


def test_intervene_keeps_gradients_and_validates(ae):
    with intervene(ae, {"encoder": lambda z: 3.0 * z}):
        x = X.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(ae(x).sum(), x)
    x2 = X.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(ae.decode(3.0 * ae.encode(x2)).sum(), x2)
    torch.testing.assert_close(g, g2)
    with pytest.raises(TypeError, match="callable"):
        with intervene(ae, {"encoder": 3.0}):
            pass
    with pytest.raises(ValueError, match="on must be"):
        with intervene(ae, {"encoder": lambda z: z}, on="weights"):
            pass
    with pytest.raises(KeyError, match="close matches"):
        with intervene(ae, {"encoderr": lambda z: z}):
            pass


def test_restore_buffers_warns_when_training_inside_block():
    """Buffers are restored by default; training inside the block is flagged with a warning."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.warns(RuntimeWarning, match="restore_buffers=False"):
        with capture(net, ["0"], eval=False):
            net(torch.randn(8, 3)).sum().backward()
            opt.step()
    rm = net[1].running_mean.clone()
    with capture(net, ["0"], restore_buffers=False, eval=False):
        net(torch.randn(8, 3) + 5)
    assert not torch.equal(rm, net[1].running_mean)


def test_backward_after_capture_block_through_batchnorm_in_eval():
    """Restoring unchanged buffers must not write them: a write bumps their version counter and a
    backward() after the block through a graph built inside it would fail."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1)).eval()
    with capture(net, ["1"], detach=False) as acts:
        out = net(torch.randn(8, 4)).sum()
    out.backward()
    assert acts["1"].grad_fn is not None and net[0].weight.grad is not None
