"""aeprobe.schedules: progressive resizing trains one fully-convolutional model on growing sizes."""
from __future__ import annotations

import pytest
import torch

from aeprobe.data import digits
from aeprobe.models.conv import ConvAE
from aeprobe.models.zoo import build
from aeprobe.schedules import progressive_resize, resize_images
from aeprobe.train import mse_loss


def test_resize_images_area_is_block_mean_and_same_size_is_identity():
    x = torch.rand(3, 2, 8, 8)
    small = resize_images(x, 4)
    ref = x.reshape(3, 2, 4, 2, 4, 2).mean((3, 5))  # anti-aliased: mean of each 2x2 block
    torch.testing.assert_close(small, ref)
    assert resize_images(x, 8) is x
    assert resize_images(x, (16, 12)).shape == (3, 2, 16, 12)
    with pytest.raises(ValueError, match="N, C, H, W"):
        resize_images(torch.rand(8, 8), 4)


def test_progressive_resize_trains_each_size_on_resized_images(tmp_path):
    x, _ = digits(size=16)
    x = x[:128]
    torch.manual_seed(0)
    model = ConvAE(channels=(8, 8), latent_channels=4)
    seen_sizes = []

    def loss_fn(m, xb, yb):
        seen_sizes.append(tuple(xb.shape[-2:]))
        return mse_loss(m, xb, yb)

    with torch.no_grad():
        before = float(((model(x) - x) ** 2).mean())
    res = progressive_resize(model, x, sizes=[8, 16], epochs_per_size=[3, 2], batch_size=32, lr=3e-3,
                             loss_fn=loss_fn, progress=False, x_val=x[:32], checkpoint=tmp_path / "ae.safetensors")
    assert res.sizes == [8, 16] and res.epochs == [3, 2]
    assert [len(h["train_loss"]) for h in res.histories.values()] == [3, 2]
    assert set(res.histories) == {8, 16} and "val_loss" in res.histories[16]
    # 128 images / batch 32 = 4 steps per epoch (+ validation batches at the same size)
    assert seen_sizes.count((8, 8)) == 3 * 4 + 3 * 1 and seen_sizes.count((16, 16)) == 2 * 4 + 2 * 1
    assert seen_sizes.index((16, 16)) > len(seen_sizes) - 1 - seen_sizes[::-1].index((8, 8))  # 8 before 16
    assert res.seconds == pytest.approx(sum(r.seconds for r in res.results))
    assert (tmp_path / "ae_s8.safetensors").exists() and (tmp_path / "ae_s16.safetensors").exists()
    with torch.no_grad():
        after = float(((model(x) - x) ** 2).mean())
    assert after < 0.9 * before  # 20 Adam steps in all; measured 0.136 -> 0.103 (-24%)


def test_progressive_resize_rejects_models_and_schedules_that_cannot_work():
    x = torch.rand(16, 1, 8, 8)
    dense = build("vanilla", (1, 8, 8), 4)
    with pytest.raises(ValueError, match="fully-convolutional|output shape"):
        progressive_resize(dense, x, sizes=[4, 8], epochs_per_size=1, batch_size=8, progress=False)
    conv = ConvAE(channels=(4, 4))
    with pytest.raises(ValueError, match="divisible"):
        progressive_resize(conv, x, sizes=[6, 8], epochs_per_size=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="strictly increasing"):
        progressive_resize(conv, x, sizes=[8, 4], epochs_per_size=1, batch_size=8)
    with pytest.raises(ValueError, match="2 sizes"):
        progressive_resize(conv, x, sizes=[4, 8], epochs_per_size=[1, 2, 3], batch_size=8)
    with pytest.raises(TypeError, match="epochs_per_size"):
        progressive_resize(conv, x, sizes=[4, 8], epochs=3, batch_size=8)
