"""Ablations (aeprobe.ablation): zero / strip biases, zero / replace weights, freeze parts."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from aeprobe.ablation import bias_parameters, freeze, remove_biases, replace_weights, strip_biases, zero_weights
from aeprobe.models import AutoEncoder
from aeprobe.state import assert_unchanged, bits_equal, snapshot


class ConvAE(AutoEncoder):
    """Newson-style conv AE: strided convs + leaky ReLU, 1-D code, upsampling decoder."""

    def __init__(self, bias: bool = True):
        super().__init__()
        a = 0.2
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 4, 3, 2, 1, bias=bias), nn.LeakyReLU(a), nn.Conv2d(4, 4, 3, 2, 1, bias=bias), nn.LeakyReLU(a),
            nn.Flatten(), nn.Linear(4 * 4 * 4, 1, bias=bias),
        )
        self.decoder = nn.Sequential(
            nn.Linear(1, 4 * 4 * 4, bias=bias), nn.LeakyReLU(a), nn.Unflatten(1, (4, 4, 4)),
            nn.ConvTranspose2d(4, 4, 4, 2, 1, bias=bias), nn.LeakyReLU(a), nn.ConvTranspose2d(4, 1, 4, 2, 1, bias=bias),
        )


@pytest.fixture
def ae():
    torch.manual_seed(0)
    m = ConvAE(bias=True)
    with torch.no_grad():  # make biases clearly non-zero so their removal is visible
        for b in bias_parameters(m).values():
            b.uniform_(0.5, 1.0)
    return m


X = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(3))


def test_remove_biases_equals_structurally_bias_free_copy(ae):
    """Zeroing every bias at inference computes exactly the function of the stripped copy (same
    weights, same ops, b = 0 vs. no bias term): equal to float rounding (adding +0.0 is exact, so
    the outputs are in fact bit-equal; assert_close with tight default tolerances is enough)."""
    stripped = strip_biases(ae)
    with remove_biases(ae) as zeroed:
        assert all((b == 0).all() for b in zeroed.values())
        y0 = ae(X).detach()
    torch.testing.assert_close(y0, stripped(X).detach())
    assert not torch.allclose(y0, ae(X).detach())  # the biases did matter


def test_remove_biases_restores_bits_exactly(ae):
    with torch.no_grad():
        ae.encoder[0].bias[0] = -0.0  # the sign of zero must survive the round trip
        ae.encoder[0].bias[1] = float("nan")  # as must a NaN payload (==-based checks fail here)
    before = snapshot(ae)
    with pytest.raises(RuntimeError, match="inside"):
        with remove_biases(ae):
            raise RuntimeError("inside")
    assert_unchanged(ae, before)
    assert ae.encoder[0].bias[0].item() == 0.0 and ae.encoder[0].bias[0].signbit()
    assert bits_equal(ae.encoder[0].bias, before.state["encoder.0.bias"])


def test_remove_biases_of_named_part_only(ae):
    dec_before = {k: v.clone() for k, v in bias_parameters(ae, "encoder").items()}
    with remove_biases(ae, ["decoder"]) as zeroed:
        assert set(zeroed) == {"decoder.0.bias", "decoder.3.bias", "decoder.5.bias"}
        for k, v in bias_parameters(ae, "encoder").items():
            assert torch.equal(v, dec_before[k])
    with pytest.raises(ValueError, match="no bias"):
        with remove_biases(ConvAE(bias=False)):
            pass
    with pytest.raises(KeyError, match="close matches"):
        with remove_biases(ae, ["decodr"]):
            pass


def test_strip_biases_is_structural_and_leaves_original(ae):
    stripped = strip_biases(ae)
    assert not any(n.endswith("bias") for n in stripped.state_dict())
    assert all(m.bias is None for m in stripped.modules() if hasattr(m, "bias"))
    assert len(bias_parameters(ae)) == 6  # original untouched
    for (n, p), (n2, p2) in zip(
        ((n, p) for n, p in ae.named_parameters() if not n.endswith("bias")), stripped.named_parameters()
    ):
        assert n == n2 and torch.equal(p, p2) and p.data_ptr() != p2.data_ptr()
    # retraining: the optimizer never sees a bias, so after a step there still is none
    opt = torch.optim.Adam(stripped.parameters(), lr=1e-2)
    ((stripped(X) - X) ** 2).mean().backward()
    opt.step()
    assert not any(n.endswith("bias") for n in stripped.state_dict())
    partial = strip_biases(ae, ["decoder"])
    assert set(bias_parameters(partial)) == {"encoder.0.bias", "encoder.2.bias", "encoder.5.bias"}


@settings(max_examples=15)
@given(lam=st.floats(0.05, 20.0), seed=st.integers(0, 1000))
def test_bias_free_decoder_is_positively_homogeneous(lam, seed):
    """Newson et al., Proposition 1: a decoder without biases and with leaky-ReLU activations
    satisfies D(lam z) = lam D(z) for lam > 0 (each layer is positively homogeneous). The stripped
    decoder must satisfy it up to float32 rounding (rtol 1e-5: a few ulps per layer over 4 layers);
    the original decoder, with non-zero biases, must violate it."""
    torch.manual_seed(seed)
    model = ConvAE(bias=True)
    with torch.no_grad():
        for b in bias_parameters(model).values():
            b.uniform_(0.5, 1.0)
    dec = strip_biases(model).decoder
    z = torch.randn(4, 1)
    with torch.no_grad():
        torch.testing.assert_close(dec(lam * z), lam * dec(z), rtol=1e-5, atol=1e-6)
        if abs(lam - 1) > 0.05:
            assert not torch.allclose(model.decoder(lam * z), lam * model.decoder(z), rtol=1e-3, atol=1e-3)


def test_strip_biases_rejects_unknown_layers():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return x + (0 if self.bias is None else self.bias)

    model = nn.Sequential(nn.Linear(2, 2), Custom())
    with pytest.raises(TypeError, match="Custom"):
        strip_biases(model)
    stripped = strip_biases(model, allow_unknown=True)
    assert stripped[1].bias is None and model[1].bias is not None
    with pytest.raises(TypeError):
        strip_biases(model, inplace=True)
    assert model[0].bias is not None  # validation happens before any change
    inplace = strip_biases(model, inplace=True, allow_unknown=True)
    assert inplace is model and model[0].bias is None is model[1].bias


def test_zero_weights_leaves_only_the_bias(ae):
    before = snapshot(ae)
    with zero_weights(ae, ["encoder.5"]):
        z = ae.encode(X)
    # encoder.5 is the last Linear: with W = 0 its output is its bias, whatever the input
    torch.testing.assert_close(z.detach(), ae.encoder[5].bias.detach().expand(len(X), 1))
    assert_unchanged(ae, before)
    with pytest.raises(ValueError, match="no 'weight'"):
        with zero_weights(ae, ["encoder.1"]):
            pass


def test_replace_weights_by_module_or_parameter_name(ae):
    opt = torch.optim.SGD(ae.parameters(), lr=0.1)  # holds the Parameter objects
    ids = [id(p) for p in ae.parameters()]
    w = torch.full((1, 64), 0.5, dtype=torch.float64)  # cast to the parameter's dtype
    with replace_weights(ae, {"encoder.5": w, "encoder.5.bias": torch.tensor([-1.0])}) as rep:
        assert set(rep) == {"encoder.5.weight", "encoder.5.bias"}
        z = ae.encode(X).detach()
        with torch.no_grad():
            h = ae.encoder[:5](X)
        torch.testing.assert_close(z, 0.5 * h.sum(1, keepdim=True) - 1.0)
    assert [id(p) for p in ae.parameters()] == ids and opt.param_groups[0]["params"][0] is ae.encoder[0].weight
    with pytest.raises(ValueError, match=r"shape \(2, 64\)"):
        with replace_weights(ae, {"encoder.5": torch.zeros(2, 64)}):
            pass
    with pytest.raises(ValueError, match="NaN"):
        with replace_weights(ae, {"encoder.5": torch.full((1, 64), float("nan"))}):
            pass


def test_freeze_encoder_trains_only_decoder(ae):
    before = {n: p.detach().clone() for n, p in ae.named_parameters()}
    opt = torch.optim.SGD(ae.parameters(), lr=0.1)
    with freeze(ae, "encoder") as frozen:
        assert set(frozen) == {n for n in before if n.startswith("encoder")}
        assert all(not p.requires_grad for p in ae.encoder.parameters())
        assert all(p.requires_grad for p in ae.decoder.parameters())
        opt.zero_grad()
        ((ae(X) - X) ** 2).mean().backward()
        opt.step()
    for n, p in ae.named_parameters():
        assert p.requires_grad
        assert torch.equal(p, before[n]) == n.startswith("encoder"), n
    with pytest.raises(KeyError, match="encoder"):
        with freeze(nn.Sequential(nn.Linear(1, 1)), "encoder"):
            pass


def test_freeze_keeps_batchnorm_statistics_learned_inside_by_default():
    """freeze wraps training: restore_buffers defaults to False, so BN statistics updated in the
    block are kept (and requires_grad=False does not stop them from updating -- documented)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).train()
    rm = net[1].running_mean.clone()
    with freeze(net, "1"):
        net(torch.randn(16, 3) + 3.0)
    assert not torch.equal(rm, net[1].running_mean)
    rm = net[1].running_mean.clone()
    with freeze(net, "1", restore_buffers=True):
        net(torch.randn(16, 3) + 3.0)
    assert torch.equal(rm, net[1].running_mean)
