"""Latent interpolation and AE iteration (aeprobe.probes.latent) and their image grids."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from aeprobe.models import AutoEncoder
from aeprobe.plots.bottleneck import interpolation_grid, iteration_grid
from aeprobe.probes.latent import interpolate, iterate, iteration_drift, iteration_steps
from _ae_cases import TinyAE, identity_ae


class ScaleAE(AutoEncoder):
    """f(x) = s * x through a 1-channel conv code (linear encoder and decoder)."""

    def __init__(self, s: float):
        super().__init__()
        self.encoder = nn.Conv2d(1, 2, 1, bias=False)
        self.decoder = nn.Conv2d(2, 1, 1, bias=False)
        with torch.no_grad():
            self.encoder.weight.copy_(torch.tensor([1.0, 0.0]).view(2, 1, 1, 1))
            self.decoder.weight.copy_(torch.tensor([s, 0.0]).view(1, 2, 1, 1))


@settings(max_examples=15)
@given(steps=st.integers(2, 9), seed=st.integers(0, 1000))
def test_interpolation_of_a_linear_ae_is_a_linear_blend(steps, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(1, 6, 6, generator=g), torch.rand(1, 6, 6, generator=g)
    out = interpolate(ScaleAE(0.5), a, b, steps)
    assert out.shape == (steps, 1, 6, 6)
    t = np.linspace(0, 1, steps).reshape(-1, 1, 1, 1)
    want = 0.5 * ((1 - t) * a.numpy() + t * b.numpy())  # linear encoder/decoder: decode is linear
    np.testing.assert_allclose(out, want, atol=1e-6)  # float32 round-off


def test_interpolation_batch_shape_and_endpoints():
    a, b = torch.rand(3, 1, 5, 5), torch.rand(3, 1, 5, 5)
    out = interpolate(identity_ae(), a, b, 4)
    assert out.shape == (3, 4, 1, 5, 5)
    np.testing.assert_array_equal(out[:, 0], a.numpy())
    np.testing.assert_allclose(out[:, -1], b.numpy(), atol=1e-7)


def test_iterate_contracting_map_converges_geometrically():
    x = torch.rand(2, 1, 4, 4) + 0.5
    frames = iterate(ScaleAE(0.9), x, n=20, keep=[0, 1, 10, 20])
    assert frames.shape == (4, 2, 1, 4, 4)
    for f, k in zip(frames, [0, 1, 10, 20]):
        np.testing.assert_allclose(f, 0.9 ** k * x.numpy(), rtol=1e-5)  # f^k(x) = 0.9^k x
    drift = iteration_drift(frames[:, 0])
    assert drift["step"][0] == 0.0 and np.all(np.diff(drift["to_start"]) > 0)


def test_iterate_identity_is_a_fixed_point_and_default_keep():
    x = torch.rand(1, 3, 3)
    frames = iterate(identity_ae(), x, n=100)
    assert iteration_steps(100) == list(range(0, 101, 10))
    assert frames.shape == (11, 1, 3, 3)
    assert np.all(frames == x.numpy())
    assert iteration_steps(7, keep=3) == [0, 3, 6, 7]


def test_iterate_clamp_and_errors():
    x = torch.ones(1, 1, 2, 2)
    assert iterate(ScaleAE(3.0), x, n=2, keep=[2], clamp=(0.0, 1.0)).max() == 1.0
    with pytest.raises(ValueError, match="keep"):
        iterate(identity_ae(), x, n=3, keep=[5])
    with pytest.raises(ValueError, match="steps"):
        interpolate(identity_ae(), x, x, 1)
    with pytest.raises(ValueError, match="shape"):
        interpolate(identity_ae(), x, torch.ones(1, 1, 3, 3))
    with pytest.raises(ValueError, match="autoencoder"):
        iterate(TinyAE(nn.Identity(), nn.Flatten()), x, n=1)


def test_grids_are_written(tmp_path):
    a, b = torch.rand(2, 1, 5, 5), torch.rand(2, 1, 5, 5)
    p = interpolation_grid(interpolate(identity_ae(), a, b, 5), tmp_path / "interp.png", row_labels=["r0", "r1"])
    frames = iterate(ScaleAE(0.9), a, n=10, keep=5)
    q = iteration_grid(frames, tmp_path / "iter.png", steps=iteration_steps(10, 5))
    for path in (p, q):
        assert path.exists() and path.stat().st_size > 1000
