"""aeprobe.regularizers (Newson Sect. 4.4.1): each psi touches exactly what the paper says."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from aeprobe.regularizers import psi1, psi1_value, psi2, psi3, random_neighbours, weight_sq_norm
from aeprobe.train import train


class ConvAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 3, 3, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(3 * 16, 1))
        self.decoder = nn.Sequential(nn.Linear(1, 3 * 16), nn.Unflatten(1, (3, 4, 4)), nn.Upsample(scale_factor=2),
                                     nn.Conv2d(3, 1, 3, 1, 1))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def _model(seed=0):
    torch.manual_seed(seed)
    return ConvAE()


def _x(n=12, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _grads(model, value):
    for p in model.parameters():  # explicit zeros, so "untouched" reads as an exact 0 gradient
        p.grad = torch.zeros_like(p)
    value.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_psi3_gradient_only_on_encoder_weights():
    model = _model()
    g = _grads(model, psi3(0.5)(model, _x()))
    for name, grad in g.items():
        p = dict(model.named_parameters())[name]
        if name.startswith("encoder.") and name.endswith("weight"):
            # d/dw (lam * ||w||^2) = 2 lam w exactly (one multiply-add in float32)
            torch.testing.assert_close(grad, 2 * 0.5 * p.detach(), rtol=1e-6, atol=0)
            assert grad.abs().sum() > 0
        else:  # decoder weights and every bias
            assert torch.count_nonzero(grad) == 0, name


def test_psi2_gradient_on_encoder_and_decoder_weights():
    model = _model()
    g = _grads(model, psi2(0.25)(model, _x()))
    for name, grad in g.items():
        p = dict(model.named_parameters())[name]
        if name.endswith("weight"):
            torch.testing.assert_close(grad, 2 * 0.25 * p.detach(), rtol=1e-6, atol=0)
        else:
            assert torch.count_nonzero(grad) == 0, name
    assert any(n.startswith("decoder.") and g[n].abs().sum() > 0 for n in g)


def test_values_follow_the_formulas():
    model = _model()
    enc = sum((p ** 2).sum() for n, p in model.encoder.named_parameters() if n.endswith("weight"))
    dec = sum((p ** 2).sum() for n, p in model.decoder.named_parameters() if n.endswith("weight"))
    x = _x()
    torch.testing.assert_close(psi3(2.0)(model, x), 2.0 * enc)
    torch.testing.assert_close(psi2(2.0)(model, x), 2.0 * (enc + dec))
    with_bias = sum((p ** 2).sum() for p in model.encoder.parameters())
    torch.testing.assert_close(psi3(1.0, include_bias=True)(model, x), with_bias)
    torch.testing.assert_close(weight_sq_norm(model.encoder, include_bias=True), with_bias)


def test_psi1_matches_the_pairwise_formula():
    """psi1 = mean_i (||x_i - x_j||^2 - ||E(x_i) - E(x_j)||^2)^2 with j = neighbour(i)."""
    model, x = _model(), _x(6)
    nb = torch.tensor([3, 0, 5, 1, 2, 4])
    with torch.no_grad():
        z = model.encoder(x)
        terms = [(((x[i] - x[j]) ** 2).sum() - ((z[i] - z[j]) ** 2).sum()) ** 2 for i, j in enumerate(nb.tolist())]
        expected = torch.stack(terms).mean()
        got = psi1_value(model, x, nb)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)  # float32 reassociation only


def test_psi1_depends_on_codes_and_only_on_the_encoder():
    model, x = _model(), _x()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731 - same neighbours for both evaluations
    before = psi1(1.0, generator=gen())(model, x)
    g = _grads(model, psi1(1.0, generator=gen())(model, x))
    assert all(torch.count_nonzero(v) == 0 for n, v in g.items() if n.startswith("decoder."))
    assert all(v.abs().sum() > 0 for n, v in g.items() if n.startswith("encoder."))
    with torch.no_grad():
        model.encoder[-1].weight.mul_(3.0)  # change the codes, nothing else
    after = psi1(1.0, generator=gen())(model, x)
    assert not torch.isclose(before, after, rtol=1e-3)


@settings(max_examples=25)
@given(b=st.integers(2, 9), c=st.floats(0.0, 3.0), seed=st.integers(0, 2**16))
def test_psi1_for_a_scaled_isometric_encoder(b, c, seed):
    """Universal: E(x) = c Q x with Q orthogonal gives ||E(x)-E(x')||^2 = c^2 ||x-x'||^2, so
    psi1 = (1 - c^2)^2 mean ||x_i - x_j||^4 — in particular 0 for an isometry (c = 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 5, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))

    class Iso(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(5, 5, bias=False).double()
            self.encoder.weight.data = c * q
            self.decoder = nn.Identity()

    nb = random_neighbours(b, generator=g)
    d4 = ((x - x[nb]) ** 2).sum(1) ** 2
    expected = (1 - c * c) ** 2 * d4.mean()
    # float64: relative error ~1e-13; atol covers the c = 1 cancellation (terms ~ ||x||^4 ~ 1e2)
    torch.testing.assert_close(psi1_value(Iso(), x, nb), expected, rtol=1e-9, atol=1e-9)


@settings(max_examples=20)
@given(b=st.integers(2, 40), seed=st.integers(0, 2**16))
def test_random_neighbours_are_other_batch_elements(b, seed):
    nb = random_neighbours(b, generator=torch.Generator().manual_seed(seed))
    assert nb.shape == (b,) and int(nb.min()) >= 0 and int(nb.max()) < b
    assert not bool((nb == torch.arange(b)).any())


def test_psi1_single_sample_batch_is_zero_and_keeps_graph():
    model = _model()
    val = psi1(1.0)(model, _x(1))
    assert float(val.detach()) == 0.0 and val.requires_grad


@pytest.mark.parametrize("factory", [psi1, psi2, psi3])
def test_lam_zero_trains_exactly_like_no_regulariser(factory):
    x = _x(24)
    plain, reg = _model(), _model()
    a = train(plain, x, epochs=2, batch_size=8, progress=False)
    b = train(reg, x, epochs=2, batch_size=8, progress=False, regularizer=factory(0.0))
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), reg.parameters()))
    assert a.history["train_loss"] == b.history["train_loss"] == b.history["data_loss"]


@pytest.mark.parametrize("factory", [psi2, psi3])
def test_weight_penalty_shrinks_encoder_weights_in_training(factory):
    x = _x(24)
    plain, reg = _model(), _model()
    train(plain, x, epochs=3, batch_size=8, lr=1e-2, progress=False)
    train(reg, x, epochs=3, batch_size=8, lr=1e-2, progress=False, regularizer=factory(1.0))
    assert weight_sq_norm(reg.encoder) < weight_sq_norm(plain.encoder)


def test_clear_errors():
    with pytest.raises(AttributeError, match="encoder"):
        psi3(1.0)(nn.Linear(3, 3), torch.zeros(2, 3))
    with pytest.raises(AttributeError, match="decoder"):
        m = nn.Module()
        m.encoder = nn.Linear(3, 3)
        psi2(1.0)(m, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="lam"):
        psi2(-1.0)
    with pytest.raises(ValueError, match="lam"):
        psi1(float("nan"))
    with pytest.raises(ValueError, match="at least 2"):
        random_neighbours(1)


def test_train_encodes_each_batch_once_for_psi1_and_trains_as_if_it_encoded_twice():
    """psi1 needs E(x); ``train`` hands it the codes of the data term's forward (one encoder pass per
    batch instead of two). Only the cost changes: losses and weights equal those of a psi1 that encodes
    on its own (a wrapper without ``code_module``) up to float reassociation. When the forward did not
    encode the batch itself (a denoising loss encodes x + noise), psi1 encodes x as before."""
    x = _x(24)
    calls = []

    def run(reg, **kw):
        model = _model()
        h = model.encoder.register_forward_hook(lambda m, a, o: calls.append(1))
        res = train(model, x, epochs=2, batch_size=8, regularizer=reg, seed=0, progress=False, **kw)
        h.remove()
        assert not model.encoder._forward_hooks  # train's own hook is gone
        n = len(calls)
        calls.clear()
        return model, res, n

    inner = psi1(1e-2)
    shared, res_s, n_s = run(psi1(1e-2))
    own, res_o, n_o = run(lambda model, xb: inner(model, xb))
    assert (n_s, n_o) == (6, 12)  # 3 batches x 2 epochs; twice that when psi1 encodes on its own
    for k in ("data_loss", "reg_loss"):
        assert res_s.history[k] == pytest.approx(res_o.history[k], rel=1e-5)
    for a, b in zip(shared.parameters(), own.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    def noisy(model, xb, yb):
        return ((model(xb + 0.1) - yb) ** 2).mean()

    _, res_n, n_n = run(psi1(1e-2), loss_fn=noisy)
    _, res_m, _ = run(lambda model, xb: inner(model, xb), loss_fn=noisy)
    assert n_n == 12 and res_n.history["reg_loss"] == pytest.approx(res_m.history["reg_loss"], rel=1e-5)


def test_train_removes_its_code_hook_when_training_raises():
    model = _model()

    def boom(epoch, hist, m):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        train(model, _x(16), epochs=3, batch_size=8, regularizer=psi1(1e-2), progress=False, on_epoch_end=boom)
    assert not model.encoder._forward_hooks
