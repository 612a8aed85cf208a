"""``attribute_code`` reads the model through the ``aeprobe.autoencoder`` view (needed by ``aeprobe inspect``).

Before, it took a module and called ``model.encode`` (first element of a tuple), so an encoder
returning an object (diffusers-like ``latent_dist.mean``) or a U-Net read with ``code_at=`` could
not be attributed. Now the attributed code is exactly ``view.encode(x)``, and a plain module is
read with the default view.
"""
from __future__ import annotations

import pytest
import torch

import aeprobe
from aeprobe.attribution import attribute_code
from aeprobe.state import assert_unchanged, snapshot
from autoencoders import LibraryAE, UNet, images


def test_a_view_attributes_the_code_it_picks():
    torch.manual_seed(0)
    lib = LibraryAE()
    x = images(4)
    plain = attribute_code(lib, x, unit=1, n_steps=32)  # the module alone: read with the default view
    view = aeprobe.autoencoder(lib)
    before = snapshot(lib)
    att = attribute_code(view, x, unit=1, n_steps=32)
    assert_unchanged(lib, before)
    with torch.no_grad():
        want = lib.encode(x).latent_dist.mean[:, 1]
    torch.testing.assert_close(att.value, want)
    # completeness of integrated gradients: the map sums to F(x) - F(0); the encoder is affine, so exactly
    torch.testing.assert_close(att.attributions.sum((1, 2, 3)), att.value - att.baseline_value, atol=1e-5, rtol=1e-4)
    assert att.code_shape == (4,)
    torch.testing.assert_close(plain.attributions, att.attributions)


def test_a_unet_read_with_code_at_and_layer_names_of_the_views_model():
    torch.manual_seed(0)
    view = aeprobe.autoencoder(UNet(), code_at="down2")
    x = images(3)
    att = attribute_code(view, x, unit=(2, 1, 1), n_steps=16)
    with torch.no_grad():
        want = view.model.down2(view.model.down1(x))[:, 2, 1, 1]
    torch.testing.assert_close(att.value, want)
    assert att.code_shape == (8, 4, 4)
    lc = attribute_code(view, x, unit=5, method="layer_conductance", layer="down1.0", n_steps=16)
    assert lc.layer == "down1.0" and lc.attributions.shape == (3, 4, 8, 8)
    # an explicit encoder= is resolved in the view's model, as for a plain module
    enc = attribute_code(view, x, unit=0, encoder="down1")
    assert enc.code_shape == (4, 8, 8)


def test_a_view_without_encode_is_refused_before_any_work():
    dec = torch.nn.Linear(4, 64)
    with pytest.raises(TypeError, match="attribute_code needs encode"):
        attribute_code(aeprobe.autoencoder(dec, decoder=dec), torch.randn(2, 4))
