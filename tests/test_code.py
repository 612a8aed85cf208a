"""aeprobe.probes.code: code statistics, CKA / SVCCA, predicted vs measured ablations, PCA alignment.

Constructed cases with known answers; property tests (hypothesis) for the invariances; one trained
linear autoencoder for the theory link (Baldi & Hornik: its decoder spans the top-d PCA subspace).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import aeprobe
from aeprobe.probes.code import (AblationReport, AlignmentReport, CodeStats, CodeStatsReducer, Comoments,
                                 SimilarityReport, cka, code_similarity, code_stats, effective_dim,
                                 find_linear_maps, pca_alignment, svcca, unit_ablation)
from aeprobe.state import assert_unchanged, snapshot
from autoencoders import UNet, all_kinds, images


# ----------------------------------------------------------------------------------------- helpers
class Parts(nn.Module):
    """encoder/decoder submodules, forward = decoder(encoder(x))."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x):
        return self.decoder(self.encoder(x))


class Square(nn.Module):
    def forward(self, z):
        return z * z


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_moments(xs: list[np.ndarray]):
    """Direct float64 centred moments of the concatenated data (the quantities Comoments streams)."""
    xc = [x - x.mean(0) for x in xs]
    a = [(c * c).sum(1) for c in xc]
    out = {}
    for i in range(len(xs)):
        for j in range(i, len(xs)):
            out[(i, j)] = (xc[i].T @ xc[j], (a[i] * a[j]).sum(), xc[j].T @ a[i], xc[i].T @ a[j])
    return [x.mean(0) for x in xs], out


def gram_cka(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    """Kornblith et al.'s Gram-matrix CKA (centre_gram with the unbiased U-statistic of Székely & Rizzo)."""

    def centre(g):
        g = g.copy()
        n = g.shape[0]
        if debiased:
            np.fill_diagonal(g, 0)
            means = g.sum(0) / (n - 2)
            means -= means.sum() / (2 * (n - 1))
            g -= means[:, None]
            g -= means[None, :]
            np.fill_diagonal(g, 0)
        else:
            means = g.mean(0)
            means -= means.mean() / 2
            g -= means[:, None]
            g -= means[None, :]
        return g

    gx, gy = centre(x @ x.T), centre(y @ y.T)
    return float(gx.ravel() @ gy.ravel() / (np.linalg.norm(gx) * np.linalg.norm(gy)))


def data_svcca(a: np.ndarray, b: np.ndarray, keep: float) -> float:
    """Raghu et al.'s route: SVD of each centred data matrix, keep the variance share, CCA by QR."""

    def reduce(x):
        x = x - x.mean(0)
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        s2 = s**2
        s2 = s2[s2 > 1e-10 * s2[0]]
        k = int(np.searchsorted(np.cumsum(s2) / s2.sum(), keep - 1e-12)) + 1
        return u[:, :k] * s[:k]

    qa, _ = np.linalg.qr(reduce(a))
    qb, _ = np.linalg.qr(reduce(b))
    return float(np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0, 1).mean())


def orthogonal(p: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(p, p, generator=gen(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


# ----------------------------------------------------------------------------------------- streaming moments
@settings(max_examples=25)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6), seed=st.integers(0, 10_000), quartic=st.booleans())
def test_comoments_streamed_equal_direct(sizes, seed, quartic):
    """Chan's one-step update (quartic=False) and the exact re-centring of every term (quartic=True)."""
    g = gen(seed)
    n = sum(sizes)
    xs = [torch.randn(n, p, generator=g, dtype=torch.float64) * 3 + 5 for p in (3, 2, 4)]
    mom = Comoments(3, quartic=quartic)
    s = 0
    for b in sizes:
        mom.update(*[x[s:s + b] for x in xs])
        s += b
    means, ref = reference_moments([x.numpy() for x in xs])
    for i in range(3):
        np.testing.assert_allclose(mom.means[i].numpy(), means[i], rtol=1e-12, atol=1e-12)
    for key, (c, q, su, sv) in ref.items():
        np.testing.assert_allclose(mom.C[key].numpy(), c, rtol=1e-10, atol=1e-9)
        if not quartic:
            continue
        np.testing.assert_allclose(float(mom.Q[key]), q, rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(mom.S[key][0].numpy(), su, rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(mom.S[key][1].numpy(), sv, rtol=1e-10, atol=1e-8)


def test_covariance_is_sound_for_a_large_offset():
    """Unit-variance float32 codes around 3000: E[zz^T] - mu mu^T in float32 loses every digit (shown
    below); the centred, float64 streamed covariance matches the float64 reference to 1e-9."""
    z = (torch.randn(20000, 3, generator=gen(1), dtype=torch.float64) + 3000.0).float()
    ref = np.cov(z.double().numpy(), rowvar=False, bias=True)
    naive = (z.T @ z / z.shape[0] - torch.outer(z.mean(0), z.mean(0))).double().numpy()
    assert np.abs(naive - ref).max() > 0.5  # the case is hard: the naive float32 formula is useless here
    mom = Comoments(1)
    for s in range(0, 20000, 256):
        mom.update(z[s:s + 256])
    np.testing.assert_allclose(mom.cov().numpy(), ref, rtol=1e-9, atol=1e-9)


def test_state_does_not_grow_with_the_number_of_inputs():
    ae = Parts(nn.Sequential(nn.Linear(16, 8), nn.ReLU()), nn.Linear(8, 16)).eval()
    sizes = {}
    for n in (1_000, 20_000):
        red = CodeStatsReducer()
        mom = Comoments(2, quartic=True)
        with torch.no_grad():
            for s in range(0, n, 500):
                xb = torch.randn(500, 16, generator=gen(s))
                z = ae.encoder(xb)
                red.update(xb, z, ae.decoder(z))
                mom.update(z, xb)
        red.result()
        sizes[n] = (red.nbytes(), mom.nbytes(), red.scratch_nbytes())
        assert red.count == n and mom.count == n and red.moments.count == n
    assert sizes[1_000] == sizes[20_000]
    # O(m^2 + D) and O((p + q)^2): 8x8 covariance + vectors, not 20 000 rows
    assert sizes[20_000][0] < 8 * (8 * 8 + 4 * 8 + 2 * 16 + 8)
    assert sizes[20_000][1] < 8 * ((8 + 16) ** 2 + 8 * (8 + 16) + 8)


# ----------------------------------------------------------------------------------------- code_stats
@settings(max_examples=20)
@given(dead=st.sets(st.integers(0, 11), max_size=11), seed=st.integers(0, 1000))
def test_zeroed_encoder_rows_followed_by_relu_are_exactly_the_dead_units(dead, seed):
    torch.manual_seed(seed)
    enc = nn.Linear(10, 12)
    with torch.no_grad():
        enc.bias.fill_(0.5)  # a live unit fires on most inputs
        for k in dead:
            enc.weight[k] = 0
            enc.bias[k] = 0
    ae = Parts(nn.Sequential(enc, nn.ReLU()), nn.Linear(12, 10))
    x = torch.randn(400, 10, generator=gen(seed))
    st_ = code_stats(ae, x, batch_size=64)
    assert st_.dead.tolist() == sorted(dead)
    z = torch.relu(enc(x)).detach()
    np.testing.assert_allclose(st_.frequency, (z > 0).double().mean(0).numpy(), rtol=0, atol=1e-15)
    assert st_.l0 == pytest.approx(float((z > 0).double().sum(1).mean()), abs=1e-12)
    assert st_.dead_fraction == len(dead) / 12


def test_threshold_counts_absolute_values():
    ae = Parts(nn.Identity(), nn.Identity())
    z = torch.tensor([[0.5, -2.0, 0.0], [-0.05, 0.2, 0.0], [3.0, 0.0, 0.0], [0.0, 0.1, 0.0]])
    st_ = code_stats(ae, z, threshold=0.1)
    np.testing.assert_array_equal(st_.frequency, [0.5, 0.5, 0.0])
    assert st_.dead.tolist() == [2] and st_.l0 == 1.0
    with pytest.raises(ValueError, match="threshold"):
        code_stats(ae, z, threshold=-1)


def test_isotropic_gaussian_code_has_effective_dimension_d():
    """d = 8, N = 20 000 standard-normal codes: E[PR] = d N / (N + d + 1) = 7.9964 (measured over 200
    seeds: mean 7.99643, sd 0.0008), so |PR - d| < 0.01 and |PR - 7.9964| < 0.005 (6 sd)."""
    d, n = 8, 20_000
    z = torch.randn(n, d, generator=gen(3), dtype=torch.float64)
    pr = effective_dim(z)
    assert abs(pr - d) < 0.01
    assert abs(pr - d * n / (n + d + 1)) < 0.005
    st_ = code_stats(Parts(nn.Identity(), nn.Identity()), z.float(), batch_size=1000)  # float32 codes
    assert st_.effective_dim == pytest.approx(pr, rel=1e-6)
    np.testing.assert_allclose(st_.spectrum.sum(), z.var(0, unbiased=False).sum().item(), rtol=1e-6)


def test_effective_dim_of_an_exact_spectrum():
    """The four points (±a, ±b) have covariance diag(a^2, b^2) exactly: PR = (a^2 + b^2)^2 / (a^4 + b^4)."""
    a, b = 2.0, 1.0
    z = torch.tensor([[a, b], [a, -b], [-a, b], [-a, -b]], dtype=torch.float64).repeat(5, 1)
    assert effective_dim(z) == pytest.approx((a**2 + b**2) ** 2 / (a**4 + b**4), rel=1e-12)
    line = torch.randn(100, 1, generator=gen(0), dtype=torch.float64) * torch.tensor([[1.0, -2.0, 3.0]])
    assert effective_dim(line) == pytest.approx(1.0, rel=1e-12)
    with pytest.warns(RuntimeWarning, match="constant"):
        assert math.isnan(effective_dim(torch.ones(10, 3)))


def test_fve_mse_mean_std_against_direct_formulas():
    torch.manual_seed(0)
    ae = Parts(nn.Sequential(nn.Linear(6, 3), nn.Tanh()), nn.Linear(3, 6)).double()
    x = torch.randn(777, 6, generator=gen(5), dtype=torch.float64) * torch.arange(1, 7) + 10
    st_ = code_stats(ae, x, batch_size=100)
    with torch.no_grad():
        z = ae.encoder(x)
        xh = ae.decoder(z)
    sse = float(((x - xh) ** 2).sum())
    sst = float(((x - x.mean(0)) ** 2).sum())
    assert st_.fve == pytest.approx(1 - sse / sst, rel=1e-12)
    assert st_.mse == pytest.approx(sse / x.numel(), rel=1e-12)
    np.testing.assert_allclose(st_.mean, z.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(st_.std, z.std(0, unbiased=False).numpy(), rtol=1e-10)
    np.testing.assert_allclose(st_.spectrum, np.linalg.eigvalsh(np.cov(z.numpy(), rowvar=False, bias=True))[::-1],
                               rtol=1e-10, atol=1e-14)
    assert st_.n == 777 and st_.code_shape == (3,) and st_.reconstruction == "decode(encode(x))"


@pytest.mark.parametrize("offset", [0.0, 3.0, 1e4])
def test_fve_is_accurate_on_float32_inputs_with_any_offset(offset):
    """float32 inputs: the sums of squares are centred (shift = the first batch's mean when the offset
    dominates), so the FVE matches a float64 reference to 1e-5 even when mean^2 / variance is 1e8."""
    torch.manual_seed(0)
    ae = Parts(nn.Sequential(nn.Linear(20, 5), nn.Tanh()), nn.Linear(5, 20))
    with torch.no_grad():
        ae.decoder.bias.fill_(offset)
    x = torch.randn(3000, 20, generator=gen(1)) + offset
    st_ = code_stats(ae, x, batch_size=256)
    with torch.no_grad():
        xh = ae(x).double()
    xd = x.double()
    want = 1 - float(((xd - xh) ** 2).sum()) / float(((xd - xd.mean(0)) ** 2).sum())
    assert st_.fve == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert st_.mse == pytest.approx(float(((xd - xh) ** 2).mean()), rel=1e-5)


def test_fve_is_one_for_a_copy_and_zero_for_the_mean():
    x = torch.randn(300, 5, generator=gen(2)) + 4
    copy = code_stats(Parts(nn.Identity(), nn.Identity()), x)
    assert copy.fve == 1.0 and copy.mse == 0.0
    mean = x.mean(0)
    const = aeprobe.autoencoder(Parts(nn.Identity(), nn.Identity()), decode=lambda z: mean.expand_as(z))
    assert code_stats(const, x, batch_size=64).fve == pytest.approx(0.0, abs=1e-6)


def test_streamed_iterables_give_the_same_stats_as_a_tensor():
    torch.manual_seed(1)
    ae = Parts(nn.Sequential(nn.Linear(8, 5), nn.ReLU()), nn.Linear(5, 8))
    x = torch.randn(500, 8, generator=gen(7))
    whole = code_stats(ae, x, batch_size=500)
    from_gen = code_stats(ae, (x[i:i + 37] for i in range(0, 500, 37)))
    from_pairs = code_stats(ae, [(x[i:i + 100], torch.zeros(100)) for i in range(0, 500, 100)])
    for other in (from_gen, from_pairs):
        assert other.n == 500
        np.testing.assert_array_equal(other.frequency, whole.frequency)
        for f in ("fve", "mse", "effective_dim", "l0"):
            assert getattr(other, f) == pytest.approx(getattr(whole, f), rel=1e-5)  # float32 data, other batch splits
        np.testing.assert_allclose(other.spectrum, whole.spectrum, rtol=1e-5, atol=1e-8)


def test_decoder_norms_and_tied_weights_cosines():
    torch.manual_seed(0)
    enc, dec = nn.Linear(10, 6), nn.Linear(6, 10)
    with torch.no_grad():
        dec.weight.copy_(enc.weight.T * torch.arange(1, 7))  # tied up to a per-unit scale: cosine 1
    sae = Parts(nn.Sequential(enc, nn.ReLU()), dec)
    st_ = code_stats(sae, torch.randn(200, 10, generator=gen(0)))
    np.testing.assert_allclose(st_.decoder_norms, dec.weight.detach().double().norm(dim=0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(st_.enc_dec_cosines, np.ones(6), rtol=1e-6)
    assert "relu(encoder.0" in st_.linear_maps and "decoder" in st_.linear_maps
    with torch.no_grad():
        dec.weight.copy_(-enc.weight.T)
    assert np.allclose(code_stats(sae, torch.randn(200, 10)).enc_dec_cosines, -1, rtol=1e-6)


def test_linear_maps_pick_the_code_layer_and_refuse_with_reasons():
    kinds = all_kinds()
    vae, _ = kinds["tuple_vae"]
    maps = find_linear_maps(vae, images(8))
    assert maps.encoder[0] == "fc21" and maps.activation == "identity" and maps.decoder[0] == "fc3"  # not fc22
    lib, _ = kinds["library"]
    maps = find_linear_maps(lib, images(8))  # mean = first half of body.1's output (chunk)
    assert maps.encoder[0] == "body.1" and maps.encoder_rows == slice(0, 4) and maps.decoder[0] == "head"
    st_ = code_stats(lib, images(50))
    w = lib.head.weight.detach().double()
    np.testing.assert_allclose(st_.decoder_norms, w.norm(dim=0).numpy(), rtol=1e-12)
    we = lib.body[1].weight.detach().double()[:4]  # rows of the mean half
    np.testing.assert_allclose(st_.enc_dec_cosines, nn.functional.cosine_similarity(we, w.T, dim=1).numpy(), rtol=1e-9)
    deep = Parts(nn.Linear(10, 3), nn.Sequential(nn.Linear(3, 7), nn.ReLU(), nn.Linear(7, 10)))
    st_ = code_stats(deep, torch.randn(30, 10))
    assert st_.decoder_norms.shape == (3,) and st_.enc_dec_cosines is None
    assert "no cosines: the encoder Linear reads 10 features, the decoder Linear writes 7" in st_.linear_maps
    unet = aeprobe.autoencoder(UNet(), code_at="down2")
    st_ = code_stats(unet, images(40))
    assert st_.decoder_norms is None and st_.enc_dec_cosines is None
    assert "not the output of a Linear" in st_.linear_maps and "no decode" in st_.linear_maps
    assert st_.reconstruction == "model(x)" and st_.code_shape == (8, 4, 4)


# ----------------------------------------------------------------------------------------- CKA and SVCCA
@settings(max_examples=15)
@given(n=st.integers(6, 60), p=st.integers(1, 7), q=st.integers(1, 9), seed=st.integers(0, 10_000),
       debiased=st.booleans())
def test_cka_matches_the_gram_matrix_definition(n, p, q, seed, debiased):
    g = gen(seed)
    a = torch.randn(n, p, generator=g, dtype=torch.float64) + 2
    b = a[:, :1] * torch.randn(1, q, generator=g, dtype=torch.float64) + torch.randn(n, q, generator=g, dtype=torch.float64)
    ours = cka(a, b, debiased=debiased, batch_size=5)
    ref = gram_cka((a - a.mean(0)).numpy(), (b - b.mean(0)).numpy(), debiased)
    assert ours == pytest.approx(ref, rel=1e-8, abs=1e-10)


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3), side=st.sampled_from(["a", "b"]),
       debiased=st.booleans(), shift=st.floats(-100, 100))
def test_cka_is_invariant_to_orthogonal_maps_isotropic_scaling_and_shifts(seed, scale, side, debiased, shift):
    g = gen(seed)
    a = torch.randn(300, 6, generator=g, dtype=torch.float64)
    b = torch.tanh(a @ torch.randn(6, 4, generator=g, dtype=torch.float64)) + 0.3 * torch.randn(300, 4, generator=g,
                                                                                               dtype=torch.float64)
    before = cka(a, b, debiased=debiased)
    if side == "a":
        after = cka(scale * a @ orthogonal(6, seed) + shift, b, debiased=debiased)
    else:
        after = cka(a, scale * b @ orthogonal(4, seed) + shift, debiased=debiased)
    assert after == pytest.approx(before, rel=1e-9, abs=1e-12)
    assert 0 < before < 1


def test_cka_is_not_invariant_to_anisotropic_scaling():
    """CKA's invariance class is orthogonal maps and isotropic scaling only (Kornblith et al. Sec. 3)."""
    a = torch.randn(500, 4, generator=gen(0), dtype=torch.float64)
    stretched = a * torch.tensor([10.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    assert cka(a, stretched) < 0.6
    assert cka(a, 7 * a) == pytest.approx(1.0, rel=1e-12)


def test_debiased_cka_removes_the_bias_between_unrelated_codes():
    """Independent 50-dim codes, N = 100: plain CKA is far above 0 (~ p/(p + N) scale), debiased ~ 0."""
    a = torch.randn(100, 50, generator=gen(0), dtype=torch.float64)
    b = torch.randn(100, 50, generator=gen(1), dtype=torch.float64)
    assert cka(a, b) > 0.25
    assert abs(cka(a, b, debiased=True)) < 0.05


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), conds=st.tuples(st.floats(1, 30), st.floats(1, 30)))
def test_svcca_is_invariant_to_invertible_linear_maps(seed, conds):
    """keep=1: the canonical correlations depend only on the spans of the two codes (ill-conditioning
    up to 30 per map; float64)."""
    g = gen(seed)
    a = torch.randn(400, 5, generator=g, dtype=torch.float64)
    b = torch.cat([a[:, :2] @ torch.randn(2, 3, generator=g, dtype=torch.float64),
                   torch.randn(400, 3, generator=g, dtype=torch.float64)], 1)

    def invertible(p, cond, s):
        sv = torch.logspace(0, math.log10(cond), p, dtype=torch.float64)
        return orthogonal(p, s) @ torch.diag(sv) @ orthogonal(p, s + 1)

    before = svcca(a, b, keep=1.0)
    after = svcca(a @ invertible(5, conds[0], seed) + 3, b @ invertible(6, conds[1], seed + 7) - 1, keep=1.0)
    assert after == pytest.approx(before, rel=1e-9)
    assert before == pytest.approx(data_svcca(a.numpy(), b.numpy(), 1.0), rel=1e-8)


def test_svcca_keep_drops_low_variance_noise():
    """Codes share a 3-dim signal; each adds 3 independent dims at 1e-3 of its scale. keep=0.99 keeps the
    signal (SVCCA 1); keep=1 also keeps the noise, whose canonical correlations are ~0."""
    g = gen(4)
    s = torch.randn(2000, 3, generator=g, dtype=torch.float64)
    a = torch.cat([s, 1e-3 * torch.randn(2000, 3, generator=g, dtype=torch.float64)], 1)
    b = torch.cat([s @ torch.randn(3, 3, generator=g, dtype=torch.float64),
                   1e-3 * torch.randn(2000, 3, generator=g, dtype=torch.float64)], 1)
    assert svcca(a, b, keep=0.99) == pytest.approx(1.0, abs=1e-6)
    assert svcca(a, b, keep=1.0) < 0.6
    for keep in (0.5, 0.9, 0.99):
        assert svcca(a, b, keep=keep) == pytest.approx(data_svcca(a.numpy(), b.numpy(), keep), rel=1e-8)
    with pytest.raises(ValueError, match="keep"):
        svcca(a, b, keep=0)


def test_similarity_arguments_are_checked():
    with pytest.raises(ValueError, match="same inputs"):
        cka(torch.randn(10, 2), torch.randn(11, 2))
    with pytest.raises(TypeError, match="tensor"):
        svcca([[1.0]], torch.randn(1, 1))
    with pytest.raises(ValueError, match="NaN"):
        cka(torch.tensor([[float("nan")], [1.0]]), torch.randn(2, 1))
    with pytest.warns(RuntimeWarning, match="no variance"):
        assert math.isnan(cka(torch.ones(20, 3), torch.randn(20, 2)))


def test_code_similarity_matrix_over_the_test_autoencoders():
    kinds = all_kinds()
    views = {k: aeprobe.autoencoder(m, **kw) for k, (m, kw) in kinds.items()}
    x = images(300)
    rep = code_similarity(views, x, batch_size=64)
    assert isinstance(rep, SimilarityReport) and rep.names == list(kinds) and rep.n == 300
    for mat in (rep.cka, rep.cka_debiased, rep.svcca):
        np.testing.assert_allclose(mat, mat.T)
        np.testing.assert_allclose(np.diag(mat), 1.0, rtol=1e-9)
    codes = {k: v.codes(x) for k, v in views.items()}
    assert rep.cka[0, 1] == pytest.approx(cka(codes["tuple_vae"], codes["dict_ae"]), rel=1e-5)
    assert rep.cka_debiased[1, 3] == pytest.approx(cka(codes["dict_ae"], codes["library"], debiased=True), rel=1e-5)
    assert rep.svcca[2, 4] == pytest.approx(svcca(codes["sequential"], codes["callables"]), rel=1e-5)
    # a list works too, and a model whose code is another model's code rotated and scaled has CKA 1
    torch.manual_seed(0)
    enc = nn.Linear(64, 4)
    rot = orthogonal(4, 3).float()
    a = aeprobe.autoencoder(nn.Flatten(), encode=lambda t: enc(t.flatten(1)))
    b = aeprobe.autoencoder(nn.Flatten(), encode=lambda t: 5 * enc(t.flatten(1)) @ rot)
    two = code_similarity([a, b], x)
    assert two.names == ["model 0", "model 1"] and two.cka[0, 1] == pytest.approx(1.0, abs=1e-5)
    assert two.svcca[0, 1] == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------------------------------- ablations
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_linear_decoder_predicted_equals_measured(dtype, rtol):
    torch.manual_seed(0)
    ae = Parts(nn.Sequential(nn.Linear(7, 5), nn.ReLU()), nn.Sequential(nn.Linear(5, 9), nn.Linear(9, 7))).to(dtype)
    x = torch.randn(300, 7, generator=gen(1), dtype=dtype)
    rep = unit_ablation(ae, x, batch_size=128)
    live = rep.predicted > 0
    np.testing.assert_allclose(rep.measured, rep.predicted, rtol=rtol)
    np.testing.assert_allclose(rep.ratio[live], 1.0, rtol=rtol)
    # loss change by brute force: zero unit k, decode, MSE against x
    with torch.no_grad():
        z = ae.encoder(x)
        base = ((ae.decoder(z) - x) ** 2).mean(1).double()
        for k in range(5):
            zk = z.clone()
            zk[:, k] = 0
            want = float((((ae.decoder(zk) - x) ** 2).mean(1).double() - base).mean())
            assert rep.loss_change[k] == pytest.approx(want, rel=1e-5, abs=1e-12)
    assert rep.base_loss == pytest.approx(float(base.mean()), rel=1e-6)


def test_square_decoder_has_ratio_one_half():
    """D(z) = z * z: zeroing unit k changes output k by z_k^2 (measured), the jvp says 2 z_k^2
    (predicted): ratio exactly 1/2, the decoder's non-linearity made visible."""
    ae = aeprobe.autoencoder(Parts(nn.Identity(), Square()))
    z = torch.randn(200, 4, generator=gen(2))
    rep = unit_ablation(ae, z, units=[0, 2])
    assert rep.units == [0, 2]
    np.testing.assert_allclose(rep.measured, (z[:, [0, 2]].double() ** 2).mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(rep.ratio, 0.5, rtol=1e-6)


def test_dead_unit_has_zero_effect_and_nan_ratio():
    enc = nn.Linear(5, 3)
    with torch.no_grad():
        enc.weight[1] = 0
        enc.bias[1] = -1
    rep = unit_ablation(Parts(nn.Sequential(enc, nn.ReLU()), nn.Linear(3, 5)), torch.randn(100, 5))
    assert rep.measured[1] == 0 and rep.predicted[1] == 0 and math.isnan(rep.ratio[1])
    assert rep.loss_change[1] == 0
    with pytest.raises(ValueError, match="out of range"):
        unit_ablation(Parts(nn.Sequential(enc, nn.ReLU()), nn.Linear(3, 5)), torch.randn(10, 5), units=[3])


# ----------------------------------------------------------------------------------------- PCA alignment
def linear_ae(w_enc, b_enc, w_dec, b_dec) -> Parts:
    enc = nn.Linear(w_enc.shape[1], w_enc.shape[0], dtype=torch.float64)
    dec = nn.Linear(w_dec.shape[1], w_dec.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for lin, w, b in ((enc, w_enc, b_enc), (dec, w_dec, b_dec)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    return Parts(enc, dec)


@settings(max_examples=20)
@given(seed=st.integers(0, 10_000), d=st.integers(1, 4), extra=st.integers(1, 5))
def test_linear_ae_from_the_pca_basis_has_zero_angles(seed, d, extra):
    """Random data; decoder = top-d PCA eigenvectors mixed by a random invertible map, encoder its
    pseudo-inverse: same column space, so every angle is 0 (to 1e-6 rad) and explained shares agree."""
    g = gen(seed)
    dim = d + extra
    x = torch.randn(500, dim, generator=g, dtype=torch.float64) @ torch.randn(dim, dim, generator=g,
                                                                            dtype=torch.float64) + 1
    lam, vec = np.linalg.eigh(np.cov(x.numpy(), rowvar=False))
    top = torch.from_numpy(vec[:, ::-1][:, :d].copy())
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) + 3 * torch.eye(d, dtype=torch.float64)
    w_dec = top @ mix
    w_enc = torch.linalg.pinv(w_dec)
    mu = x.mean(0)
    rep = pca_alignment(linear_ae(w_enc, -w_enc @ mu, w_dec, mu), x, batch_size=128)
    assert isinstance(rep, AlignmentReport) and rep.code_dim == d and rep.rank == d
    assert rep.max_angle < 1e-6
    assert rep.explained_decoder == pytest.approx(rep.explained_pca, rel=1e-9)
    assert rep.affine_error < 1e-9


@settings(max_examples=15)
@given(angles=st.lists(st.floats(0.01, 1.5), min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_known_principal_angles(angles, seed):
    """Data with covariance diag(10, 9, ..) along e_1..e_d: PCA subspace = span(e_1..e_d). Decoder column
    i = cos(θ_i) e_i + sin(θ_i) e_{d+i}: principal angles exactly θ_i."""
    d = len(angles)
    dim = 2 * d + 1
    scales = torch.tensor([10.0 - i for i in range(d)] + [1.0 - 0.1 * i for i in range(d + 1)], dtype=torch.float64)
    g = gen(seed)
    x = torch.randn(4000, dim, generator=g, dtype=torch.float64)
    x = (x - x.mean(0))
    x = x @ torch.linalg.inv(torch.linalg.cholesky(x.T @ x / x.shape[0])).T  # exactly white
    x = x * scales.sqrt()  # exactly diagonal covariance
    w = torch.zeros(dim, d, dtype=torch.float64)
    for i, th in enumerate(angles):
        w[i, i], w[d + i, i] = math.cos(th), math.sin(th)
    rep = pca_alignment(linear_ae(torch.linalg.pinv(w), torch.zeros(d, dtype=torch.float64), w,
                                  torch.zeros(dim, dtype=torch.float64)), x)
    np.testing.assert_allclose(rep.angles, sorted(angles), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(rep.pca_variance, scales.numpy(), rtol=1e-9)


def test_trained_linear_ae_decoder_spans_the_pca_subspace():
    """Baldi & Hornik: the linear AE's minima have the decoder spanning the top-d principal subspace.
    Data: 10-dim Gaussian, eigenvalues 9, 6, 4 then 0.5 x 7 (eigengap 0.875), 1024 samples, offset 2.
    Training: full-batch Adam (deterministic gradients; batch_size = N), lr 0.1, 600 steps, until the
    reconstruction loss is flat. Measured here max angle 0.001 deg (56.6 deg at initialisation); tolerance
    0.1 deg (100x the measured value, far below the initial angle: any failure to converge to the
    subspace shows, and Adam's finite-step jitter or a different BLAS does not). The decoder captures the PCA share
    of variance to 1e-6."""
    from aeprobe.train import train

    g = gen(0)
    dim, d, n = 10, 3, 1024
    lam = torch.tensor([9.0, 6.0, 4.0] + [0.5] * (dim - d))
    x = (torch.randn(n, dim, generator=g) * lam.sqrt()) @ orthogonal(dim, 0).float().T + 2.0
    torch.manual_seed(0)
    ae = Parts(nn.Linear(dim, d), nn.Linear(d, dim))
    random_angle = pca_alignment(ae, x).max_angle
    train(ae, x, epochs=600, batch_size=n, lr=0.1, progress=False)
    rep = pca_alignment(ae, x)
    assert np.degrees(random_angle) > 30  # at initialisation the decoder is far from the subspace
    assert np.degrees(rep.max_angle) < 0.1
    assert rep.explained_decoder == pytest.approx(rep.explained_pca, rel=1e-6)
    assert rep.affine_error < 1e-5


# ----------------------------------------------------------------------------------------- every kind, refusals
@pytest.mark.parametrize("kind", list(all_kinds()))
def test_every_function_runs_on_the_test_autoencoders(kind, tmp_path):
    model, kw = all_kinds()[kind]
    ae = aeprobe.autoencoder(model, **kw)
    x = images(120)
    model.train()
    before = snapshot(model)
    st_ = code_stats(ae, x, batch_size=50)
    ab = unit_ablation(ae, x, batch_size=50)
    pa = pca_alignment(ae, x, batch_size=50)
    assert_unchanged(model, before)  # modes, hooks and weights restored
    assert isinstance(st_, CodeStats) and st_.n == 120 and st_.code_size == 4
    assert np.isfinite([st_.fve, st_.mse, st_.effective_dim, st_.l0]).all()
    assert st_.decoder_norms is not None and st_.decoder_norms.shape == (4,)  # each kind reads z with a Linear
    assert isinstance(ab, AblationReport) and ab.measured.shape == (4,) and (ab.measured > 0).all()
    if kind in ("library", "callables"):  # affine decoders: the first-order prediction is exact
        np.testing.assert_allclose(ab.ratio, 1.0, rtol=1e-5)
        assert pa.affine_error < 1e-5
    assert pa.angles.shape == (4,) and (pa.angles >= 0).all() and (pa.angles <= np.pi / 2 + 1e-12).all()
    for rep in (st_, ab, pa):
        json.dumps(rep.to_dict(), allow_nan=False)
        if kind == "dict_ae":  # one kind is enough for the figures (each takes ~1 s)
            assert rep.plot(tmp_path / f"{type(rep).__name__}.png").stat().st_size > 0


class Counting(UNet):
    calls = 0

    def forward(self, x):
        Counting.calls += 1
        return super().forward(x)


def test_refuses_without_decode_before_any_work():
    model = Counting()
    ae = aeprobe.autoencoder(model, code_at="down2")

    def poisoned():
        raise AssertionError("the data were read")
        yield  # pragma: no cover

    for fn in (unit_ablation, pca_alignment):
        with pytest.raises(TypeError, match=r"needs decode\(z\).*decoder="):
            fn(ae, poisoned())
    assert Counting.calls == 0
    with pytest.raises(TypeError, match="needs encode"):
        code_stats(aeprobe.autoencoder(nn.Linear(3, 3)), poisoned())
    with pytest.raises(TypeError, match="nn.Module or an aeprobe.autoencoder"):
        code_stats("model", torch.randn(3, 3))
    with pytest.raises(ValueError, match="no samples"):
        code_stats(Parts(nn.Identity(), nn.Identity()), iter([]))


def test_similarity_report_to_dict_and_plot(tmp_path):
    a = aeprobe.autoencoder(nn.Flatten(), encode=lambda t: t[:, :3])
    b = aeprobe.autoencoder(nn.Flatten(), encode=lambda t: t[:, 1:5])
    rep = code_similarity({"a": a, "b": b}, torch.randn(200, 6, generator=gen(0)))
    d = rep.to_dict()
    assert d["names"] == ["a", "b"] and d["code_sizes"] == [3, 4] and len(d["cka"]) == 2
    json.dumps(d, allow_nan=False)
    assert rep.plot(tmp_path / "sim.png").exists()


def test_nan_codes_are_refused():
    ae = Parts(nn.Identity(), nn.Identity())
    x = torch.randn(50, 3)
    x[7, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        code_stats(ae, x)


def test_docstring_examples_run():
    import doctest

    import aeprobe.probes.code as mod

    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 8 and res.failed == 0


def test_statistics_survive_when_the_linear_maps_cannot_be_found(monkeypatch):
    import aeprobe.probes.code as mod

    def broken(ae, x):
        raise RuntimeError("hook refused")

    monkeypatch.setattr(mod, "find_linear_maps", broken)
    st_ = code_stats(Parts(nn.Linear(4, 2), nn.Linear(2, 4)), torch.randn(64, 4))
    assert st_.n == 64 and np.isfinite(st_.fve)
    assert st_.decoder_norms is None and "RuntimeError: hook refused" in st_.linear_maps
