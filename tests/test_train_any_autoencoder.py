"""train's default loss reads tuple, dict and object outputs through the view, and takes a view."""
from __future__ import annotations

import torch

import aeprobe
from aeprobe.train import train
from autoencoders import DictAE, LibraryAE, TupleVAE, images, sequential_ae


def _fits(model_or_view, module, x, **kw) -> None:
    ae = aeprobe.autoencoder(model_or_view)
    before = float(ae.per_sample_mse(x).mean())
    res = train(model_or_view, x, epochs=60, batch_size=8, lr=3e-3, progress=False, **kw)
    after = float(ae.per_sample_mse(x).mean())
    assert len(res.history["train_loss"]) == 60
    # 60 epochs (240 Adam steps) at lr 3e-3 on 32 smooth 8x8 images: every model here at least halves its
    # initial error (measured factors: VAE 2.5, dict 6.6, library 10); a loss that read
    # the wrong tensor (mu, z) would not train the reconstruction at all
    assert after < 0.5 * before, (type(module).__name__, before, after)


def test_default_loss_on_tuple_dict_and_object_outputs():
    x = images(32)
    for make in (TupleVAE, DictAE, LibraryAE):
        torch.manual_seed(0)
        m = make()
        # the VAE trained in eval mode (modes="keep"): its forward then returns decode(mu), without
        # the sampling noise that would hide whether the loss read the right tensor
        _fits(m.eval(), m, x, modes="keep")


def test_train_takes_a_view_and_passes_it_to_loss_fn():
    torch.manual_seed(0)
    seq, x = sequential_ae(), images(32)
    ae = aeprobe.autoencoder(seq, code_at="2")
    seen = []

    def loss_fn(model, xb, yb):
        seen.append(model)
        return torch.mean((model.reconstruct(xb) - yb) ** 2)

    train(ae, x, epochs=1, batch_size=16, loss_fn=loss_fn, progress=False)
    assert seen and all(m is ae for m in seen)
    _fits(ae, seq, x)
