"""Identity-mapping tests (aeprobe.probes.identity) on constructed autoencoders."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from aeprobe.probes.identity import (identity_tests, jacobian_identity_distance, shuffle_pixels,
                                     uniform_noise_like)
from _ae_cases import TinyAE, identity_ae, pca_ae, subspace_data


def _images(n=60, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish images in [0, 1]: low-frequency pattern plus small noise
    base = torch.rand(n, 1, 2, 2, generator=g)
    x = nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    return (x + 0.05 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 1)


def test_exact_identity_scores_as_copier():
    x = _images()
    y = (x.mean(dim=(1, 2, 3)) > x.mean()).long()  # any labels: the probe must tie exactly
    rep = identity_tests(identity_ae(), x, y=y, others={"other": _images(seed=5)}, jacobian_points=4)
    # identity reproduces every input bit-exactly: errors 0, ratios 1 via the floor, no slack needed
    assert rep.in_dist_error == 0.0
    assert set(rep.ood_ratios) == {"uniform_noise", "shuffled_pixels", "other"}
    for name in rep.ood_ratios:
        assert rep.ood_ratios[name] == pytest.approx(1.0, abs=1e-12)
        assert rep.ood_unexplained[name] == 0.0
    assert rep.jacobian_method == "exact" and rep.jacobian_distance == pytest.approx(0.0, abs=1e-12)
    assert rep.jacobian_energy == pytest.approx(1.0, abs=1e-6)  # ||I||_F^2 / d = 1
    assert rep.jacobian_trace == pytest.approx(1.0, abs=1e-6)  # tr(I) / d = 1
    # codes are the pixels themselves -> same features, same splits -> identical accuracy
    assert rep.probe_gap == 0.0
    assert rep.looks_like_copy()


def test_identity_hutchinson_is_exactly_zero():
    # (J - I) v = 0 for every direction, so the estimator has no variance here
    out = jacobian_identity_distance(identity_ae(), _images(n=8), method="hutchinson", directions=5)
    assert out["method"] == "hutchinson" and out["distance"] == 0.0 and out["energy"] == pytest.approx(1.0)
    assert out["trace"] == pytest.approx(1.0)  # v^T v / d = 1 for every Rademacher v


def test_pca_ae_does_not_copy_off_subspace_noise():
    d, k = 32, 3
    x, u = subspace_data(200, d, k)
    rep = identity_tests(pca_ae(u), x, jacobian_points=5, method="exact")
    assert rep.in_dist_error < 1e-10  # data lie in span(U): float32 round-off only
    # isotropic noise keeps only k of d directions: unexplained >= (d - k) / d = 0.906 in
    # expectation; 0.8 leaves room for the sampling error of 200 x 32 uniform draws
    assert rep.ood_unexplained["uniform_noise"] > 0.8
    assert rep.ood_unexplained["shuffled_pixels"] > 0.7  # permuted vectors leave the subspace
    assert rep.ood_ratios["uniform_noise"] > 1e3
    # Jacobian is the orthogonal projector U U^T: ||UU^T - I||_F^2 / d = (d - k) / d exactly
    assert rep.jacobian_distance == pytest.approx((d - k) / d, abs=1e-5)
    assert rep.jacobian_energy == pytest.approx(k / d, abs=1e-5)
    assert rep.jacobian_trace == pytest.approx(k / d, abs=1e-5)  # eigenvalues: k ones, d - k zeros
    assert not rep.looks_like_copy()


def _linear_ae(a: torch.Tensor) -> TinyAE:
    d = a.shape[0]
    lin = nn.Linear(d, d, bias=True)
    with torch.no_grad():
        lin.weight.copy_(a)
        lin.bias.normal_()  # a bias does not change the Jacobian
    return TinyAE(lin, nn.Identity())


@settings(max_examples=10)
@given(d=st.integers(2, 12), seed=st.integers(0, 10_000))
def test_exact_jacobian_matches_closed_form(d, seed):
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed))
    x = torch.randn(3, d)
    out = jacobian_identity_distance(_linear_ae(a), x, method="exact")
    want = float(((a - torch.eye(d)) ** 2).sum() / d)
    # float32 Jacobian entries are exact copies of the weights; 1e-5 relative covers the sum
    assert out["distance"] == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert out["trace"] == pytest.approx(float(torch.trace(a)) / d, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("ad", ["vjp", "jvp"])
def test_hutchinson_matches_exact_within_its_standard_error(ad):
    d = 16
    g = torch.Generator().manual_seed(3)
    a = torch.eye(d) + 0.5 * torch.randn(d, d, generator=g)
    model = _linear_ae(a)
    x = torch.randn(8, d, generator=g)
    points, directions = 8, 500
    est = jacobian_identity_distance(model, x, method="hutchinson", directions=directions, ad=ad, seed=1)
    exact = jacobian_identity_distance(model, x, method="exact")["distance"]
    # Rademacher Hutchinson variance per draw: 2 (||M||_F^2 - sum M_ii^2) / d^2 with M = (J-I)(J-I)^T
    # for vjp (||(J-I)^T v||^2), (J-I)^T (J-I) for jvp; the Jacobian (= a) is the same at all 8
    # points, so 4000 i.i.d. draws; allow 4 standard deviations
    e = (a - torch.eye(d)).double()
    m = e @ e.T if ad == "vjp" else e.T @ e
    sd = math.sqrt(2 * (float((m ** 2).sum()) - float((torch.diag(m) ** 2).sum())) / (points * directions)) / d
    assert abs(est["distance"] - exact) < 4 * sd
    assert sd < 0.05 * exact  # the tolerance is meaningful: 4 sd is under 20% of the value
    # trace: v^T J v = v^T S v, S = (J + J^T) / 2, variance per draw 2 (||S||_F^2 - sum S_ii^2) / d^2
    s_ = (a + a.T).double() / 2
    sd_t = math.sqrt(2 * (float((s_ ** 2).sum()) - float((torch.diag(s_) ** 2).sum())) / (points * directions)) / d
    exact_t = float(torch.trace(a)) / d
    assert abs(est["trace"] - exact_t) < 4 * sd_t
    assert sd_t < 0.05 * abs(exact_t)


def test_ood_generators_preserve_shape_and_statistics():
    x = _images(n=10)
    s = shuffle_pixels(x, seed=0)
    assert s.shape == x.shape
    # a permutation of each image's pixels: same sorted values per sample, different order
    assert torch.equal(s.reshape(10, -1).sort(1).values, x.reshape(10, -1).sort(1).values)
    assert not torch.equal(s, x)
    n = uniform_noise_like(x, seed=0)
    assert n.shape == x.shape and n.min() >= x.min() and n.max() <= x.max()


def test_bad_inputs_raise_clear_errors():
    x = _images(n=4)
    with pytest.raises(ValueError, match="NaN"):
        identity_tests(identity_ae(), x * float("nan"))
    with pytest.raises(ValueError, match="per-sample shape"):
        identity_tests(identity_ae(), x, others={"bad": torch.zeros(4, 1, 4, 4)})
    squash = TinyAE(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ValueError, match="autoencoder"):
        jacobian_identity_distance(squash, x, method="hutchinson", directions=1)
    with pytest.raises(ValueError, match="method"):
        jacobian_identity_distance(identity_ae(), x, method="nope")
    with pytest.raises(TypeError, match="encode"):
        identity_tests(nn.Identity(), x, y=np.arange(4) % 2)
