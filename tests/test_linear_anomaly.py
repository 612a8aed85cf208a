"""Linear probes on codes (aeprobe.probes.linear) and outlier AUROC (aeprobe.probes.anomaly)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from aeprobe.probes.anomaly import auroc_from_scores, clipped_errors, outlier_auroc
from aeprobe.probes.linear import linear_probe, seen_unseen_probe
from _ae_cases import TinyAE, identity_ae, pca_ae, subspace_data


def _blobs(n=200, d=6, sep=4.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, d)) * sep  # drawn first: the same seed gives the same classes
    y = rng.integers(0, 3, n)
    return centers[y] + rng.normal(size=(n, d)), y


def test_probe_separable_vs_random_labels():
    x, y = _blobs()
    assert linear_probe(x, y).accuracy == 1.0  # centres ~4 sd apart in 6-d: linearly separable
    rng = np.random.default_rng(1)
    r = linear_probe(rng.normal(size=(300, 6)), rng.integers(0, 2, 300), repeats=5)
    # labels independent of features: accuracy ~ chance; 0.15 is > 4 sd of a mean over 5 x 75 tests
    assert abs(r.accuracy - 0.5) < 0.15 and r.chance < 0.65


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100.0))
def test_probe_is_invariant_to_permuting_and_rescaling_features(seed, scale):
    # a copying encoder that permutes pixels (and rescales them) must score exactly as the pixels:
    # StandardScaler removes per-feature scale, and the L2 penalty is permutation invariant
    x, y = _blobs(n=120, seed=seed % 50, sep=1.0)
    perm = np.random.default_rng(seed).permutation(x.shape[1])
    a = linear_probe(x, y, seed=3)
    b = linear_probe(x[:, perm] * scale, y, seed=3)
    assert a.accuracy == pytest.approx(b.accuracy, abs=1 / 30 + 1e-9)  # at most one test sample flips by round-off


def test_seen_unseen_probe_on_collapsing_encoder():
    xs, ys = _blobs(n=150, seed=2)
    xu, yu = _blobs(n=300, seed=2)  # same distribution (same centres); more samples
    xs_t, xu_t = torch.tensor(xs, dtype=torch.float32), torch.tensor(xu, dtype=torch.float32) + 0.0

    class SeenOnly(nn.Module):  # keeps inputs it was "trained" on, zeroes the rest
        def forward(self, x):
            seen = torch.cdist(x, xs_t, compute_mode="donot_use_mm_for_euclid_dist").min(1).values < 1e-5
            return x * seen.unsqueeze(1)

    rep = seen_unseen_probe(TinyAE(SeenOnly(), nn.Identity()), xs_t, ys, xu_t[150:], yu[150:])
    assert rep.n_per_set == 150 and rep.code_dim == 6
    assert rep.acc_seen == 1.0
    assert rep.acc_unseen < rep.chance + 0.1  # all-zero codes: at most the majority class
    assert rep.gap > 0.4 and rep.acc_transfer < rep.chance + 0.1
    same = seen_unseen_probe(identity_ae(), xs_t, ys, xu_t[150:], yu[150:])
    assert same.acc_seen == 1.0 and same.acc_unseen == 1.0 and same.gap == 0.0 and same.acc_transfer == 1.0


def test_probe_errors():
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(np.zeros((10, 2)), np.zeros(10))
    with pytest.raises(ValueError, match="entries"):
        linear_probe(np.zeros((10, 2)), np.arange(9) % 2)
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(np.full((10, 2), np.nan), np.arange(10) % 2)


# ------------------------------------------------------------------------------ anomaly


class ZeroAE(nn.Module):
    """Reconstructs everything as 0, so the per-sample MSE is mean(x**2)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Flatten()
        self.decoder = nn.Identity()

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return torch.zeros_like(z)

    def forward(self, x):
        return torch.zeros_like(x)


def _const(values):
    return torch.tensor([[math.sqrt(v)] * 4 for v in values], dtype=torch.float32)  # MSE = v


def test_auroc_extremes():
    x, u = subspace_data(100, 16, 2)
    noise = torch.randn(100, 16)
    rep = outlier_auroc(pca_ae(u), x, noise)
    assert rep.auroc == 1.0  # inliers reconstruct to round-off, off-subspace noise does not
    assert rep.mean_error_out > 100 * rep.mean_error_in + 0.1
    same = outlier_auroc(identity_ae(), x, noise)
    assert same.auroc == 0.5  # a copier gives every sample error 0: all ties


def test_clipping_to_one_as_in_the_paper():
    x_in, x_out = _const([0.5, 1.2]), _const([2.0, 3.0])
    raw = outlier_auroc(ZeroAE(), x_in, x_out, clip=None)
    clipped = outlier_auroc(ZeroAE(), x_in, x_out)  # default clip=1.0
    assert raw.auroc == 1.0
    # clipped scores: in [0.5, 1], out [1, 1]; of the 4 pairs 2 are wins and 2 ties -> 0.75
    assert clipped.auroc == pytest.approx(0.75)
    assert clipped.mean_error_out == pytest.approx(1.0) and clipped.frac_clipped_in == 0.5
    assert clipped.frac_clipped_out == 1.0 and clipped.clip == 1.0
    np.testing.assert_allclose(clipped_errors(ZeroAE(), x_out), [1.0, 1.0])
    np.testing.assert_allclose(clipped_errors(ZeroAE(), x_in, clip=None), [0.5, 1.2], rtol=1e-6)


def test_bad_clip_is_refused_before_any_forward():
    model = ZeroAE()
    calls = []
    model.register_forward_pre_hook(lambda mod, args: calls.append(1))
    x = _const([1.0] * 8)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="clip"):
            outlier_auroc(model, x, x, clip=bad)
        with pytest.raises(ValueError, match="clip"):
            clipped_errors(model, x, clip=bad)
    assert calls == []  # used to run two full forward passes first
    outlier_auroc(model, x, x)
    assert calls  # the hook does count forwards


def test_auroc_orientation_and_errors():
    assert auroc_from_scores([0.1, 0.2], [0.3, 0.4]) == 1.0  # outliers are the positive class
    assert auroc_from_scores([0.3, 0.4], [0.1, 0.2]) == 0.0
    with pytest.raises(ValueError, match="both sets"):
        auroc_from_scores([], [1.0])
    with pytest.raises(ValueError, match="clip"):
        outlier_auroc(ZeroAE(), _const([1.0]), _const([1.0]), clip=0.0)
