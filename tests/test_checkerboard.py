"""aeprobe.probes.checkerboard on constructed filters with known answers, and on trained
ConvAEs: transposed convolution (kernel 3, stride 2) vs resize + convolution."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aeprobe.data import digits
from aeprobe.models.conv import ConvAE
from aeprobe.models.upsample import make_upsample
from aeprobe.probes.checkerboard import (alias_energy, alias_stats, checkerboard_probe, constant_codes,
                                         random_codes)
from aeprobe.train import train
from aeprobe.view import autoencoder


def _ones_upsampler(kind: str, k: int) -> torch.nn.Module:
    m = make_upsample(kind, 1, 1, 2, k, bias=False)
    for p in m.parameters():
        torch.nn.init.ones_(p)
    return m


def test_energies_match_numpy_fft():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((3, 2, 6, 10))
    e = alias_energy(torch.from_numpy(y))
    p = np.abs(np.fft.fft2(y)) ** 2
    nyq = p[..., 3, 0] + p[..., 0, 5] + p[..., 3, 5]
    np.testing.assert_allclose(e["nyquist"], nyq, rtol=1e-10)
    np.testing.assert_allclose(e["checker"], p[..., 3, 5], rtol=1e-10)
    np.testing.assert_allclose(e["ac"], p.sum((-2, -1)) - p[..., 0, 0], rtol=1e-10)


def test_pure_patterns_have_known_fractions():
    r, c = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    checker = torch.from_numpy(0.5 + 0.1 * (-1.0) ** (r + c))
    s = alias_stats(checker)
    assert s.nyquist_fraction == pytest.approx(1.0, abs=1e-12) and s.checker_fraction == pytest.approx(1.0, abs=1e-12)
    assert s.alias_rms == pytest.approx(0.1, rel=1e-12)  # the period-2 component is +-0.1
    stripes = torch.from_numpy(0.3 * (-1.0) ** c)
    s = alias_stats(stripes)
    assert s.nyquist_fraction == pytest.approx(1.0, abs=1e-12) and s.checker_fraction == pytest.approx(0.0, abs=1e-12)
    smooth = torch.from_numpy(np.cos(2 * np.pi * r / 8) + np.sin(2 * np.pi * c / 8))  # one bin each, not Nyquist
    assert alias_stats(smooth).nyquist_fraction == pytest.approx(0.0, abs=1e-12)
    assert alias_stats(torch.full((4, 4), 0.7)).nyquist_fraction == 0.0  # constant: no structure


@settings(max_examples=12, deadline=None)
@given(h=st.integers(2, 12))
def test_transposed_k3_s2_all_ones_on_constant_input_closed_form(h):
    """ConvTranspose2d(k=3, s=2, p=1, op=1), all-ones kernel, constant ones input of size h x h.

    Output = a (x) a with a = [1, 2, 1, 2, ..., 1, 2, 1, 1] (length n = 2h: even outputs get
    one kernel tap, odd ones two, the last odd one loses its tap to the border). Hence
    A(0) = sum a = 3h - 1, A(pi) = sum (-1)^i a_i = 1 - h, sum a^2 = 5h - 3 and
    E_nyq = 2 A(pi)^2 A(0)^2 + A(pi)^4, E_ac = (n sum a^2)^2 - A(0)^4."""
    m = _ones_upsampler("transposed", 3)
    y = m(torch.ones(1, 1, h, h)).detach()
    a = np.array([1.0 if i % 2 == 0 else 2.0 for i in range(2 * h)])
    a[-1] = 1.0
    np.testing.assert_array_equal(y[0, 0].numpy(), np.outer(a, a))
    n = 2 * h
    a0, api, s2 = 3 * h - 1, 1 - h, 5 * h - 3
    e_nyq = 2 * api**2 * a0**2 + api**4
    e_ac = (n * s2) ** 2 - a0**4
    s = alias_stats(y)
    assert s.nyquist_fraction == pytest.approx(e_nyq / e_ac, rel=1e-12)  # float64 analysis of exact integers
    assert s.checker_fraction == pytest.approx(api**4 / e_ac, rel=1e-12)
    # away from the border the output is the 2x2 tile [[1, 2], [2, 4]] repeated: all of its
    # structure is period-2; tile DFT gives |Y(pi,pi)|^2 / E_nyq = 1 / (9 + 9 + 1)
    c = alias_stats(y, crop=1)
    assert c.nyquist_fraction == pytest.approx(1.0, rel=1e-12)
    assert c.checker_fraction == pytest.approx(1 / 19, rel=1e-12)


def test_divisible_kernel_and_resize_conv_have_no_alias_on_constant_input():
    x = torch.ones(1, 1, 6, 6)
    # k=4, s=2 (divisible): rows [1, 2, 2, ..., 2, 1] are symmetric, so every Nyquist bin cancels
    y4 = _ones_upsampler("transposed", 4)(x).detach()
    assert alias_stats(y4).alias_rms == 0.0
    # resize + conv with a symmetric kernel: symmetric rows again -> exactly 0 even with borders
    for kind in ("nearest", "bilinear"):
        assert alias_stats(_ones_upsampler(kind, 3)(x).detach()).alias_rms == pytest.approx(0.0, abs=1e-12)
    # ICNR pixel shuffle = nearest upsampling of a conv output: 2x2-block-constant images have
    # zero energy at all three Nyquist bins, whatever the conv did at the borders
    torch.manual_seed(0)
    ps = make_upsample("pixel_shuffle", 1, 1, 2, 3)
    assert alias_stats(ps(torch.rand(3, 1, 5, 5)).detach()).alias_rms == pytest.approx(0.0, abs=1e-7)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), v=st.floats(-2.0, 2.0).filter(lambda t: abs(t) > 0.1))
def test_random_kernels_on_constant_input_transposed_is_periodic_resize_is_flat(seed, v):
    """Interior (crop = kernel reach) of the response to a constant input: resize + conv is
    constant for any kernel; a k=3, s=2 transposed conv is a 2x2 tile (fraction 1) unless its
    polyphase sums coincide, which random Gaussian kernels never do."""
    torch.manual_seed(seed)
    x = torch.full((1, 2, 6, 6), v)
    for kind in ("nearest", "bilinear"):
        m = make_upsample(kind, 2, 3, 2, 3)
        s = alias_stats(m(x).detach(), crop=2)
        assert s.alias_rms < 1e-6 * (1 + abs(v))  # float32 rounding only
        assert s.nyquist_fraction == 0.0  # constant up to rounding -> reported as no structure
    t = make_upsample("transposed", 2, 3, 2, 3)
    s = alias_stats(t(x).detach(), crop=2)
    assert s.nyquist_fraction == pytest.approx(1.0, abs=1e-6)  # float32 rounding of a pure tile


def test_code_generators_shapes_and_constancy():
    g = torch.Generator().manual_seed(0)
    zd = torch.randn(50, 3, 4, 4, generator=g) * torch.tensor([1.0, 2.0, 3.0])[:, None, None] + 5
    zc = constant_codes(6, (3, 8, 8), data_codes=zd)
    assert zc.shape == (6, 3, 8, 8)
    assert torch.equal(zc, zc[..., :1, :1].expand_as(zc))  # constant over space per channel
    zr = random_codes(400, (3, 8, 8), data_codes=zd)
    # the data codes' per-channel moments (sd 1, 2, 3), pooled over positions, on a larger grid;
    # 25600 draws per channel: se of the mean <= 3/160 ~ 0.02 (0.1 = 5 se), relative se of the
    # sd ~ 0.44% (5% > 10 se)
    torch.testing.assert_close(zr.mean((0, 2, 3)), zd.mean((0, 2, 3)), atol=0.1, rtol=0)
    torch.testing.assert_close(zr.transpose(0, 1).reshape(3, -1).std(1), zd.transpose(0, 1).reshape(3, -1).std(1),
                               rtol=0.05, atol=0)
    flat = constant_codes(4, (7,))
    assert torch.equal(flat, flat[:, :1].expand(4, 7))
    with pytest.raises(ValueError, match="channels"):
        random_codes(2, (2, 4, 4), data_codes=zd)


def test_probe_runs_on_a_dense_decoder_and_restores_mode():
    from aeprobe.models.zoo import build

    m = build("vanilla", (1, 8, 8), 5).train()
    rep = checkerboard_probe(m, code_shape=(5,), n=8)
    assert m.training  # eval inside, restored after
    assert 0.0 <= rep.constant.nyquist_fraction <= 1.0 and 0.0 <= rep.random.nyquist_fraction <= 1.0
    assert rep.random.height == 8 and rep.random.n_images == 8
    with pytest.raises(ValueError, match="code_shape"):
        checkerboard_probe(m)


def test_trained_transposed_k3_scores_worse_than_resize_conv():
    """Two ConvAEs trained identically on digits (16x16), differing only in the upsampler.

    Codes are enlarged 4x in space (16x16 -> 64x64 outputs) and 12 border pixels are cropped, so
    the statistics describe the interior. Constant codes: resize + conv gives a constant interior
    for *any* weights (alias rms at float rounding, < 1e-6), the transposed conv a periodic one
    (measured 1.7e-2 to 1.9e-2 over two seeds; asserted > 1e-3). Random codes with the data
    codes' per-channel moments: measured Nyquist fractions 2.4e-3 to 3.0e-3 (transposed) vs
    <= 1e-4 (nearest), i.e. >= 24x; asserted > 5x, which leaves room for seed/platform spread
    while still failing if the transposed decoder had no excess period-2 energy."""
    x, _ = digits(size=16)
    xtr, xte = x[:512], x[1500:1600]
    reps = {}
    for kind in ("transposed", "nearest"):
        torch.manual_seed(0)
        m = ConvAE(upsample=kind, kernel_size=3)
        train(m, xtr, epochs=15, batch_size=32, lr=3e-3, progress=False, seed=0)
        z = autoencoder(m).codes(xte, flatten=False)
        reps[kind] = checkerboard_probe(m, data_codes=z, code_shape=(4, 16, 16), n=16, crop=12)
    t, r = reps["transposed"], reps["nearest"]
    assert r.constant.alias_rms < 1e-6 and r.constant.nyquist_fraction == 0.0
    assert t.constant.alias_rms > 1e-3
    assert t.random.nyquist_fraction > 5 * r.random.nyquist_fraction
    assert t.random.alias_rms > r.random.alias_rms
