"""aeprobe.models.upsample and aeprobe.models.conv: every upsampling kind scales by exactly
``scale``, ICNR makes pixel shuffle equal to conv-then-nearest, ConvAE follows the AE contract."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from aeprobe.models.conv import ConvAE
from aeprobe.models.upsample import UPSAMPLE_KINDS, make_upsample, transposed_padding


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch perf note, harmless
@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(UPSAMPLE_KINDS), scale=st.integers(2, 3), k=st.integers(1, 5),
       h=st.integers(1, 6), w=st.integers(1, 6), cin=st.integers(1, 3), cout=st.integers(1, 3))
def test_every_kind_upsamples_by_exactly_scale(kind, scale, k, h, w, cin, cout):
    m = make_upsample(kind, cin, cout, scale, k)
    assert m.kind == kind and m.scale == scale and m.kernel_size == k
    y = m(torch.randn(2, cin, h, w))
    assert y.shape == (2, cout, scale * h, scale * w)


def test_transposed_kernel_and_padding_arithmetic():
    # (H - 1) s - 2p + k + op = s H for the common cases
    assert transposed_padding(3, 2) == (1, 1)
    assert transposed_padding(4, 2) == (1, 0)
    assert transposed_padding(2, 2) == (0, 0)
    conv = make_upsample("transposed", 1, 1, 2, 3)[0]
    assert isinstance(conv, torch.nn.ConvTranspose2d)
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2)
    with pytest.raises(ValueError, match="cannot upsample"):
        transposed_padding(2, 1)


def test_resize_kinds_are_resize_then_conv():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 4)
    for mode in ("nearest", "bilinear"):
        m = make_upsample(mode, 3, 2, 2, 3)
        conv = m[1]
        kw = {"align_corners": False} if mode == "bilinear" else {}
        ref = conv(F.interpolate(x, scale_factor=2, mode=mode, **kw))
        torch.testing.assert_close(m(x), ref)


def test_pixel_shuffle_icnr_equals_nearest_upsampling_of_one_conv():
    """ICNR: all s^2 sub-pixel channels of an output channel share a kernel, so at init
    PixelShuffle(conv(x)) = nearest_upsample(conv_sub(x)) exactly (no checkerboard at init)."""
    torch.manual_seed(1)
    s = 2
    m = make_upsample("pixel_shuffle", 3, 4, s, 3)
    conv = m[0]
    assert conv.out_channels == 4 * s * s
    sub = torch.nn.Conv2d(3, 4, 3, padding="same")
    with torch.no_grad():
        sub.weight.copy_(conv.weight[:: s * s])
        sub.bias.copy_(conv.bias[:: s * s])
    x = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(m(x), F.interpolate(sub(x), scale_factor=s, mode="nearest"))
    # without ICNR the sub-pixel kernels differ (default Kaiming-uniform init)
    m2 = make_upsample("pixel_shuffle", 3, 4, s, 3, icnr=False)
    assert not torch.equal(m2[0].weight[0], m2[0].weight[1])


def test_unknown_kind_names_the_choices():
    with pytest.raises(ValueError, match="did you mean.*pixel_shuffle"):
        make_upsample("pixelshuffle", 1, 1)
    with pytest.raises(ValueError, match="in_ch"):
        make_upsample("nearest", 0, 1)


@pytest.mark.parametrize("upsample", UPSAMPLE_KINDS)
def test_conv_ae_contract_any_divisible_size(upsample):
    torch.manual_seed(2)
    m = ConvAE(in_channels=1, channels=(4, 8), latent_channels=3, upsample=upsample)
    assert m.factor == 4
    for size in (8, 12, 16):
        x = torch.rand(2, 1, size, size)
        z = m.encode(x)
        assert z.shape == (2, *m.code_shape(size))
        y = m.decode(z)
        assert y.shape == x.shape and bool(((y >= 0) & (y <= 1)).all())
        assert torch.equal(m(x), y)
    # the last decoder layer that has weights is the upsampler producing the pixels
    assert m.decoder[-2].kind == upsample and m.decoder[-1].__class__.__name__ == "Sigmoid"


def test_conv_ae_rejects_bad_shapes():
    m = ConvAE(channels=(4, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        m.encode(torch.rand(1, 1, 10, 10))
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        m.encode(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="codes"):
        m.decode(torch.rand(1, 2, 2, 2))
    with pytest.raises(ValueError, match="upsample"):
        ConvAE(upsample="deconv")
