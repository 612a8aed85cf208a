"""Model architectures: Newson's disk and position nets, Manakov's CAE (shapes, depths, volume rule,
bias switch, homogeneity of bias-free decoders, Prop. 3 with the hand-crafted filter)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from aeprobe import capture
from aeprobe.models import DiskAE, ManakovCAE, PositionAE, PositionDecoder, PositionEncoder
from aeprobe.models.manakov import bottleneck_shape
from theory.homogeneity import check_homogeneity
from theory.position import FILTER, encode as theory_encode


def _convs(m: nn.Module, cls=nn.Conv2d):
    return [c for c in m.modules() if isinstance(c, cls)]


# ----------------------------------------------------------------------------- DiskAE
def test_disk_ae_follows_table1():
    m = DiskAE()
    enc = _convs(m.encoder)
    assert [c.out_channels for c in enc] == [8, 4, 4, 3, 2, 1]  # Table 1: 1 8 4 4 3 2 1
    assert all(c.kernel_size == (3, 3) and c.stride == (2, 2) for c in enc)
    assert [c.in_channels for c in _convs(m.decoder)] == [1, 2, 3, 4, 4, 8]
    slopes = {a.negative_slope for a in m.modules() if isinstance(a, nn.LeakyReLU)}
    assert slopes == {0.2}
    x = torch.rand(3, 1, 64, 64)
    z = m.encode(x)
    assert z.shape == (3, 1) and m(x).shape == x.shape
    assert torch.equal(m(x), m.decode(z))


@pytest.mark.parametrize("size, d", [(16, 1), (32, 2), (64, 3)])
def test_disk_ae_sizes_and_code_sizes(size, d):
    m = DiskAE(size=size, code_size=d)
    x = torch.rand(2, 1, size, size)
    assert m.encode(x).shape == (2, d) and m(x).shape == x.shape


def test_bias_switch():
    assert DiskAE(bias=True).has_bias
    nob = DiskAE(bias=False)
    assert not nob.has_bias and all(c.bias is None for c in _convs(nob))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), sign=st.sampled_from([-1.0, 1.0]), size=st.sampled_from([16, 32]))
def test_bias_free_decoder_is_positively_homogeneous(seed, sign, size):
    """Prop. 1: D(lambda z) = lambda D(z) for every weight draw and code sign."""
    torch.manual_seed(seed)
    m = DiskAE(bias=False, size=size).double()
    z = sign * (torch.rand(4, 1, dtype=torch.float64) + 0.1)
    with torch.no_grad():
        rep = check_homogeneity(lambda v: m.decode(torch.as_tensor(v)).numpy(), z.numpy())
    assert rep.max_rel_error < 1e-10  # float64: round-off only


def test_biased_decoder_is_not_homogeneous():
    torch.manual_seed(0)
    m = DiskAE(bias=True)
    for c in _convs(m):
        nn.init.uniform_(c.bias, 0.1, 0.5)
    with torch.no_grad():
        rep = check_homogeneity(lambda v: m.decode(torch.as_tensor(v, dtype=torch.float32)).numpy(),
                                np.array([[0.5], [1.0]]))
    assert rep.max_rel_error > 0.05


def test_disk_ae_bad_shapes_are_named():
    m = DiskAE()
    with pytest.raises(ValueError, match=r"\[N, 1, 64, 64\]"):
        m(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\[N, 1\]"):
        m.decode(torch.rand(2, 3))
    with pytest.raises(ValueError, match="power of two"):
        DiskAE(size=48)


# ----------------------------------------------------------------------------- position nets
@settings(max_examples=20, deadline=None)
@given(L=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_position_encoder_with_121_filter_is_prop3_encoder(L, seed):
    enc = PositionEncoder(L, bias=False, activation=False).double()
    with torch.no_grad():
        for c in _convs(enc, nn.Conv1d):
            c.weight.copy_(torch.tensor(FILTER, dtype=torch.float64).reshape(1, 1, 3))
    x = np.random.default_rng(seed).random((5, 2 ** L))
    with torch.no_grad():
        z = enc(torch.tensor(x)[:, None]).numpy()[:, 0]
    np.testing.assert_allclose(z, theory_encode(x), rtol=1e-12)


def test_position_decoder_depths_and_length():
    dec = PositionDecoder(6)
    assert [c.in_channels for c in _convs(dec, nn.Conv1d)] == [1, 2, 4, 4, 4, 8]
    assert dec(torch.rand(3, 1)).shape == (3, 1, 64)
    ae = PositionAE(6)
    x = torch.eye(64)[:, None]
    assert ae.encode(x).shape == (64, 1) and ae(x).shape == x.shape
    with pytest.raises(ValueError, match=r"\[N, 1, 64\]"):
        ae(torch.rand(2, 1, 32))


# ----------------------------------------------------------------------------- Manakov CAE
@pytest.mark.parametrize("area, side", [("S", 1), ("M", 2), ("L", 4)])
@pytest.mark.parametrize("comp", [1 / 64, 1 / 16, 1 / 4, 1.0])
def test_manakov_bottleneck_area_and_compression(area, side, comp):
    m = ManakovCAE(in_channels=1, size=32, area=area, compression=comp, depth=5)
    x = torch.rand(2, 1, 32, 32)
    z = m.encode(x)
    assert z.shape[2:] == (side, side)
    assert z[0].numel() == round(comp * 32 * 32)  # code volume = compression x input volume
    assert m(x).shape == x.shape
    assert torch.allclose(m.decode(z.flatten(1)), m(x), atol=1e-6)


def test_manakov_hidden_volume_equals_input_volume():
    """Eq. (3): every hidden layer before the bottleneck (and after it) keeps H x W x C constant."""
    m = ManakovCAE(in_channels=3, size=32, area="M", compression=1 / 16, depth=5)
    names = [f"encoder.{i}" for i in range(4)] + [f"decoder.{i}" for i, mod in enumerate(m.decoder)
                                                   if isinstance(mod, nn.Sequential)]
    with capture(m, names) as acts:
        m(torch.rand(1, 3, 32, 32))
    assert {acts[n][0].numel() for n in names} == {3 * 32 * 32}


def test_manakov_instance_norm_relu_and_residual_blocks():
    m = ManakovCAE(size=32, area="S", compression=1 / 4, depth=5, residual=True)
    n_res = sum(type(mod).__name__ == "ResidualBlock" for mod in m.modules())
    assert n_res == 2 * 4 * 2  # two blocks after each of the 4 non-code conv layers, encoder + decoder
    assert any(isinstance(mod, nn.InstanceNorm2d) for mod in m.encoder.modules())
    assert m(torch.rand(2, 1, 32, 32)).shape == (2, 1, 32, 32)


@pytest.mark.parametrize("kw, msg", [
    (dict(area="XL"), "area"), (dict(size=32, area="L", compression=1 / 1024), "not a positive integer"),
    (dict(size=30), "not divisible"), (dict(area="L", depth=2), "depth"),
])
def test_manakov_impossible_configs_are_explained(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ManakovCAE(**kw)


def test_bottleneck_shape_matches_paper_at_96px():
    # paper: 96x96x3 inputs, 5 layers: S 3x3, M 6x6, L 12x12; 1/64 at L -> 3 channels
    assert bottleneck_shape(3, 96, "S", 1 / 64, 5) == (48, 3, 3)
    assert bottleneck_shape(3, 96, "M", 1 / 64, 5) == (12, 6, 6)
    assert bottleneck_shape(3, 96, "L", 1 / 64, 5) == (3, 12, 12)


@pytest.mark.parametrize("kind", ["nearest", "bilinear", "transposed", "pixel_shuffle"])
def test_every_upsampling_choice_in_newson_and_manakov(kind):
    """Upsampling is a choice everywhere a decoder upsamples; the bias-free disk decoder stays
    positively homogeneous with each kind (all are linear maps)."""
    torch.manual_seed(0)
    m = DiskAE(bias=False, size=32, upsample=kind).double()
    z = torch.rand(3, 1, dtype=torch.float64) + 0.1
    with torch.no_grad():
        rep = check_homogeneity(lambda v: m.decode(torch.as_tensor(v)).numpy(), z.numpy())
        assert m(torch.rand(2, 1, 32, 32, dtype=torch.float64)).shape == (2, 1, 32, 32)
    assert rep.max_rel_error < 1e-10
    c = ManakovCAE(size=32, area="M", compression=1 / 16, upsample=kind)
    assert c(torch.rand(2, 1, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="upsample"):
        DiskAE(upsample="cubic")


@pytest.mark.parametrize("norm, cls", [("instance", nn.InstanceNorm2d), ("batch", nn.BatchNorm2d), ("none", None)])
def test_manakov_norm_choice(norm, cls):
    m = ManakovCAE(size=32, area="L", compression=1 / 4, residual=1, norm=norm)
    kinds = {type(mod) for mod in m.modules() if isinstance(mod, (nn.InstanceNorm2d, nn.BatchNorm2d))}
    assert kinds == ({cls} if cls else set())
    assert m(torch.rand(2, 1, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="norm"):
        ManakovCAE(norm="layer")
