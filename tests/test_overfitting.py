"""Encoder-vs-decoder overfitting split (aeprobe.probes.overfitting) on cases with known answers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from aeprobe.probes.overfitting import fresh_decoder, overfitting_split
from aeprobe.state import assert_unchanged, snapshot
from aeprobe.view import autoencoder
from _ae_cases import TinyAE
from autoencoders import TupleVAE, UNet, images


D = 8
# fresh-decoder training used throughout: a d x d linear map is learnt to ~1e-4 MSE by this
REFIT = dict(epochs=60, batch_size=25, lr=0.03)


def _gauss(n, d=D, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


class LookupDecoder(nn.Module):
    """Memorised table: returns the training image whose code is nearest (no parameters)."""

    def __init__(self, keys, values):
        super().__init__()
        self.register_buffer("keys", keys.clone())
        self.register_buffer("values", values.clone())

    def forward(self, z):
        return self.values[torch.cdist(z, self.keys).argmin(1)]


class CollapseEncoder(nn.Module):
    """Copies training inputs; maps every other input to the zero code."""

    def __init__(self, train):
        super().__init__()
        self.register_buffer("seen", train.clone())

    def forward(self, x):
        seen = torch.cdist(x, self.seen, compute_mode="donot_use_mm_for_euclid_dist").min(1).values < 1e-5
        return x * seen.unsqueeze(1).to(x.dtype)


def _identity_linear(d=D):
    lin = nn.Linear(d, d)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(d))
        lin.bias.zero_()
    return lin


def test_memorising_decoder_on_good_encoder_is_charged_to_the_decoder():
    xt, xh = _gauss(200, seed=0), _gauss(200, seed=1)
    yt, yh = (xt[:, 0] > 0).long(), (xh[:, 0] > 0).long()
    model = TinyAE(nn.Identity(), LookupDecoder(xt, xt))
    with pytest.raises(ValueError, match="decoder_factory"):  # buffers only: nothing to re-initialise
        overfitting_split(model, xt, xh, **REFIT)
    rep = overfitting_split(model, xt, xh, y_train=yt, y_heldout=yh, decoder_factory=lambda: nn.Linear(D, D),
                            **REFIT)
    assert rep.train_error == 0.0  # exact lookup of every training sample
    # nearest-neighbour of a fresh 8-d Gaussian among 200 points is far: the gap is O(1) (0.44 here)
    assert rep.gap > 0.3
    # the codes are the inputs, so a refit linear decoder reconstructs unseen images almost
    # perfectly: the encoder's share must be small (10% allows the refit's residual error)
    assert rep.encoder_gap < 0.1 * rep.gap
    assert rep.decoder_share > 0.9
    assert rep.encoder_gap_matched is not None and abs(rep.encoder_gap_matched) < 0.1 * rep.gap
    assert rep.refit_seen_error < 0.05
    # codes of seen and unseen images are the same kind of object: no probe gap
    # (0.15 is ~4 standard errors of an accuracy difference on 3 x 50 test samples each)
    assert abs(rep.probe_gap) < 0.15
    assert rep.init == "factory"


def test_collapsing_encoder_is_charged_to_the_encoder():
    xt, xh = _gauss(200, seed=2), _gauss(200, seed=3)
    yt, yh = (xt[:, 0] > 0).long(), (xh[:, 0] > 0).long()
    model = TinyAE(CollapseEncoder(xt), _identity_linear())
    rep = overfitting_split(model, xt, xh, y_train=yt, y_heldout=yh, **REFIT)  # default: deepcopy + reset
    assert rep.init == "reset"
    assert rep.train_error < 1e-10
    assert rep.test_error == pytest.approx(1.0, abs=0.25)  # zero output on N(0, I): error = E x^2 = 1
    # zero codes carry nothing: the best decoder outputs the mean, error ~ variance ~ test error
    assert rep.encoder_share > 0.9 and abs(rep.decoder_share) < 0.1
    assert rep.encoder_gap_matched == pytest.approx(rep.encoder_gap, abs=0.05)  # control decoder is exact
    # seen codes = inputs (probe ~ 0.95), unseen codes = 0 (probe = chance ~ 0.5)
    assert rep.probe_gap > 0.3


class HashEncoder(nn.Module):
    """``sin(50 x W)``: a deterministic code no decoder can read beyond memorising it."""

    def __init__(self, d=D, m=64, seed=0):
        super().__init__()
        self.register_buffer("w", torch.randn(d, m, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x):
        return torch.sin(50 * x @ self.w)


def test_refit_overfitting_its_fit_half_is_cancelled_by_the_matched_control():
    # The encoder treats seen and unseen images alike (equally unreadable), the decoder is a
    # lookup table of training codes: the whole gap is the decoder's. A fresh linear decoder on
    # 64-d codes of 100 images is ordinary least squares with p/n = 0.64: expected error on its
    # fit set ~ (1 - p/n) = 0.36 and on new images ~ 1 + p/(n - p - 1) = 2.8 (unit-variance targets).
    xt, xh = _gauss(200, seed=6), _gauss(200, seed=7)
    enc = HashEncoder()
    model = TinyAE(enc, LookupDecoder(enc(xt), xt))
    rep = overfitting_split(model, xt, xh, decoder_factory=lambda: nn.Linear(64, D), **REFIT)
    assert rep.train_error == 0.0
    assert rep.n_fit == 100 and rep.n_eval == 100 and rep.n_control_eval == 100
    # the refit is scored on the other half B, not on its fit half A (theory: 0.36 vs 2.8)
    assert rep.refit_fit_error < 0.25 * rep.refit_error
    # the control is scored on training images disjoint from the ones it was fit on (~2.8, not ~0.36)
    assert rep.refit_seen_error > 1.0
    # the raw split is fooled by the refit's own overfitting: it charges more than the gap to the encoder
    assert rep.encoder_gap > rep.gap and rep.decoder_gap < 0
    # the matched split cancels it: seen and unseen refits differ only by sampling noise
    # (each is a mean over 100 images of an error ~2.8 with sd ~1.5: SE of the difference ~0.2;
    # 0.4 * gap ~ 0.8 is ~4 SE)
    assert abs(rep.encoder_gap_matched) < 0.4 * rep.gap
    assert rep.decoder_gap_matched > 0.6 * rep.gap


def test_projection_onto_training_span_is_charged_to_the_encoder():
    # 12 training points in 32-d: a projector onto their span loses 20/32 of an unseen vector
    d, n = 32, 12
    xt, xh = _gauss(n, d, seed=4), _gauss(200, d, seed=5)
    q, _ = torch.linalg.qr(xt.T)
    enc = nn.Linear(d, d, bias=False)
    with torch.no_grad():
        enc.weight.copy_(q @ q.T)
    model = TinyAE(enc, _identity_linear(d))
    rep = overfitting_split(model, xt, xh, control=False, epochs=150, batch_size=25, lr=0.03)
    assert rep.refit_seen_error is None and rep.encoder_gap_matched is None
    assert rep.test_error == pytest.approx(20 / 32, abs=0.1)
    # 100 fit samples, 32-d linear map: refit recovers the projection's range, nothing more
    assert rep.encoder_share > 0.85


class SplitVAE(nn.Module):
    """A tuple-output VAE written the usual way: ``encode -> (mu, logvar)``, ``forward -> (recon, mu,
    logvar)``, and a decoder that is ``fc4(fc3(z))`` inside ``decode`` -- no ``.decoder`` submodule.

    ``enc_w`` is ``fc1``'s weight (the encoder, linear, no bias); ``dec_w`` is ``fc3``'s (``fc4`` = I).
    """

    def __init__(self, enc_w: torch.Tensor, dec_w: torch.Tensor):
        super().__init__()
        d = enc_w.shape[0]
        self.fc1 = nn.Linear(d, d, bias=False)
        self.fc3 = nn.Linear(d, d)
        self.fc4 = nn.Linear(d, d)
        with torch.no_grad():
            self.fc1.weight.copy_(enc_w)
            self.fc3.weight.copy_(dec_w)
            self.fc3.bias.zero_()
            self.fc4.weight.copy_(torch.eye(d))
            self.fc4.bias.zero_()

    def encode(self, x):
        mu = self.fc1(x)
        return mu, torch.zeros_like(mu)

    def decode(self, z):
        return self.fc4(self.fc3(z))

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(mu), mu, logvar


def _span_projector(x: torch.Tensor) -> torch.Tensor:
    q, _ = torch.linalg.qr(x.T)
    return q @ q.T


# The same operator -- the orthogonal projector P onto the span of n = 12 training points in d = 32 --
# placed once in the encoder and once in the decoder. Training points satisfy P x = x, so the
# training error is 0 (float32 round-off) either way; an unseen x ~ N(0, I) loses its 20 components
# outside the span: test error = E ||(I - P) x||^2 / d = 20/32 = 0.625 per element (sd of the mean
# over the 100 images of B: sqrt(2 * 20) / 32 / sqrt(100) = 0.02; 0.1 is 5 sd). Only where P sits
# differs, and the split must follow it. control=False: with 12 training images the budget-matched
# control would fit on 6; the refit on 100 unseen codes is what is tested here.
SPLIT = dict(control=False, epochs=150, batch_size=25, lr=0.03)
D_SPLIT, N_SPLIT = 32, 12


def _split_case(where: str, seed: int = 0):
    xt, xh = _gauss(N_SPLIT, D_SPLIT, seed=10 + seed), _gauss(200, D_SPLIT, seed=11 + seed)
    p, eye = _span_projector(xt), torch.eye(D_SPLIT)
    return (SplitVAE(p, eye) if where == "encoder" else SplitVAE(eye, p)), xt, xh


def test_gap_in_the_encoder_by_construction_is_charged_to_the_encoder():
    # Encoder P, decoder I: the code of an unseen image has lost (I - P) x, which is independent of
    # P x for Gaussian data, so *no* decoder fit on unseen codes can do better than the original
    # identity decoder: refit_error >= test_error up to noise, i.e. encoder_gap >= gap, decoder_gap <= 0.
    # The fresh decoder, a least-squares fit of p = 12 code directions on 100 images, is worse by its
    # own variance ~ p / (n - p - 1) = 14% (measured decoder_gap -0.08 to -0.14 over 3 seeds).
    model, xt, xh = _split_case("encoder")
    before = snapshot(model)
    rep = overfitting_split(model, xt, xh, **SPLIT)
    assert_unchanged(model, before)  # refit in place, undone bit-identically
    assert rep.train_error < 1e-10
    assert rep.test_error == pytest.approx(20 / 32, abs=0.1)
    assert rep.encoder_share > 0.9  # measured 1.13-1.22: the refit's variance only adds to it
    assert rep.decoder_gap < 0.05 * rep.gap  # nothing is the decoder's (it is <= 0 up to noise)


def test_gap_in_the_decoder_by_construction_is_charged_to_the_decoder():
    # Encoder I (lossless for every input), decoder P (fc3): the codes of unseen images hold all of
    # x, and 100 codes spanning R^32 with noise-free targets determine the identity decoder exactly,
    # so a refit of fc3 and fc4 reconstructs unseen images up to its optimisation residual (measured
    # 0.006-0.012 over 3 seeds, against a gap of 0.63). refit_error << test_error is only possible
    # because the refit reached fc3 and fc4, which no .decoder submodule names: the view found them
    # by running decode.
    model, xt, xh = _split_case("decoder")
    assert list(autoencoder(model).decoder_modules(torch.zeros(1, D_SPLIT))) == ["fc3", "fc4"]
    before = snapshot(model)
    rep = overfitting_split(model, xt, xh, **SPLIT)
    assert_unchanged(model, before)
    assert rep.train_error < 1e-10
    assert rep.test_error == pytest.approx(20 / 32, abs=0.1)
    assert rep.decoder_share > 0.9  # measured >= 0.98
    assert rep.encoder_gap < 0.1 * rep.gap  # ~0.06 allowed; measured <= 0.012


def test_fresh_decoder_is_reset_seeded_in_place_and_restored():
    torch.manual_seed(0)
    vae = TupleVAE().train()
    vae.fc3.weight.grad = torch.ones_like(vae.fc3.weight)  # a gradient the caller left there
    before, rng = snapshot(vae), torch.get_rng_state()
    z = torch.zeros(1, 4)
    weights = {}
    for seed in (7, 7, 8):
        with fresh_decoder(vae, z, seed=seed) as params:
            assert sorted(params) == ["fc3.bias", "fc3.weight", "fc4.bias", "fc4.weight"]  # decode's modules
            assert params["fc3.weight"] is vae.fc3.weight  # in place: callables bound to vae see it
            assert all(p.requires_grad for p in params.values()) and not vae.fc1.weight.requires_grad
            assert vae.fc3.weight.grad is None
            weights.setdefault(seed, []).append(vae.fc3.weight.detach().clone())
        assert_unchanged(vae, before)
        assert torch.equal(vae.fc3.weight.grad, torch.ones_like(vae.fc3.weight))
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is untouched
    assert torch.equal(weights[7][0], weights[7][1])  # seeded
    assert not torch.equal(weights[7][0], weights[8][0])
    assert not torch.equal(weights[7][0], before.state["fc3.weight"])  # re-initialised
    with fresh_decoder(vae, z, init="finetune"):
        assert torch.equal(vae.fc3.weight, before.state["fc3.weight"])
    with pytest.raises(ValueError, match="init"):
        with fresh_decoder(vae, z, init="nope"):
            pass
    with pytest.raises(RuntimeError, match="boom"):  # restored on an error too
        with fresh_decoder(vae, z):
            raise RuntimeError("boom")
    assert_unchanged(vae, before)


def test_refit_needs_decode_and_is_refused_before_any_forward():
    net = UNet()
    calls = []
    handles = [m.register_forward_pre_hook(lambda mod, a: calls.append(mod)) for m in net.modules()]
    ae = autoencoder(net, code_at="down2")
    with pytest.raises(TypeError, match=r"overfitting_split.*decode\(z\).*code_at='down2'.*decoder=.*decode="):
        overfitting_split(ae, images(8), images(8, seed=1))
    assert calls == []
    for h in handles:
        h.remove()
    # with a fresh decoder of its own the probe needs encode only: it runs on the U-Net's codes
    factory = lambda: nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 64), nn.Unflatten(1, (1, 8, 8)))  # noqa: E731
    before = snapshot(net)
    rep = overfitting_split(ae, images(16), images(16, seed=1), decoder_factory=factory, epochs=2, batch_size=8)
    assert rep.init == "factory" and rep.refit_error > 0
    assert_unchanged(net, before)


def test_bad_inputs():
    model = TinyAE(nn.Identity(), _identity_linear())
    with pytest.raises(ValueError, match="shape"):
        overfitting_split(model, _gauss(10), torch.zeros(10, D + 1))
    with pytest.raises(ValueError, match="at least 4"):
        overfitting_split(model, _gauss(10), _gauss(3))
    with pytest.raises(TypeError, match="encode"):
        overfitting_split(nn.Linear(D, D), _gauss(10), _gauss(10))
