"""aeprobe.train: determinism, equivalence with a bare Adam loop, logging, resume, errors."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from aeprobe.regularizers import psi1
from aeprobe.train import TrainResult, history_path, mse_loss, train


class ConvAE(nn.Module):
    """A 16x16 miniature of the Newson disk AE (stride-2 convs, upsample + conv decoder)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 4, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(4, 2, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(32, 1),
        )
        self.decoder = nn.Sequential(
            nn.Linear(1, 32), nn.Unflatten(1, (2, 4, 4)), nn.Upsample(scale_factor=2), nn.Conv2d(2, 4, 3, 1, 1),
            nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2), nn.Conv2d(4, 1, 3, 1, 1),
        )

    def forward(self, x):
        return self.decoder(self.encoder(x))


class MLPAE(nn.Module):
    def __init__(self, n: int = 8, d: int = 2):
        super().__init__()
        self.encoder = nn.Linear(n, d)
        self.decoder = nn.Linear(d, n)

    def forward(self, x):
        return self.decoder(self.encoder(x))


def _data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g)


def _model(cls=ConvAE, seed=1):
    torch.manual_seed(seed)
    return cls()


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def _identical(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(_params(a), _params(b)))


def _denoise(model, xb, yb):
    """Stochastic loss (global RNG) — makes resume tests sensitive to the restored RNG state."""
    noisy = xb + 0.1 * torch.randn_like(xb)
    out = model(noisy)
    return torch.mean((out - yb) ** 2), {"out_mean": out.mean().item()}


def test_same_seed_is_bit_identical_and_seed_matters():
    x = _data()
    a, b, c = _model(), _model(), _model()
    ra = train(a, x, epochs=2, batch_size=16, seed=3, progress=False, loss_fn=_denoise)
    rb = train(b, x, epochs=2, batch_size=16, seed=3, progress=False, loss_fn=_denoise)
    train(c, x, epochs=2, batch_size=16, seed=4, progress=False, loss_fn=_denoise)
    assert _identical(a, b) and ra.history == rb.history
    assert not _identical(a, c)


def test_caller_rng_state_is_untouched():
    x = _data()
    state = torch.get_rng_state()
    train(_model(), x, epochs=1, batch_size=16, progress=False, loss_fn=_denoise)
    assert torch.equal(torch.get_rng_state(), state)


def test_equals_a_hand_written_adam_loop_bit_for_bit():
    """The trainer adds nothing hidden: same permutation + Adam + MSE -> identical weights."""
    x = _data()
    ours, bare = _model(), _model()
    res = train(ours, x, epochs=3, batch_size=16, lr=2e-3, seed=5, progress=False)

    opt = torch.optim.Adam(bare.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(5)
    losses = []
    for _ in range(3):
        perm = torch.randperm(len(x), generator=gen)
        tot = 0.0
        for s in range(0, len(x), 16):
            xb = x[perm[s:s + 16]]
            loss = ((bare(xb) - xb) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(xb)
        losses.append(tot / len(x))
    assert _identical(ours, bare)
    # epoch means are accumulated in float32 on the device vs float64 here: rel. 1e-6 is a few ulps
    assert res.history["train_loss"] == pytest.approx(losses, rel=1e-6)


def test_loss_decreases_and_result_fields():
    torch.manual_seed(0)
    z = torch.randn(200, 2)
    x = z @ torch.randn(2, 8)  # rank-2 data: a linear AE with d=2 can reach ~0 loss
    res = train(_model(MLPAE), x, epochs=30, batch_size=50, lr=1e-2, x_val=x[:40], progress=False)
    assert isinstance(res, TrainResult)
    assert res.epochs_run == 30 and res.start_epoch == 0 and len(res.history["train_loss"]) == 30
    assert res.seconds > 0 and res.images_per_second > 0
    # generous factor: Adam at lr 1e-2 drives this exactly solvable problem down by >10x in 30 epochs
    assert res.history["train_loss"][-1] < res.history["train_loss"][0] / 10
    assert set(res.history) == {"train_loss", "val_loss"}


def test_logged_losses_are_what_the_model_gives():
    x, xv = _data(40), _data(20, seed=1)
    model = _model()
    with torch.no_grad():
        initial = mse_loss(model, x, x).item()
    # one batch per epoch: epoch-1 train loss is the loss of the initial weights (before the step)
    res = train(model, x, epochs=2, batch_size=40, x_val=xv, progress=False)
    with torch.no_grad():
        final_val = mse_loss(model, xv, xv).item()
    assert res.history["train_loss"][0] == pytest.approx(initial, rel=1e-6)  # batch order only reassociates
    assert res.history["val_loss"][-1] == pytest.approx(final_val, rel=1e-6)


def test_extra_logged_values_and_regulariser_split():
    x = _data(40)
    res = train(_model(), x, epochs=2, batch_size=20, loss_fn=_denoise, regularizer=psi1(1e-4),
                x_val=x[:10], progress=False)
    assert set(res.history) == {"train_loss", "data_loss", "reg_loss", "out_mean", "val_loss", "val_out_mean"}
    for e in range(2):
        h = res.history
        assert h["train_loss"][e] == pytest.approx(h["data_loss"][e] + h["reg_loss"][e], rel=1e-5)


def test_explicit_targets():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = 2 * x
    model = _model(MLPAE)
    model.encoder = nn.Linear(8, 8)
    model.decoder = nn.Linear(8, 8)
    res = train(model, x, y, epochs=40, batch_size=16, lr=1e-2, progress=False)
    assert res.history["train_loss"][-1] < 0.05 * res.history["train_loss"][0]


@pytest.mark.parametrize("every,kill_after", [(1, 2), (2, 3)])
def test_resume_after_kill_is_bit_identical(tmp_path, every, kill_after):
    """Killed after epoch ``kill_after`` (checkpoint every ``every`` epochs), restarted with the
    same arguments: final weights and full history equal the uninterrupted run exactly."""
    x, xv = _data(), _data(20, seed=2)
    kw = dict(epochs=4, batch_size=16, seed=7, loss_fn=_denoise, regularizer=psi1(1e-4), x_val=xv,
              progress=False, checkpoint_every=every)

    full = _model()
    ref = train(full, x, checkpoint=tmp_path / "full.safetensors", **kw)

    def kill(epoch, history, model):
        if epoch == kill_after:
            raise KeyboardInterrupt("simulated kill")

    victim = _model()
    ck = tmp_path / "killed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train(victim, x, checkpoint=ck, on_epoch_end=kill, **kw)
    restarted = _model(seed=42)  # a fresh process builds a fresh (differently initialised) model
    res = train(restarted, x, checkpoint=ck, **kw)

    expected_start = (kill_after // every) * every
    assert res.start_epoch == expected_start and res.epochs_run == 4 - expected_start
    assert _identical(restarted, full)
    assert res.history == ref.history
    saved = json.loads(history_path(ck).read_text())
    assert saved["epoch"] == 4 and saved["history"] == ref.history


def test_resume_with_other_config_or_resume_false(tmp_path):
    x = _data(40)
    ck = tmp_path / "run.safetensors"
    train(_model(), x, epochs=1, batch_size=20, checkpoint=ck, progress=False)
    with pytest.raises(ValueError, match="different configuration.*batch_size"):
        train(_model(), x, epochs=2, batch_size=10, checkpoint=ck, progress=False)
    fresh, over = _model(), _model()
    train(fresh, x, epochs=2, batch_size=20, progress=False)
    res = train(over, x, epochs=2, batch_size=20, checkpoint=ck, resume=False, progress=False)
    assert res.start_epoch == 0 and _identical(fresh, over)
    # extending a finished run continues it
    more = train(_model(), x, epochs=3, batch_size=20, checkpoint=ck, progress=False)
    assert more.start_epoch == 2 and len(more.history["train_loss"]) == 3


def test_on_epoch_end_can_stop_early():
    res = train(_model(), _data(40), epochs=5, batch_size=20, progress=False,
                on_epoch_end=lambda epoch, history, model: epoch == 2)
    assert res.epochs_run == 2 and res.stopped_early and len(res.history["train_loss"]) == 2


def test_nan_loss_names_epoch_and_batch_and_keeps_weights_finite():
    calls = {"n": 0}

    def flaky(model, xb, yb):
        calls["n"] += 1
        loss = mse_loss(model, xb, yb)
        return loss * float("nan") if calls["n"] == 6 else loss  # 3 batches/epoch -> epoch 2, batch 3

    model = _model()
    with pytest.raises(FloatingPointError, match="epoch 2, batch 3"):
        train(model, _data(), epochs=3, batch_size=20, loss_fn=flaky, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_channels_last_gives_the_same_curve():
    x = _data()
    a, b = _model(), _model()
    ra = train(a, x, epochs=3, batch_size=20, progress=False)
    rb = train(b, x, epochs=3, batch_size=20, progress=False, channels_last=True)
    # NHWC convs sum in another order: float32 differences ~1e-7 relative per op; after
    # 9 Adam steps the loss agrees to well within 1e-4 relative
    assert rb.history["train_loss"] == pytest.approx(ra.history["train_loss"], rel=1e-4)
    assert next(b.parameters()).is_contiguous(memory_format=torch.channels_last)


def test_channels_last_batches_for_multichannel_inputs():
    """With C > 1, NCHW and NHWC differ: every batch the loss sees must be channels_last."""
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1))

    def layout_loss(m, xb, yb):
        nhwc = xb.is_contiguous(memory_format=torch.channels_last) and yb.is_contiguous(
            memory_format=torch.channels_last)
        return mse_loss(m, xb, yb), {"nhwc": float(nhwc)}

    x = torch.rand(12, 3, 6, 6)
    res = train(model, x, epochs=2, batch_size=5, loss_fn=layout_loss, channels_last=True, progress=False)
    assert res.history["nhwc"] == [1.0, 1.0]
    res = train(model, x, epochs=1, batch_size=5, loss_fn=layout_loss, progress=False)
    assert res.history["nhwc"] == [0.0]


def test_optimizer_choices():
    x = _data(40)
    opt_calls = []

    def factory(params):
        opt_calls.append(1)
        return torch.optim.SGD(params, lr=0.1, momentum=0.9)

    res = train(_model(), x, epochs=1, batch_size=20, optimizer=factory, progress=False)
    assert opt_calls == [1] and len(res.history["train_loss"]) == 1
    train(_model(), x, epochs=1, batch_size=20, optimizer="sgd", progress=False)
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(_model(), x, epochs=1, batch_size=20, optimizer="lbfgs!", progress=False)


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        (dict(y=torch.rand(59, 1, 16, 16)), ValueError, "y has 59 samples"),
        (dict(x_val=torch.rand(5, 1, 8, 8)), ValueError, "x_val samples have shape"),
        (dict(y_val=torch.rand(5, 1, 16, 16)), ValueError, "y_val given without x_val"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(epochs=-1), ValueError, "epochs"),
        (dict(epochs=1.5), TypeError, "epochs"),
        (dict(lr=float("nan")), ValueError, "lr"),
        (dict(y=torch.rand(60, 1, 8, 8)), ValueError, "output shape"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    args = dict(epochs=1, batch_size=20, progress=False)
    args.update(kwargs)
    y = args.pop("y", None)
    with pytest.raises(err, match=match):
        train(_model(), _data(), y, **args)


def test_bad_data():
    x = _data()
    x[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        train(_model(), x, epochs=1, batch_size=20, progress=False)
    with pytest.raises(TypeError, match="torch.Tensor"):
        train(_model(), x.numpy(), epochs=1, batch_size=20, progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        train(_model(), x[:0], epochs=1, batch_size=20, progress=False)
    with pytest.raises(ValueError, match="scalar"):
        train(_model(), _data(), epochs=1, batch_size=20, progress=False,
              loss_fn=lambda m, xb, yb: (m(xb) - yb) ** 2)


def test_model_is_not_copied():
    model = _model()
    before = _params(model)
    train(model, _data(20), epochs=1, batch_size=10, progress=False)
    assert not all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


# ----------------------------------------------------------------------------- issue 11: reliability

class FrozenBNAE(nn.Module):
    """A 'pretrained' encoder with BatchNorm (frozen by the caller) and a decoder that learns."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3))
        self.decoder = nn.Sequential(nn.Linear(3, 6), nn.Dropout(0.5), nn.Linear(6, 8))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def _modes(model):
    return {name: m.training for name, m in model.named_modules()}


def test_frozen_eval_mode_batchnorm_stays_in_eval_through_train():
    """The documented recipe: model.train(); encoder.eval(); freeze its parameters. Through every
    epoch (with validation in between) and after train returns, the encoder is in eval mode, its
    BatchNorm statistics do not move, and the decoder trains in train mode."""
    from aeprobe.ablation import freeze

    torch.manual_seed(0)
    model = FrozenBNAE()
    with torch.no_grad():
        model.encoder[1].running_mean.uniform_(-1, 1)
        model.encoder[1].running_var.uniform_(0.5, 2)
    model.train()
    model.encoder.eval()
    before = _modes(model)
    stats = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    seen = []  # (encoder BN mode, decoder dropout mode) at every forward in a training step
    model.encoder[1].register_forward_hook(
        lambda m, i, o: seen.append((m.training, model.decoder[1].training)) if torch.is_grad_enabled() else None)
    x = torch.randn(64, 8)
    with freeze(model, "encoder"):
        res = train(model, x, epochs=3, batch_size=16, x_val=x[:16], progress=False)
    assert len(seen) == 3 * 4 and set(seen) == {(False, True)}
    assert _modes(model) == before
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, stats[k]), k  # running statistics and weights untouched
    assert len(res.history["val_loss"]) == 3


def test_a_model_entirely_in_eval_mode_is_trained_in_train_mode_and_given_back_in_eval():
    """modes='auto' (default): nothing chosen per part -> train mode for training, as a plain loop
    after model.train(); modes='keep' trains it in eval mode. Both give the caller's modes back."""
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    for modes, expected in (("auto", True), ("keep", False), ("train", True)):
        model = FrozenBNAE().eval()
        seen = set()
        model.decoder[1].register_forward_hook(lambda m, i, o: seen.add(m.training) if torch.is_grad_enabled() else None)
        train(model, x, epochs=1, batch_size=16, progress=False, modes=modes)
        assert seen == {expected}, modes
        assert not any(_modes(model).values()), modes
    with pytest.raises(ValueError, match="modes"):
        train(FrozenBNAE(), x, epochs=1, batch_size=16, progress=False, modes="frozen")


def test_modes_are_restored_when_training_fails():
    model = FrozenBNAE()
    model.encoder.eval()
    before = _modes(model)

    def boom(m, xb, yb):
        raise RuntimeError("loss failed")

    with pytest.raises(RuntimeError, match="loss failed"):
        train(model, torch.randn(32, 8), epochs=1, batch_size=16, loss_fn=boom, progress=False)
    assert _modes(model) == before


class _RecordsMoves(MLPAE):
    """Records every device Module.to is asked for (and really moves)."""

    def __init__(self):
        super().__init__()
        self.moves = []

    def to(self, *args, **kwargs):
        dev = torch._C._nn._parse_to(*args, **kwargs)[0]
        if dev is not None:
            self.moves.append(dev)
        return super().to(*args, **kwargs)


@pytest.mark.parametrize("fail", [False, True])
def test_the_model_goes_back_to_the_callers_device(fail):
    """Trained on another device than its own, the model is moved there and back, also when
    training raises. (CPU-only CI: 'cpu:0' is a device spec other than the model's 'cpu', so the
    move-and-restore path runs for real; on a GPU machine the same code moves to CUDA and back.)"""
    torch.manual_seed(0)
    model = _RecordsMoves()
    x = torch.randn(32, 8)

    def loss(m, xb, yb):
        if fail:
            raise RuntimeError("loss failed")
        return mse_loss(m, xb, yb)

    if fail:
        with pytest.raises(RuntimeError):
            train(model, x, epochs=1, batch_size=16, device="cpu:0", loss_fn=loss, progress=False)
    else:
        train(model, x, epochs=1, batch_size=16, device="cpu:0", loss_fn=loss, progress=False)
    assert model.moves[0] == torch.device("cpu", 0) and model.moves[-1] == torch.device("cpu")
    # already where it trains: not moved at all
    model.moves.clear()
    train(model, x, epochs=1, batch_size=16, device="cpu", progress=False)
    assert model.moves == [torch.device("cpu")]


def test_refused_resume_leaves_the_model_bit_identical(tmp_path):
    """A checkpoint of another run configuration is refused before anything is loaded."""
    from aeprobe.state import assert_unchanged, snapshot

    x = _data(40)
    ck = tmp_path / "run.safetensors"
    train(_model(), x, epochs=1, batch_size=20, checkpoint=ck, progress=False)
    model = _model(seed=9)
    before = snapshot(model)
    with pytest.raises(ValueError, match="different configuration"):
        train(model, x, epochs=2, batch_size=10, checkpoint=ck, progress=False)
    assert_unchanged(model, before)


def test_nonfinite_gradient_names_epoch_batch_and_parameter_and_keeps_weights():
    """A finite loss whose gradient is NaN (sqrt at 0) in one parameter: training stops before the
    step, naming where, and the weights are those the failing batch saw."""
    calls = {"n": 0}
    at_failure = {}

    def bad_grad(model, xb, yb):
        calls["n"] += 1
        loss = mse_loss(model, xb, yb)
        if calls["n"] == 6:  # 3 batches per epoch -> epoch 2, batch 3
            at_failure.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            w = model.decoder[-1].weight
            loss = loss + torch.sqrt(((w - w.detach()) ** 2).sum())  # value 0, gradient 0/0 = NaN
        return loss

    model = _model()
    with pytest.raises(FloatingPointError, match=r"gradient at epoch 2, batch 3.*'decoder\.6\.weight'"):
        train(model, _data(), epochs=3, batch_size=20, loss_fn=bad_grad, progress=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, at_failure[k]), k


def test_history_copy_and_checkpoint_never_disagree_for_a_reader(tmp_path, monkeypatch):
    """Killed between the checkpoint and its JSON copy: read_history (from the checkpoint) matches
    the weights, and resuming rewrites the copy from the checkpoint before anything else."""
    import aeprobe.reporting as reporting
    from aeprobe.train import read_history

    x = _data(40)
    ck = tmp_path / "run.safetensors"
    kw = dict(epochs=2, batch_size=20, checkpoint=ck, progress=False)
    real = reporting.write_json

    def killed_at_epoch_2(path, data):
        if data.get("epoch") == 2:
            raise KeyboardInterrupt("killed between the two writes")
        return real(path, data)

    monkeypatch.setattr(reporting, "write_json", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(_model(), x, **kw)
    monkeypatch.setattr(reporting, "write_json", real)
    truth = read_history(ck)
    assert truth["epoch"] == 2 and len(truth["history"]["train_loss"]) == 2
    assert json.loads(history_path(ck).read_text())["epoch"] == 1  # the copy a kill left behind
    res = train(_model(), x, **kw)  # the run is complete: nothing to train, the copy is repaired
    assert res.epochs_run == 0
    copy = json.loads(history_path(ck).read_text())
    assert copy == {"epoch": 2, "config": truth["config"], "history": truth["history"]}
