"""Encoder-vs-decoder overfitting split (aeprobe.probes.overfitting) on cases with known answers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from aeprobe.probes.overfitting import fresh_decoder_model, overfitting_split
from _ae_cases import TinyAE


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
    assert rep.encoder_gap + rep.decoder_gap == pytest.approx(rep.gap, abs=1e-9)


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


def test_fresh_decoder_is_reset_seeded_and_leaves_the_original_alone():
    model = TinyAE(nn.Identity(), _identity_linear())
    before = torch.get_rng_state()
    a = fresh_decoder_model(model, seed=7)
    assert torch.equal(torch.get_rng_state(), before)  # caller's RNG untouched
    b = fresh_decoder_model(model, seed=7)
    c = fresh_decoder_model(model, seed=8)
    assert torch.equal(a.decoder.weight, b.decoder.weight)
    assert not torch.equal(a.decoder.weight, c.decoder.weight)
    assert not torch.equal(a.decoder.weight, torch.eye(D))
    assert torch.equal(model.decoder.weight, torch.eye(D))
    ft = fresh_decoder_model(model, init="finetune")
    assert torch.equal(ft.decoder.weight, torch.eye(D))
    with pytest.raises(ValueError, match="init"):
        fresh_decoder_model(model, init="nope")


def test_bad_inputs():
    model = TinyAE(nn.Identity(), _identity_linear())
    with pytest.raises(ValueError, match="shape"):
        overfitting_split(model, _gauss(10), torch.zeros(10, D + 1))
    with pytest.raises(ValueError, match="at least 4"):
        overfitting_split(model, _gauss(10), _gauss(3))
    with pytest.raises(TypeError, match="encode"):
        overfitting_split(nn.Linear(D, D), _gauss(10), _gauss(10))
