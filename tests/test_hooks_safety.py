"""Safety of aeprobe.hooks: gradients of activations, in-place ops, train/eval modes, early stop,
non-finite values -- each on a model built to expose it (a shared module, an in-place model, a
dropout model), with the model checked unchanged (aeprobe.state.diff) where the block could touch it."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from aeprobe.hooks import StopForward, capture, intervene, output_at, stream
from aeprobe.activation_patching import patching
from aeprobe.state import assert_unchanged, snapshot

X = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))


class AE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2))
        self.decoder = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 6))

    def encode(self, x):
        return self.encoder(x)

    def forward(self, x):
        return self.decoder(self.encoder(x))


@pytest.fixture
def ae():
    torch.manual_seed(0)
    return AE()


def no_warnings():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error")
    return ctx


# ----------------------------------------------------------------------------- gradients
def test_grads_equal_the_autograd_gradient(ae):
    x = X.clone().requires_grad_(True)
    with capture(ae, ["encoder", "encoder.0"], grads=True) as acts:
        loss = ae(x).square().sum()
        loss.backward()
    # reference: the same loss differentiated w.r.t. the code and the first layer's output directly
    z = ae.encoder(X).detach().requires_grad_(True)
    (gz,) = torch.autograd.grad(ae.decoder(z).square().sum(), z)
    h = ae.encoder[0](X).detach().requires_grad_(True)
    (gh,) = torch.autograd.grad(ae.decoder(ae.encoder[2](ae.encoder[1](h))).square().sum(), h)
    torch.testing.assert_close(acts.grads["encoder"], gz, rtol=1e-6, atol=1e-7)  # same ops: float rounding only
    torch.testing.assert_close(acts.grads["encoder.0"], gh, rtol=1e-6, atol=1e-7)
    assert sorted(acts.grads) == ["encoder", "encoder.0"]
    assert acts["encoder"].grad_fn is None  # the captured activation itself stays detached


def test_grads_per_call_of_a_shared_module_and_hooks_removed():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.lin = lin = nn.Linear(3, 3)
    x = torch.randn(4, 3)

    def loss_of(x):
        return lin(torch.tanh(lin(x))).square().sum()

    with capture(model, "lin", calls="all", grads=True, detach=False) as acts:
        loss = loss_of(x)
        loss.backward(retain_graph=True)
    h1 = lin(x).detach().requires_grad_(True)
    (g1,) = torch.autograd.grad(lin(torch.tanh(h1)).square().sum(), h1)
    h2 = lin(torch.tanh(lin(x))).detach()
    torch.testing.assert_close(acts.grads["lin"][0], g1, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(acts.grads["lin"][1], 2 * h2, rtol=1e-6, atol=1e-7)
    # the tensor hooks are removed on exit: a backward after the block records nothing more
    before = [g.clone() for g in acts.grads["lin"]]
    loss.backward()
    assert all(torch.equal(a, b) for a, b in zip(acts.grads["lin"], before))
    assert all(not t._backward_hooks for t in acts["lin"])  # torch's per-tensor hook dicts are empty again


def test_grads_accumulate_over_backwards_and_missing_grads_explain():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(inplace=True), nn.Linear(3, 1))
    x = torch.randn(4, 3)
    with capture(net, "0", grads=True, clone=True) as acts:
        y = net(x).sum()
        y.backward(retain_graph=True)
        first = acts.grads["0"].clone()
        y.backward()
    torch.testing.assert_close(acts.grads["0"], 2 * first)  # summed like .grad
    # the gradient is w.r.t. the module's output before the in-place ReLU overwrote it
    h = net[0](x).detach().requires_grad_(True)
    (ref,) = torch.autograd.grad(net[2](torch.relu(h)).sum(), h)
    torch.testing.assert_close(first, ref)
    with torch.no_grad(), capture(net, "0", grads=True, clone=True) as acts:
        net(x)
    with pytest.raises(KeyError, match="backward"):
        acts.grads["0"]
    with capture(net, "0", clone=True) as acts:
        net(x)
    with pytest.raises(KeyError, match="grads=True"):
        acts.grads["0"]


# ----------------------------------------------------------------------------- in-place safety
def test_inputs_of_an_inplace_module_are_its_true_inputs():
    """Inputs are read in a forward pre-hook: with clone=True they are the values the in-place
    module received (the old forward-hook reading returned them after the op); without clone the
    block warns that the reference was overwritten."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    x = torch.randn(8, 4)
    pre = net[0](x).detach()
    assert (pre < 0).any()
    with capture(net, "1", inputs=True, clone=True) as acts:
        net(x)
    assert torch.equal(acts.inputs["1"], pre)
    assert torch.equal(acts["1"], pre.clamp(min=0))
    with pytest.warns(RuntimeWarning, match=r"input of module '1'.*clone=True"):
        with capture(net, "1", inputs=True) as acts:
            net(x)


def test_capture_without_inplace_ops_does_not_warn(ae):
    ctx = no_warnings()
    try:
        with capture(ae, ["encoder.*", "decoder"], inputs=True, calls="all") as acts:
            ae(X)
            ae(X)
    finally:
        ctx.__exit__(None, None, None)
    assert len(acts["decoder"]) == 2


def test_inference_tensors_are_captured_without_version_checks(ae):
    with torch.inference_mode(), capture(ae, "encoder") as acts:
        y = ae(X)
    assert torch.equal(acts["encoder"], ae.encoder(X).detach()) and y.is_inference()


# ----------------------------------------------------------------------------- mode safety
class DropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 16)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        return self.out(self.drop(self.fc(x)))


def test_train_mode_dropout_is_warned_and_eval_true_fixes_it():
    torch.manual_seed(0)
    net = DropNet().train()
    with pytest.warns(RuntimeWarning, match=r"capture: 'drop' \(Dropout\) is in training mode.*eval=True"):
        with capture(net, "out") as a:
            net(X)
    with pytest.warns(RuntimeWarning, match="'drop'"):
        with capture(net, "out") as b:
            net(X)
    assert not torch.equal(a["out"], b["out"])  # two captures of the same input differ: dropout was active
    before = snapshot(net)
    ctx = no_warnings()
    try:
        with capture(net, "out", eval=True) as c:
            net(X)
        with capture(net, "out", eval=True) as d:
            net(X)
        with capture(net, "fc", eval=False):  # explicit: keep the modes, no warning
            net(X)
    finally:
        ctx.__exit__(None, None, None)
    assert_unchanged(net, before)  # every module back in training mode
    assert torch.equal(c["out"], d["out"])
    with torch.no_grad():
        assert torch.equal(c["out"], net.eval()(X))


@pytest.mark.parametrize("tool", ["stream", "intervene", "patching"])
def test_every_tool_warns_about_train_mode_batchnorm(tool):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()
    with pytest.warns(RuntimeWarning, match=rf"{tool}: '1' \(BatchNorm1d\)"):
        if tool == "stream":
            with stream(net, "0"):
                net(X)
        elif tool == "intervene":
            with intervene(net, {"0": lambda t: t}):
                net(X)
        else:
            patching(net, X, X.flip(0), "0", lambda y: y.sum())
    with pytest.raises(ValueError, match="eval must be"):
        with stream(net, "0", eval="yes"):
            pass


# ----------------------------------------------------------------------------- early stop
class Boom(Exception):
    pass


def test_stop_ends_the_forward_after_the_named_modules(ae):
    calls = []
    ae.decoder.register_forward_pre_hook(lambda m, a: calls.append(1))
    before = snapshot(ae)
    after_forward = []
    with capture(ae, ["encoder.0", "encoder"], stop=True) as acts:
        ae(X)
        after_forward.append(1)  # not reached: the forward ended inside model(x)
    assert acts.stopped and not calls and not after_forward
    assert torch.equal(acts["encoder"], ae.encoder(X).detach())
    assert_unchanged(ae, before)
    with capture(ae, "decoder.2", stop=True) as acts:  # nothing after it: the forward completes
        ae(X)
    assert acts.stopped and len(calls) == 1


def test_stop_with_calls_and_nested_blocks():
    torch.manual_seed(0)
    lin = nn.Linear(3, 3)
    out = nn.Linear(3, 1)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.out = lin, out

        def forward(self, x):
            return self.out(self.lin(self.lin(x)))

    m = M()
    ran = []
    out.register_forward_pre_hook(lambda mod, a: ran.append(1))
    x = torch.randn(2, 3)
    with capture(m, "lin", calls=1, stop=True) as acts:  # stops after the second call
        m(x)
    assert not ran and torch.equal(acts["lin"], lin(lin(x)).detach())
    # an inner block without stop lets the outer stop pass through and still restores itself
    before = snapshot(m)
    with capture(m, "lin", calls=0, stop=True) as outer:
        with capture(m, "out") as inner:
            m(x)
    assert outer.stopped and "out" not in inner and not ran
    assert_unchanged(m, before)
    # an inner stop is swallowed by the inner block only: the outer block runs on
    with capture(m, "out", stop=True) as outer:
        with capture(m, "lin", calls=0, stop=True) as inner:
            m(x)
        assert inner.stopped and not outer.stopped
        m(x)
    assert outer.stopped and len(ran) == 1
    with pytest.raises(ValueError, match="grads"):
        with capture(m, "lin", stop=True, grads=True):
            pass


def test_stop_exception_of_another_block_is_not_swallowed():
    net = nn.Linear(2, 2)
    foreign = StopForward(object())
    with pytest.raises(StopForward):
        with capture(net, "", stop=True):
            raise foreign


def test_output_at_runs_only_up_to_the_module_and_keeps_the_graph(ae):
    ran = []
    ae.decoder.register_forward_pre_hook(lambda m, a: ran.append(1))
    before = snapshot(ae)
    x = X.clone().requires_grad_(True)
    z = output_at(ae, "encoder", x)
    assert not ran and z.grad_fn is not None
    torch.testing.assert_close(z, ae.encoder(x))
    (g,) = torch.autograd.grad(z.sum(), x)
    (g_ref,) = torch.autograd.grad(ae.encoder(x).sum(), x)
    torch.testing.assert_close(g, g_ref)
    assert_unchanged(ae, before)
    ae.spare = nn.Linear(2, 2)  # registered but never called by the forward
    with pytest.raises(KeyError, match="did not run"):
        output_at(ae, "spare", X)
    with pytest.raises(ValueError, match="exactly one"):
        output_at(ae, "encoder.*", X)


# ----------------------------------------------------------------------------- non-finite values
def test_nan_in_a_stream_is_reported():
    data = torch.randn(12, 3)
    data[5, 1] = float("nan")
    data[7, 0] = float("inf")
    ident = nn.Sequential(nn.Identity())
    with pytest.warns(RuntimeWarning, match=r"stream: module '0' produced 2 non-finite value\(s\)"):
        with stream(ident, "0", "mean") as red:
            for xb in data.split(4):
                ident(xb)
    assert torch.isnan(red["0"].result()[1])
    ctx = no_warnings()
    try:
        with stream(ident, "0", "variance") as red:
            ident(data.nan_to_num(0.0, 0.0, 0.0))
            ident(torch.arange(6).reshape(2, 3))  # integer activations: nothing to count
    finally:
        ctx.__exit__(None, None, None)
