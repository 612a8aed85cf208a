"""aeprobe.multiseed: K models trained at once with vmap == K sequential aeprobe.train runs."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from aeprobe.multiseed import MultiTrainResult, train_many
from aeprobe.regularizers import psi3
from aeprobe.train import train


class ConvAE(nn.Module):
    def __init__(self, norm: nn.Module | None = None):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 3, 3, 2, 1), norm or nn.Identity(), nn.LeakyReLU(0.2),
                                     nn.Flatten(), nn.Linear(3 * 16, 1))
        self.decoder = nn.Sequential(nn.Linear(1, 3 * 16), nn.Unflatten(1, (3, 4, 4)), nn.Upsample(scale_factor=2),
                                     nn.Conv2d(3, 1, 3, 1, 1))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def _models(k, **kw):
    out = []
    for i in range(k):
        torch.manual_seed(100 + i)
        out.append(ConvAE(**kw))
    return out


def _x(n=40, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _max_diff(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


# Tolerance for "same weights": vmapped convs run as one grouped conv and the K losses are
# summed before backward, so float32 sums are reassociated (~1e-7 relative per op). Over
# 12 Adam steps with lr 1e-2 the observed max difference is ~1e-7; Adam's normalised step
# (~lr per step) bounds how far a rounding difference can grow, so 1e-5 is a safe margin
# while any real divergence (wrong batch order/seed: differences ~1e-2) is caught.
ATOL = 1e-5


@pytest.mark.parametrize("use_reg", [False, True])
def test_vmapped_equals_sequential_runs(use_reg):
    x, xv = _x(), _x(10, seed=1)
    k, seeds = 3, [5, 6, 7]
    reg = psi3(1e-2) if use_reg else None
    many = _models(k)
    seq = [copy.deepcopy(m) for m in many]
    ref = [train(m, x, epochs=3, batch_size=10, lr=1e-2, seed=s, regularizer=reg, x_val=xv, progress=False)
           for m, s in zip(seq, seeds)]
    res = train_many(many, x, epochs=3, batch_size=10, lr=1e-2, seeds=seeds, regularizer=reg, x_val=xv,
                     progress=False)
    assert isinstance(res, MultiTrainResult) and res.models[0] is many[0]
    for m, s, r, h in zip(many, seq, ref, res.histories):
        assert _max_diff(m, s) < ATOL
        assert h.keys() == r.history.keys()
        for key in h:
            assert h[key] == pytest.approx(r.history[key], rel=1e-5, abs=1e-7)
    assert res.epochs_run == 3 and res.images_per_second > 0


def test_per_model_learning_rates():
    x = _x()
    lrs = [1e-3, 1e-2]
    many = _models(2)
    seq = [copy.deepcopy(m) for m in many]
    for m, lr, s in zip(seq, lrs, [0, 1]):
        train(m, x, epochs=2, batch_size=10, lr=lr, seed=s, progress=False)
    train_many(many, x, epochs=2, batch_size=10, lr=lrs, progress=False)
    assert _max_diff(many[0], seq[0]) < ATOL and _max_diff(many[1], seq[1]) < ATOL
    assert _max_diff(many[0], many[1]) > 1e-3  # different inits and lrs really train apart


def test_models_are_independent_after_unstacking():
    many = _models(2)
    train_many(many, _x(), epochs=1, batch_size=20, progress=False)
    w0 = many[0].encoder[0].weight.detach().clone()
    with torch.no_grad():
        many[1].encoder[0].weight.add_(1.0)
    assert torch.equal(many[0].encoder[0].weight, w0)
    assert many[0].encoder[0].weight.is_leaf and isinstance(many[0].encoder[0].weight, nn.Parameter)


def test_batchnorm_in_train_mode_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="BatchNorm2d.*running statistics.*vmap"):
        train_many(_models(2, norm=nn.BatchNorm2d(3)), _x(), epochs=1, batch_size=20, progress=False)


def test_batchnorm_without_running_stats_is_fine():
    """The fix the error message suggests works: BN on batch statistics only."""
    many = _models(2, norm=nn.BatchNorm2d(3))
    for m in many:
        torch.func.replace_all_batch_norm_modules_(m)
    res = train_many(many, _x(), epochs=1, batch_size=20, progress=False)
    assert len(res.histories) == 2 and all(h["train_loss"][0] > 0 for h in res.histories)


def test_unvmappable_loss_gets_a_clear_error():
    def item_loss(model, xb, yb):  # .item() inside vmap is not allowed
        loss = ((model(xb) - yb) ** 2).mean()
        return loss * (1.0 if loss.item() > 0 else 0.0)

    with pytest.raises(ValueError, match="cannot be run under torch.func.vmap"):
        train_many(_models(2), _x(), epochs=1, batch_size=20, loss_fn=item_loss, progress=False)


def test_frozen_parameters_stay_frozen_and_rng_is_untouched():
    many = _models(2)
    for m in many:
        m.decoder[-1].weight.requires_grad_(False)
    frozen = [m.decoder[-1].weight.detach().clone() for m in many]
    trainable = [m.decoder[0].weight.detach().clone() for m in many]
    state = torch.get_rng_state()
    train_many(many, _x(), epochs=1, batch_size=20, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    for m, w, t in zip(many, frozen, trainable):
        assert torch.equal(m.decoder[-1].weight, w)
        assert not torch.equal(m.decoder[0].weight, t)


def test_argument_errors():
    x = _x()
    with pytest.raises(ValueError, match="seeds"):
        train_many(_models(2), x, epochs=1, batch_size=10, seeds=[1], progress=False)
    with pytest.raises(ValueError, match="same parameters"):
        odd = _models(1)[0]
        odd.encoder[-1] = nn.Linear(48, 2)
        train_many([_models(1)[0], odd], x, epochs=1, batch_size=10, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train_many(_models(2), x, epochs=1, batch_size=10, lr=[1e-3], progress=False)
    with pytest.raises(ValueError, match="empty"):
        train_many([], x, epochs=1, batch_size=10, progress=False)


# ----------------------------------------------------------------------------- issue 11: reliability

def test_a_frozen_eval_mode_batchnorm_part_stays_in_eval_and_is_vmappable():
    """As train(): modes are the caller's. A BatchNorm the caller froze in eval mode runs in eval
    mode (so vmap can run it), its statistics stay, and the models' flags are unchanged after."""
    many = _models(2, norm=nn.BatchNorm2d(3))
    for m in many:
        with torch.no_grad():
            m.encoder[1].running_mean.uniform_(-0.5, 0.5)
        m.encoder[1].eval()
    stats = [m.encoder[1].running_mean.clone() for m in many]
    modes = [{n: mod.training for n, mod in m.named_modules()} for m in many]
    res = train_many(many, _x(), epochs=2, batch_size=20, x_val=_x(10, seed=1), progress=False)
    assert len(res.histories[0]["val_loss"]) == 2
    for m, s, md in zip(many, stats, modes):
        assert torch.equal(m.encoder[1].running_mean, s)
        assert {n: mod.training for n, mod in m.named_modules()} == md


def test_models_with_different_modes_are_refused():
    many = _models(2)
    many[1].decoder.eval()
    with pytest.raises(ValueError, match="other train/eval modes"):
        train_many(many, _x(), epochs=1, batch_size=20, progress=False)


def test_nonfinite_gradient_names_the_model_and_parameter():
    many = _models(3)
    before = [copy.deepcopy(m.state_dict()) for m in many]

    def bad_grad(model, xb, yb):
        w = model.decoder[-1].weight
        return ((model(xb) - yb) ** 2).mean() + torch.sqrt(((w - w.detach()) ** 2).sum())

    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 1.*'decoder\.3\.weight' of models \[0, 1, 2\]"):
        train_many(many, _x(), epochs=1, batch_size=20, loss_fn=bad_grad, progress=False)
    for m, sd in zip(many, before):
        assert all(torch.equal(v, sd[k]) for k, v in m.state_dict().items())


def test_the_callers_models_are_not_moved():
    """The stacked copies train on ``device``; the models themselves never move (their weights are
    copied back), so a CUDA run leaves CPU models on the CPU. 'cpu:0' stands in for another device."""

    class Recorded(ConvAE):
        moves: list = []

        def to(self, *args, **kwargs):
            Recorded.moves.append((id(self), torch._C._nn._parse_to(*args, **kwargs)[0]))
            return super().to(*args, **kwargs)

    many = []
    for i in range(2):
        torch.manual_seed(100 + i)
        many.append(Recorded())
    ref = _models(2)
    train_many(many, _x(), epochs=1, batch_size=20, device="cpu:0", progress=False)
    train_many(ref, _x(), epochs=1, batch_size=20, progress=False)
    assert [dev for who, dev in Recorded.moves if who in {id(m) for m in many}] == []  # (not the private copies)
    assert all(_max_diff(a, b) == 0 for a, b in zip(many, ref))
