"""Weight extraction (aeprobe.weights): records, numpy conversion, filters for plotting."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from aeprobe.weights import LayerRecord, filters_for_plotting, layer_weights


@pytest.fixture
def model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv1d(4, 2, 5, bias=False)),
        nn.Linear(16, 3),
        nn.BatchNorm1d(3),
        nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, output_padding=1, groups=2),
    )


def test_records_geometry_and_order(model):
    recs = layer_weights(model)
    assert [(r.name, r.kind) for r in recs] == [
        ("0.0", "conv"), ("0.2", "conv"), ("1", "linear"), ("3", "conv_transpose")
    ]  # BatchNorm has a weight but is not a conv/linear layer
    c, c1, lin, ct = recs
    assert (c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) == (1, 4, (3, 3), (2, 2), (1, 1))
    assert c1.bias is None and c1.kernel_size == (5,) and c1.module_type == "Conv1d"
    assert (lin.in_channels, lin.out_channels, lin.stride, lin.kernel_size) == (16, 3, None, None)
    assert (ct.groups, ct.output_padding, tuple(ct.weight.shape)) == (2, (1, 1), (4, 3, 4, 4))


def test_records_reference_the_parameters_unless_cloned(model):
    rec = layer_weights(model)[0]
    assert rec.weight.data_ptr() == model[0][0].weight.data_ptr() and rec.weight.grad_fn is None
    assert not rec.weight.requires_grad
    cloned = layer_weights(model, clone=True)[0]
    assert cloned.weight.data_ptr() != model[0][0].weight.data_ptr()
    arr = rec.to_numpy()
    assert isinstance(arr, LayerRecord) and isinstance(arr.weight, np.ndarray)
    arr.weight[...] = 0  # a copy: the model is untouched
    assert model[0][0].weight.abs().sum() > 0
    np.testing.assert_array_equal(rec.to_numpy().bias, model[0][0].bias.detach().numpy())


def test_oriented_transposed_weight_matches_equivalent_convolution(model):
    """A stride-1 transposed conv equals a conv with the kernel flipped spatially and in/out swapped
    (per group), padding k-1-p. oriented_weight() must produce that [out, in/g, k, k] kernel: same
    ops up to summation order, so float32 rounding only (atol 1e-5)."""
    torch.manual_seed(1)
    ct = nn.ConvTranspose2d(4, 6, 3, stride=1, padding=0, groups=2, bias=False)
    rec = layer_weights(ct)[0]
    w = torch.from_numpy(rec.oriented_weight())
    assert w.shape == (6, 2, 3, 3)
    x = torch.randn(2, 4, 5, 5)
    ref = ct(x).detach()
    out = F.conv2d(x, w.flip(-1, -2), padding=2, groups=2)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_filter_images(model):
    c, c1, lin, ct = layer_weights(model)
    imgs = c.filter_images()
    assert imgs.shape == (4, 3, 3)
    assert np.allclose(imgs.min(axis=(1, 2)), 0) and np.allclose(imgs.max(axis=(1, 2)), 1)
    raw = filters_for_plotting(c, normalize=None)
    np.testing.assert_allclose(raw, model[0][0].weight.detach().numpy()[:, 0], rtol=1e-6)
    sym = filters_for_plotting(c, normalize="symmetric")
    np.testing.assert_allclose(sym, raw / np.abs(raw).max() / 2 + 0.5)
    assert c1.filter_images().shape == (8, 1, 5)
    assert lin.filter_images().shape == (3, 4, 4)  # 16 inputs -> 4x4 images
    assert lin.filter_images(image_shape=(2, 8)).shape == (3, 2, 8)
    with pytest.raises(ValueError, match="image_shape"):
        lin.filter_images(image_shape=(3, 5))
    assert ct.filter_images(normalize="global").shape == (6 * 2, 4, 4)
    flat = LayerRecord("c", "conv", "Conv2d", torch.zeros(1, 1, 2, 2), None, 1, 1, (2, 2), (1, 1), 0)
    assert np.all(flat.filter_images() == 0.5)  # constant filters are drawn mid-grey, not NaN
    with pytest.raises(ValueError, match="2-D"):
        layer_weights(nn.Conv3d(1, 1, 2))[0].filter_images()
    with pytest.raises(ValueError, match="normalize"):
        c.filter_images(normalize="minmax")
