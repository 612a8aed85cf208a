"""aeprobe.losses.FeatureLoss and aeprobe.pretrained: user-supplied weights files (a small
random network saved to a tmp file stands in for VGG/ResNet weights; nothing is downloaded)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from aeprobe.ablation import freeze
from aeprobe.checkpoint import CheckpointError
from aeprobe.data import digits
from aeprobe.losses import FeatureLoss, load_feature_net
from aeprobe.models.conv import ConvAE
from aeprobe.pretrained import discriminative_optimizer, load_encoder, read_state_dict
from aeprobe.state import assert_unchanged, snapshot
from aeprobe.train import train


def feature_arch() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1),
                         nn.BatchNorm2d(6), nn.ReLU())


@pytest.fixture()
def weights_files(tmp_path):
    torch.manual_seed(0)
    net = feature_arch()
    with torch.no_grad():  # non-trivial BN statistics, so a wrong load would show
        net[3].running_mean.uniform_(-0.5, 0.5)
        net[3].running_var.uniform_(0.5, 2.0)
    st = tmp_path / "features.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    pt = tmp_path / "features.pt"
    torch.save({"state_dict": net.state_dict()}, pt)
    return net, st, pt


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_load_feature_net_loads_weights_frozen_in_eval(weights_files, fmt):
    net, st, pt = weights_files
    loaded = load_feature_net(feature_arch, st if fmt == "safetensors" else pt)
    for (k, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())


def test_load_feature_net_refuses_misfitting_or_unsafe_files(weights_files, tmp_path):
    _, st, _ = weights_files
    with pytest.raises(CheckpointError, match="do not fit|missing"):
        load_feature_net(lambda: nn.Sequential(nn.Conv2d(1, 4, 3)), st)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    torch.save({"w": Evil()}, bad)
    with pytest.raises(CheckpointError, match="refusing"):
        load_feature_net(feature_arch, bad)
    with pytest.raises(CheckpointError, match="prefix"):
        read_state_dict(st, prefix="encoder.")


def test_feature_loss_equals_its_formula_and_trains_only_through_the_prediction(weights_files):
    _, st, _ = weights_files
    net = load_feature_net(feature_arch, st)
    before = snapshot(net)
    fl = FeatureLoss(net, ["1", "4"], weights=[2.0, 0.5], pixel_weight=0.3)
    torch.manual_seed(1)
    target = torch.rand(5, 1, 8, 8)
    pred = torch.rand(5, 1, 8, 8, requires_grad=True)
    loss, logs = fl.terms(pred, target)
    f1 = lambda t: net[:2](t)  # noqa: E731
    f4 = lambda t: net(t)  # noqa: E731
    ref = (0.3 * ((pred - target) ** 2).mean() + 2.0 * ((f1(pred) - f1(target)) ** 2).mean()
           + 0.5 * ((f4(pred) - f4(target)) ** 2).mean())
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
    assert set(logs) == {"pixel", "feat:1", "feat:4"}
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    assert_unchanged(net, before)  # hooks removed, BN statistics untouched, still eval
    assert float(fl(target, target)) == 0.0
    with pytest.raises(KeyError, match="no module named 'layer4'"):
        FeatureLoss(net, ["layer4"])


def test_feature_loss_trains_an_autoencoder(weights_files):
    _, st, _ = weights_files
    fl = FeatureLoss(load_feature_net(feature_arch, st), ["2"], pixel_weight=1.0)
    torch.manual_seed(2)
    x = digits()[0][:64]
    ae = ConvAE(channels=(4, 8), latent_channels=4)
    with torch.no_grad():
        before = float(fl(ae(x), x))
    res = train(ae, x, epochs=15, batch_size=16, lr=3e-3, loss_fn=fl.loss_fn, progress=False)
    with torch.no_grad():
        after = float(fl(ae(x), x))
    assert "feat:2" in res.history and "pixel" in res.history
    assert after < 0.8 * before  # 60 Adam steps; measured -44% to -58% over 5 seeds


def test_pretrained_encoder_from_a_whole_ae_file_and_freezing(tmp_path):
    torch.manual_seed(3)
    donor = ConvAE(channels=(4, 8), latent_channels=4)
    path = tmp_path / "donor.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    ae = ConvAE(channels=(4, 8), latent_channels=4, upsample="pixel_shuffle")
    dec_before = {k: v.clone() for k, v in ae.decoder.state_dict().items()}
    enc = load_encoder(ae, path, prefix="encoder.")
    assert enc is ae.encoder
    for k, v in donor.encoder.state_dict().items():
        assert torch.equal(ae.encoder.state_dict()[k], v)
    for k, v in dec_before.items():
        assert torch.equal(ae.decoder.state_dict()[k], v)
    # temporary freeze (aeprobe.ablation.freeze): training changes the decoder only
    x = torch.rand(32, 1, 8, 8)
    enc_w = {k: v.clone() for k, v in ae.encoder.state_dict().items()}
    with freeze(ae, "encoder"):
        train(ae, x, epochs=2, batch_size=16, progress=False)
    assert all(torch.equal(ae.encoder.state_dict()[k], v) for k, v in enc_w.items())
    assert any(not torch.equal(ae.decoder.state_dict()[k], v) for k, v in dec_before.items())
    assert all(p.requires_grad for p in ae.encoder.parameters())  # restored after the block
    # permanent freeze
    ae2 = ConvAE(channels=(4, 8), latent_channels=4)
    load_encoder(ae2, path, prefix="encoder.", freeze=True)
    assert not any(p.requires_grad for p in ae2.encoder.parameters())
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_encoder(ConvAE(channels=(4, 16)), path, prefix="encoder.")


def test_discriminative_optimizer_gives_each_part_its_learning_rate():
    ae = ConvAE(channels=(4, 8), latent_channels=4)
    make = discriminative_optimizer(ae, {"encoder": 1e-4, "decoder": 1e-3})
    opt = make([p for p in ae.parameters()])
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == [1e-4, 1e-3]
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_lr[1e-4] == {id(p) for p in ae.encoder.parameters()}
    res = train(ae, torch.rand(16, 1, 8, 8), epochs=1, batch_size=8, optimizer=make, progress=False)
    assert len(res.history["train_loss"]) == 1
    with pytest.raises(KeyError):
        discriminative_optimizer(ae, {"encodr": 1e-4})
    with pytest.raises(ValueError, match="default_lr"):
        discriminative_optimizer(ae, {"encoder": 1e-4})(list(ae.parameters()))


def test_feature_loss_leaves_the_callers_network_as_it_was(weights_files):
    """No lasting freeze, mode change or move: the net passed in (here in train mode, trainable)
    is bit-identical with the same flags after building the loss, training through it and calling
    .train()/.eval() on the loss; no gradient reaches its parameters."""
    net = feature_arch()  # a plain module in train mode with trainable parameters
    before = snapshot(net)
    fl = FeatureLoss(net, ["1", "4"], pixel_weight=0.5)
    assert_unchanged(net, before)
    torch.manual_seed(4)
    x = torch.rand(6, 1, 8, 8)
    ae = ConvAE(channels=(4, 8), latent_channels=4)
    loss, _ = fl.loss_fn(ae, x, x)
    loss.backward()
    assert any(p.grad is not None for p in ae.parameters())
    assert all(p.grad is None for p in net.parameters())
    fl.eval()
    fl.train()
    assert_unchanged(net, before)  # modes, requires_grad, BN statistics, hooks


def test_feature_loss_runs_the_net_in_eval_mode_and_refuses_to_move_it(weights_files):
    net = feature_arch()
    modes = []
    net[3].register_forward_hook(lambda m, i, o: modes.append(m.training))
    fl = FeatureLoss(net, ["4"])
    fl(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    assert modes == [False, False] and net.training  # both passes in eval, the caller's mode kept
    with pytest.raises(ValueError, match="feature net is on cpu but the images are on meta"):
        fl(torch.rand(2, 1, 8, 8, device="meta"), torch.rand(2, 1, 8, 8, device="meta"))
    assert all(p.device.type == "cpu" for p in net.parameters())
