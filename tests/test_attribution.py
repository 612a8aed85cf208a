"""Code attribution (aeprobe.attribution): closed forms on linear encoders, completeness, clean-up."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from aeprobe.attribution import attribute_code
from aeprobe.state import assert_unchanged, snapshot


class LinearAE(nn.Module):
    def __init__(self, d: int = 12, k: int = 2):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, k, bias=False))
        self.decoder = nn.Linear(k, d)

    def encode(self, x):
        return self.encoder(x)

    def forward(self, x):
        return self.decoder(self.encode(x))


class SmoothAE(nn.Module):
    """Conv + BatchNorm + tanh encoder with a [2, 3, 3] code (for tuple units)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 4, 3, 2, 1), nn.BatchNorm2d(4), nn.Tanh(), nn.Conv2d(4, 2, 3, 2, 1), nn.Tanh()
        )
        self.decoder = nn.Sequential(nn.Upsample(scale_factor=4), nn.Conv2d(2, 1, 3, padding=1))

    def encode(self, x):
        return self.encoder(x)

    def forward(self, x):
        return self.decoder(self.encode(x))


X = torch.rand(3, 1, 3, 4, generator=torch.Generator().manual_seed(0))
XI = torch.rand(4, 1, 10, 10, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def lin():
    torch.manual_seed(0)
    return LinearAE()


@pytest.fixture
def smooth():
    torch.manual_seed(0)
    m = SmoothAE()
    m(torch.randn(16, 1, 10, 10))  # give BN non-trivial running statistics
    return m.train()


@pytest.mark.parametrize("method", ["integrated_gradients", "layer_conductance", "grad_x_activation"])
@pytest.mark.parametrize("unit", [0, 1, None])
def test_linear_encoder_closed_form(lin, method, unit):
    """For z = W x (no bias) and baseline 0, every method gives A = x * w_u (w_u = row u of W, or
    the sum of rows for unit=None): the gradient is constant, so the path integral is exact and
    Gauss-Legendre weights sum to 1 to ~1e-15; only float32 rounding remains (atol 1e-6)."""
    att = attribute_code(lin, X, unit=unit, method=method, n_steps=8)
    W = lin.encoder[1].weight.detach()
    w = W.sum(0) if unit is None else W[unit]
    expected = X * w.reshape(1, 1, 3, 4)
    assert att.attributions.shape == X.shape
    torch.testing.assert_close(att.attributions, expected, atol=1e-6, rtol=1e-5)
    if method == "grad_x_activation":
        assert att.delta is None and att.layer == "encoder.0" and att.to_layer_input
    else:
        assert att.delta.shape == (3,) and att.delta.abs().max() < 1e-5
    z = lin.encode(X).detach()
    torch.testing.assert_close(att.value, z.sum(1) if unit is None else z[:, unit])


def test_integrated_gradients_completeness_on_nonlinear_encoder(smooth):
    """Completeness (Sundararajan et al., Prop. 1): sum_i A_i = F(x) - F(x') + delta, with captum's
    delta the quadrature error; with 64 Gauss-Legendre steps on a smooth (tanh) encoder the error is
    < 1e-3 of |F(x) - F(x')| (measured ~1e-7; 1e-3 is a loose, float32-safe bound)."""
    att = attribute_code(smooth, XI, unit=(1, 2, 0), n_steps=64)
    total = att.attributions.flatten(1).sum(1)
    torch.testing.assert_close(total, att.value - att.baseline_value + att.delta, atol=1e-5, rtol=1e-5)
    scale = (att.value - att.baseline_value).abs().max()
    assert scale > 1e-3 and att.delta.abs().max() < 1e-3 * scale + 1e-6
    # a tuple unit is the same code unit as its flat index in the [2, 3, 3] code
    same = attribute_code(smooth, XI, unit=1 * 9 + 2 * 3 + 0, n_steps=64)
    torch.testing.assert_close(same.attributions, att.attributions)
    assert att.code_shape == (2, 3, 3)


def test_layer_conductance_at_hidden_layer_is_complete(smooth):
    """Conductances of a hidden layer's units also sum to F(x) - F(x') (up to captum's delta)."""
    att = attribute_code(smooth, XI, unit=None, method="layer_conductance", layer="encoder.2", n_steps=64)
    assert att.attributions.shape == (4, 4, 5, 5) and att.layer == "encoder.2" and not att.to_layer_input
    total = att.attributions.flatten(1).sum(1)
    scale = (att.value - att.baseline_value).abs().max()
    torch.testing.assert_close(total, att.value - att.baseline_value + att.delta, atol=1e-4, rtol=1e-4)
    assert att.delta.abs().max() < 1e-2 * scale + 1e-5


def test_eval_mode_makes_samples_independent(smooth):
    """In eval mode BatchNorm uses running statistics, so sample 0's map does not depend on the
    other samples in the batch (same ops on the same sample: float rounding only)."""
    alone = attribute_code(smooth, XI[:1], unit=0, n_steps=16).attributions
    batch = attribute_code(smooth, XI, unit=0, n_steps=16).attributions[:1]
    torch.testing.assert_close(alone, batch, atol=1e-6, rtol=1e-5)


def test_explicit_encoder_module_or_name(smooth):
    ref = attribute_code(smooth, XI, unit=3, n_steps=8).attributions
    by_name = attribute_code(smooth, XI, unit=3, n_steps=8, encoder="encoder").attributions
    standalone = attribute_code(smooth.encoder, XI, unit=3, n_steps=8, encoder=smooth.encoder).attributions
    detached = attribute_code(nn.Identity(), XI, unit=3, n_steps=8, encoder=smooth.encoder).attributions
    for other in (by_name, standalone, detached):
        torch.testing.assert_close(other, ref)
    assert smooth.training and all(m.training for m in smooth.modules())


def test_model_state_is_restored_including_captum_hooks(smooth):
    smooth.encoder[0].weight.requires_grad_(False)
    user_calls = []
    smooth.encoder[1].register_forward_hook(lambda *a: user_calls.append(1))
    before = snapshot(smooth)
    for method in ("integrated_gradients", "layer_conductance", "grad_x_activation"):
        attribute_code(smooth, XI, unit=0, method=method, layer=None if method == "integrated_gradients" else "encoder.3", n_steps=4)
        assert_unchanged(smooth, before)

    class Fail(Exception):
        pass

    calls = {"n": 0}

    def fail_late(module, args, output):
        calls["n"] += 1
        if calls["n"] > 2:  # fail inside captum, after its own hooks are registered
            raise Fail()

    h = smooth.encoder[4].register_forward_hook(fail_late)
    before = snapshot(smooth)
    with pytest.raises(Fail):
        attribute_code(smooth, XI, unit=0, method="layer_conductance", layer="encoder.2", n_steps=4)
    assert_unchanged(smooth, before)
    h.remove()
    assert user_calls  # the user's hook stayed in place and ran


def test_bad_arguments(lin):
    with pytest.raises(ValueError, match="out of range"):
        attribute_code(lin, X, unit=2)
    with pytest.raises(ValueError, match="not an index"):
        attribute_code(lin, X, unit=(0, 0))
    with pytest.raises(ValueError, match="method"):
        attribute_code(lin, X, method="saliency")
    with pytest.raises(ValueError, match="layer="):
        attribute_code(lin, X, layer="encoder.1")
    with pytest.raises(ValueError, match="NaN"):
        attribute_code(lin, torch.full_like(X, float("nan")))
    with pytest.raises(TypeError, match="floating"):
        attribute_code(lin, X.long())
    with pytest.raises(TypeError, match="encode"):
        attribute_code(nn.Linear(12, 2), X.flatten(1))
    with pytest.raises(KeyError, match="close matches"):
        attribute_code(lin, X, method="layer_conductance", layer="encoder.11")


class SharedLinear(nn.Module):
    """z = A L L x without biases: the layer ``lin`` runs twice per forward (a shared module)."""

    def __init__(self, d: int = 4, k: int = 2):
        super().__init__()
        self.lin = nn.Linear(d, d, bias=False)
        self.head = nn.Linear(d, k, bias=False)

    def encode(self, x):
        return self.head(self.lin(self.lin(x)))

    forward = encode


class SharedParallel(nn.Module):
    """z = head(tanh(lin(x)) + tanh(lin(-x))): two parallel calls, neither alone on every path."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def encode(self, x):
        return self.head(torch.tanh(self.lin(x)) + torch.tanh(self.lin(-x)))

    forward = encode


XS = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))


def test_shared_layer_requires_calls_and_attributes_each_call_exactly():
    """grad x activation at call k of z_u = (A L L x)_u: call 0 (h1 = L x) gives h1 * (A L)[u],
    call 1 (h2 = L h1) gives h2 * A[u] -- constant gradients, float32 rounding only."""
    torch.manual_seed(0)
    m = SharedLinear()
    with pytest.raises(ValueError, match=r"runs 2 times.*calls="):
        attribute_code(m, XS, unit=1, method="grad_x_activation", layer="lin")
    A, L = m.head.weight.detach(), m.lin.weight.detach()
    h1 = XS @ L.T
    h2 = h1 @ L.T
    a0 = attribute_code(m, XS, unit=1, method="grad_x_activation", layer="lin", calls=0).attributions
    a1 = attribute_code(m, XS, unit=1, method="grad_x_activation", layer="lin", calls=1).attributions
    last = attribute_code(m, XS, unit=1, method="grad_x_activation", layer="lin", calls="last").attributions
    torch.testing.assert_close(a0, h1 * (A @ L)[1], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a1, h2 * A[1], atol=1e-6, rtol=1e-5)
    assert torch.equal(last, a1)
    # layer=None: the first leaf is the shared layer; the map is on the input of its *first* call
    first = attribute_code(m, XS, unit=1, method="grad_x_activation")
    assert first.layer == "lin" and first.to_layer_input
    torch.testing.assert_close(first.attributions, XS * (A @ L @ L)[1], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="runs 2 time"):
        attribute_code(m, XS, unit=1, method="grad_x_activation", layer="lin", calls=2)
    with pytest.raises(ValueError, match="calls="):
        attribute_code(m, XS, unit=1, calls=0)  # integrated gradients has no layer


def test_conductance_per_call_of_a_parallel_shared_layer_adds_up():
    """Two parallel calls: each call's conductances sum to its share of F(x) - F(x'), and the two
    shares add up to the whole difference (captum's delta per call is then large, by design)."""
    torch.manual_seed(0)
    m = SharedParallel()
    c0 = attribute_code(m, XS, unit=0, method="layer_conductance", layer="lin", calls=0, n_steps=64)
    c1 = attribute_code(m, XS, unit=0, method="layer_conductance", layer="lin", calls=1, n_steps=64)
    total = c0.attributions.flatten(1).sum(1) + c1.attributions.flatten(1).sum(1)
    diff = c0.value - c0.baseline_value
    # each call is a different quantity (x vs -x into the same weights)
    assert not torch.allclose(c0.attributions, c1.attributions, atol=1e-3)
    # captum's conductance is a first-order (left-point) sum of grad * activation increments: an
    # O(1/n_steps) error, measured ~0.5% of the difference at 64 steps; the bound of the unshared
    # layer test above (1e-2 of the largest difference) applies
    torch.testing.assert_close(total, diff, atol=1e-2 * diff.abs().max().item() + 1e-5, rtol=0)
