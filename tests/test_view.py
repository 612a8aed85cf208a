"""aeprobe.autoencoder: one view that reads any autoencoder, and says what it picked."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import aeprobe
from aeprobe.state import assert_unchanged, snapshot
from aeprobe.view import Autoencoder, autoencoder, pick
from autoencoders import (CODE, SHAPE, CallableOnlyAE, DictAE, LibraryAE, Out, TupleVAE, UNet, all_kinds, images,
                          sequential_ae, wrap)


def test_exported_at_top_level():
    assert aeprobe.autoencoder is autoencoder


# ----------------------------------------------------------------------------------------- default detection
def test_tuple_vae_reads_mu_and_recon():
    torch.manual_seed(0)
    vae, x = TupleVAE().eval(), images(5)
    ae = autoencoder(vae)
    mu, _ = vae.encode(x)
    assert torch.equal(ae.encode(x), mu)
    assert torch.equal(ae.reconstruct(x), vae(x)[0])
    assert torch.equal(ae(x), ae.reconstruct(x))
    assert torch.equal(ae.decode(mu), vae.decode(mu))
    text = repr(ae)
    assert "model.encode -> [0]" in text and "model(x) -> [0]" in text and "model.decode" in text


def test_dict_output_with_named_parts():
    torch.manual_seed(0)
    m, x = DictAE(), images(4)
    ae = autoencoder(m, encoder="enc", decoder="dec")
    assert torch.equal(ae.encode(x), m.enc(x))
    assert torch.equal(ae.reconstruct(x), m(x)["recon"])
    assert "['recon']" in repr(ae)
    assert set(ae.decoder_modules()) == {"dec"}


def test_sequential_by_names_and_by_code_at():
    torch.manual_seed(0)
    seq, x = sequential_ae(), images(4)
    by_names = autoencoder(seq, encoder=["0", "1", "2"], decoder=["3", "4"])
    by_code = autoencoder(seq, code_at="2")
    z = seq[2](seq[1](seq[0](x)))
    for ae in (by_names, by_code):
        assert torch.equal(ae.encode(x), z)
        assert torch.equal(ae.decode(z), seq(x))
        assert torch.equal(ae.reconstruct(x), seq(x))
    assert "children after the code: 3 -> 4" in repr(by_code)


def test_library_objects_distribution_mean_and_sample_attribute():
    torch.manual_seed(0)
    m, x = LibraryAE(), images(3)
    ae = autoencoder(m)
    assert torch.equal(ae.encode(x), m.encode(x).latent_dist.mean)
    assert torch.equal(ae.decode(ae.encode(x)), m.decode(m.encode(x).latent_dist.mean).sample)
    assert torch.equal(ae(x), m(x).sample)
    assert ".latent_dist.mean" in repr(ae) and ".sample" in repr(ae)


def test_callables_and_output_key():
    torch.manual_seed(0)
    m, x = CallableOnlyAE(), images(3)
    ae = autoencoder(m, encode=m.embed, decode=m.generate, output="x_hat")
    assert torch.equal(ae.encode(x), m.embed(x))
    assert torch.equal(ae(x), m(x)["x_hat"])
    assert "encode=CallableOnlyAE.embed" in repr(ae)
    # without output= the dict has one known key (x_hat) and is read by default too
    assert torch.equal(autoencoder(m, encode=m.embed)(x), m(x)["x_hat"])


def test_distribution_code():
    class NormalEnc(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 2 * CODE)
            self.decoder = nn.Linear(CODE, 64)

        def encode(self, x):
            m, s = self.lin(x.flatten(1)).chunk(2, 1)
            return torch.distributions.Normal(m, nn.functional.softplus(s) + 1e-3)

        def forward(self, x):
            return self.decoder(self.encode(x).mean).view(-1, *SHAPE)

    torch.manual_seed(0)
    m, x = NormalEnc(), images(3)
    ae = autoencoder(m)
    assert torch.equal(ae.encode(x), m.encode(x).mean)
    assert ".mean" in repr(ae)


def test_unet_code_at_stops_the_forward_and_has_no_decode():
    torch.manual_seed(0)
    net, x = UNet(), images(2)
    ran = []
    h = net.out.register_forward_pre_hook(lambda mod, a: ran.append(1))
    before = snapshot(net)
    ae = autoencoder(net, code_at="down2")
    z = ae.encode(x)
    assert torch.equal(z, net.down2(net.down1(x)))
    assert ran == []  # the forward stopped right after down2
    assert_unchanged(net, before)
    assert not ae.can_decode
    with pytest.raises(TypeError, match=r"decode\(z\).*code_at='down2'.*decoder=.*decode="):
        ae.require("decode", probe="decoder_homogeneity")
    with pytest.raises(TypeError, match="decode"):
        ae.decode(z)
    assert torch.equal(ae.reconstruct(x), net(x))
    h.remove()


def test_container_with_neither_encoder_nor_decoder():
    seq = sequential_ae()
    ae = autoencoder(seq)
    assert not ae.can_encode and not ae.can_decode
    with pytest.raises(TypeError, match=r"encode\(x\).*encoder=.*code_at=.*encode="):
        ae.require("encode", probe="code_stats")
    ae.reconstruct(images(2))  # the whole model still reconstructs


def test_model_without_forward_reconstructs_through_parts():
    class Parts(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(64, CODE)
            self.decoder = nn.Sequential(nn.Linear(CODE, 64), nn.Unflatten(1, SHAPE))

    m, x = Parts(), images(3)
    ae = autoencoder(m, encoder=[nn.Flatten(), m.encoder])
    assert torch.equal(ae(x), m.decoder(m.encoder(x.flatten(1))))
    assert "decode(encode(x))" in repr(ae)


# ----------------------------------------------------------------------------------------- ambiguity, errors
def test_ambiguous_dict_asks_for_output():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            y = self.lin(x)
            return {"recon": y, "x_hat": y + 1}

    m, x = Two(), torch.randn(2, 4)
    with pytest.raises(ValueError, match="output="):
        autoencoder(m)(x)
    assert torch.equal(autoencoder(m, output="x_hat")(x), m.lin(x) + 1)


def test_ambiguous_code_asks_for_code():
    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def encode(self, x):
            z = self.lin(x)
            return {"z": z + 1, "mu": z}

        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="code="):
        autoencoder(Enc()).encode(torch.randn(2, 4))
    m = Enc()
    x = torch.randn(2, 4)
    assert torch.equal(autoencoder(m, code="mu").encode(x), m.lin(x))


def test_tuple_with_reconstruction_second_is_named():
    class ZFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.e, self.d = nn.Linear(6, 2), nn.Linear(2, 6)

        def forward(self, x):
            z = self.e(x)
            return z, self.d(z)

    m, x = ZFirst(), torch.randn(3, 6)
    with pytest.raises(ValueError, match="output=1"):
        autoencoder(m)(x)
    assert torch.equal(autoencoder(m, output=1)(x), m(x)[1])


def test_bad_arguments_are_named():
    m = TupleVAE()
    with pytest.raises(ValueError, match="at most one"):
        autoencoder(m, encoder="fc1", code_at="fc1")
    with pytest.raises(KeyError, match="fc2"):
        autoencoder(m, encoder="fc2")
    with pytest.raises(TypeError, match="encode="):
        autoencoder(m, encode=3)
    with pytest.raises(TypeError, match="nn.Module"):
        autoencoder(lambda x: x)
    with pytest.raises(KeyError, match="'nope'"):
        autoencoder(DictAE(), output="nope")(images(2))
    with pytest.raises(IndexError, match="output=5"):
        autoencoder(TupleVAE(), output=5)(images(2))


def test_view_of_a_view():
    m = DictAE()
    ae = autoencoder(m, encoder="enc", decoder="dec")
    assert autoencoder(ae) is ae
    ae2 = autoencoder(ae, code_at="enc.1")
    assert ae2.code_at == "enc.1" and ae2.can_decode  # decoder= kept, encoder= replaced
    x = images(2)
    assert torch.equal(ae2.encode(x), m.enc[1](m.enc[0](x)))


# ----------------------------------------------------------------------------------------- dtype and device
def test_lossless_casts_and_refused_casts():
    m = TupleVAE().double().eval()
    ae = autoencoder(m)
    x32 = images(2)
    assert ae.encode(x32).dtype == torch.float64  # float32 data into a float64 model: cast
    m32 = TupleVAE().eval()
    with pytest.raises(TypeError, match=r"float64.*float32.*lose precision"):
        autoencoder(m32).encode(x32.double())
    assert autoencoder(m32).encode((x32 * 255).to(torch.uint8)).dtype == torch.float32  # uint8 -> float32 exact
    with pytest.raises(TypeError, match="cannot hold exactly"):
        autoencoder(m32).encode(torch.full((1, 1, 8, 8), 2**25 + 1, dtype=torch.int64))
    z = autoencoder(m32).codes(np.asarray(x32))  # numpy float32 accepted
    assert z.shape == (2, CODE)


# ----------------------------------------------------------------------------------------- modules
def test_decoder_modules_found_by_running_decode():
    torch.manual_seed(0)
    vae, x = TupleVAE(), images(4)
    ae = autoencoder(vae)
    with pytest.raises(ValueError, match="example code"):
        ae.decoder_modules()
    ae.encode(x)
    assert list(ae.decoder_modules()) == ["fc3", "fc4"]
    assert list(ae.encoder_modules(x)) == ["fc1", "fc21", "fc22"]
    assert set(Autoencoder.parameters_of(ae.decoder_modules())) == {"fc3.weight", "fc3.bias", "fc4.weight",
                                                                     "fc4.bias"}


def test_module_discovery_leaves_the_model_unchanged():
    vae = TupleVAE().train()
    before = snapshot(vae)
    ae = autoencoder(vae)
    ae.decoder_modules(torch.zeros(1, CODE))
    ae.encoder_modules(images(1))
    assert_unchanged(vae, before)


# ----------------------------------------------------------------------------------------- batched helpers
def test_batched_helpers_eval_mode_and_restore():
    torch.manual_seed(0)
    vae = TupleVAE(always_sample=False).train()
    x = images(10)
    before = snapshot(vae)
    ae = autoencoder(vae)
    z = ae.codes(x, batch_size=3)
    xh = ae.reconstructions(x, batch_size=4)
    err = ae.per_sample_mse(x, batch_size=4)
    assert_unchanged(vae, before)
    assert vae.training
    vae.eval()
    # batches of 3 or 4 instead of 10 change float32 summation order: differences of ~1 ulp
    tol = dict(rtol=1e-5, atol=1e-6)
    assert torch.allclose(z, vae.encode(x)[0], **tol)
    assert torch.allclose(xh, vae(x)[0], **tol)  # eval mode: no sampling, deterministic
    assert np.allclose(err, ((vae(x)[0] - x) ** 2).flatten(1).mean(1).detach().double().numpy(), **tol)
    assert torch.allclose(ae.decodings(z, batch_size=3), vae.decode(z), **tol)


def test_every_kind_encodes_decodes_and_reconstructs():
    x = images(6)
    for kind, (model, kw) in all_kinds().items():
        ae = autoencoder(model.eval(), **kw)
        z = ae.codes(x)
        assert z.shape == (6, CODE), kind
        assert ae.decodings(z).shape == x.shape, kind
        assert ae.reconstructions(x).shape == x.shape, kind
        assert "not called yet" not in repr(ae), kind


# ----------------------------------------------------------------------------------------- property tests
@settings(max_examples=40)
@given(enc_kind=st.sampled_from(["tensor", "tuple", "list", "dict", "object"]),
       out_kind=st.sampled_from(["tensor", "tuple", "list", "dict", "object"]),
       pos=st.integers(0, 2), code=st.integers(1, 5), n=st.integers(1, 4), width=st.integers(2, 7))
def test_random_models_are_read_right(enc_kind, out_kind, pos, code, n, width):
    class Random(nn.Module):
        def __init__(self):
            super().__init__()
            self.e = nn.Linear(width, code)
            self.d = nn.Linear(code, width)

        def encode(self, x):
            z = self.e(x)
            return wrap(enc_kind, z, z * 0 + 7, "code", pos)

        def decode(self, z):
            return self.d(z)

        def forward(self, x):
            z = self.e(x)
            return wrap(out_kind, self.d(z), z, "output", pos)

    torch.manual_seed(code * 10 + width)
    m = Random()
    x = torch.randn(n, width)
    ae = autoencoder(m)
    assert torch.equal(ae.encode(x), m.e(x))
    assert torch.equal(ae.reconstruct(x), m.d(m.e(x)))
    assert torch.equal(ae.decode(m.e(x)), m.d(m.e(x)))
    assert "not called yet" not in repr(ae)


@settings(max_examples=25)
@given(sel=st.sampled_from(["int", "str", "callable"]), n=st.integers(1, 3))
def test_explicit_selectors(sel, n):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.e = nn.Linear(3, 2)

        def forward(self, x):
            z = self.e(x)
            return (z, z.sum(1, keepdim=True) * 0 + x) if sel != "str" else {"a": z, "b": x + 0}

    m, x = M(), torch.randn(n, 3)
    spec = {"int": 1, "str": "b", "callable": (lambda out: out[1])}[sel]
    assert torch.equal(autoencoder(m, output=spec)(x), x)


def test_pick_reports_how():
    t = torch.ones(2)
    assert pick(t)[1] == ""
    assert pick({"recon": t, "k": 1})[1] == "['recon']"
    assert pick(Out(t, t), "output")[1] == ".x_hat"
    with pytest.raises(ValueError, match="kind"):
        pick(t, "other")


def test_random_forward_is_warned_and_decode_reconstruction_is_deterministic():
    torch.manual_seed(0)
    vae, x = TupleVAE(always_sample=True), images(6)
    with pytest.warns(RuntimeWarning, match="random in eval mode.*reconstruct='decode'"):
        autoencoder(vae).reconstructions(x)
    ae = autoencoder(vae, reconstruct="decode")
    vae.eval()
    assert torch.allclose(ae.reconstructions(x), vae.decode(vae.encode(x)[0]), atol=1e-6)
    assert "decode(encode(x))" in repr(ae)
    with pytest.raises(TypeError, match="reconstruct="):
        autoencoder(vae, reconstruct="mean")


def test_deterministic_forward_is_not_warned(recwarn):
    autoencoder(TupleVAE()).reconstructions(images(4))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_encoder_only_model_is_a_view_that_refuses_to_reconstruct():
    class EncodeOnly(nn.Module):  # an encode method and nothing else (no forward, no decode)
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, CODE)

        def encode(self, x):
            return self.lin(x.flatten(1))

    m, x = EncodeOnly(), images(3)
    ae = autoencoder(m)
    assert ae.can_encode and not ae.can_decode and not ae.can_reconstruct
    assert torch.equal(ae.encode(x), m.lin(x.flatten(1)))
    with pytest.raises(TypeError, match=r"probe_x needs the reconstruction.*reconstruct="):
        ae.require("reconstruct", probe="probe_x")
    with pytest.raises(TypeError, match="reconstruct="):
        ae.reconstructions(x)


def test_a_module_that_is_itself_the_decoder():
    dec = nn.Sequential(nn.Linear(CODE, 64), nn.Unflatten(1, SHAPE))
    ae = autoencoder(dec, decoder=dec)
    z = torch.randn(2, CODE)
    assert torch.equal(ae.decode(z), dec(z))
    assert list(ae.decoder_modules()) == [""]
    assert set(Autoencoder.parameters_of(ae.decoder_modules())) == {"0.weight", "0.bias"}
    assert "decoder=(the model itself)" in repr(ae)
    with pytest.raises(TypeError, match=r"autoencoder\(dec, decoder=dec\)"):
        autoencoder(dec).require("decode", probe="p")


def test_a_model_without_floating_state_takes_any_dtype():
    class Shift(nn.Module):  # no parameters or buffers: nothing to cast the input to
        def forward(self, x):
            return x + 1

    ae = autoencoder(Shift(), decoder="")
    z64 = torch.ones(2, 3, dtype=torch.float64)
    assert ae.decode(z64).dtype == torch.float64
    assert ae.reconstruct(z64.half()).dtype == torch.float16
