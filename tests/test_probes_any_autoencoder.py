"""Every probe on autoencoders written the usual ways (tests/autoencoders.py), through aeprobe.autoencoder.

* every probe runs on a tuple-output VAE, a dict-output AE, an ``nn.Sequential`` read by names, a
  library-shaped AE (output objects, a distribution as the code) and an AE read with callables, and
  reads them right: its numbers equal the same computation on the hand-written encode / decode /
  reconstruct of each kind (``references``);
* every probe leaves the model bit-identical, in the mode and on the device it was in;
* on a U-Net read with ``code_at=``, the probes that need only the reconstruction or the code run,
  and the probes that need ``decode`` refuse before any forward, naming the missing piece and the
  argument that supplies it;
* property tests: random linear models whose encode / forward / decode outputs are wrapped in
  tuples, lists, dicts, dataclass-like objects and distribution-like objects.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from aeprobe.probes.anomaly import clipped_errors, outlier_auroc
from aeprobe.probes.checkerboard import checkerboard_probe
from aeprobe.probes.disk_attribution import disk_attribution
from aeprobe.probes.homogeneity import decoder_homogeneity
from aeprobe.probes.identity import identity_tests, jacobian_identity_distance
from aeprobe.probes.latent import interpolate, iterate
from aeprobe.probes.linear import seen_unseen_probe
from aeprobe.probes.overfitting import overfitting_split
from aeprobe.probes.position_filter import dirac_decoding, filter_cosine, position_encoding
from aeprobe.probes.separable import separable_profile
from aeprobe.state import assert_unchanged, snapshot
from aeprobe.view import autoencoder
from autoencoders import (CODE, N_SIGNAL, WRAPS, UNet, all_kinds, images, references, sequential_ae,
                          signal_kinds, signal_references, wrap)
from theory.position import triangular_dirac
from _ae_cases import TinyAE

X = images(24)
Y = (X.mean((1, 2, 3)) > X.mean()).long()
NOISE = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(5))
POS = np.array([0.0, 2.5, 4.0, 7.0])


def _mse(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return ((a.double() - b.double()) ** 2).flatten(1).mean(1).numpy()


# Each entry: probe name -> (what the view must have, run(ae) -> result). Small settings throughout.
IMAGE_PROBES = {
    "outlier_auroc": ("reconstruct", lambda ae: outlier_auroc(ae, X[:12], NOISE, clip=None)),
    "clipped_errors": ("reconstruct", lambda ae: clipped_errors(ae, X, clip=None)),
    "identity_tests": ("reconstruct", lambda ae: identity_tests(ae, X, jacobian_points=2, method="hutchinson",
                                                                directions=2)),
    "identity_tests(y=)": ("encode", lambda ae: identity_tests(ae, X, y=Y, jacobian_points=0, probe_repeats=1)),
    "jacobian_identity_distance": ("reconstruct", lambda ae: jacobian_identity_distance(ae, X[:2], method="exact")),
    "iterate": ("reconstruct", lambda ae: iterate(ae, X[:2], n=3, keep=[0, 3])),
    "separable_profile": ("reconstruct", lambda ae: separable_profile(ae, X[:4], [1.0, 2.0, 3.0, 4.0])),
    "seen_unseen_probe": ("encode", lambda ae: seen_unseen_probe(ae, X[:12], Y[:12], X[12:], Y[12:], repeats=1)),
    "disk_attribution": ("encode", lambda ae: disk_attribution(ae, X[:2], [2.0, 3.0], n_steps=4)),
    "interpolate": ("decode", lambda ae: interpolate(ae, X[0], X[1], 3)),
    "checkerboard_probe": ("decode", lambda ae: checkerboard_probe(ae, code_shape=(CODE,), n=4)),
    "decoder_homogeneity": ("decode", lambda ae: decoder_homogeneity(ae, codes=torch.randn(
        5, CODE, generator=torch.Generator().manual_seed(0)))),
    "overfitting_split": ("decode", lambda ae: overfitting_split(ae, X[:12], X[12:], epochs=1, batch_size=8)),
}
SIGNAL_PROBES = {
    "position_encoding": ("encode", lambda ae: position_encoding(ae, 3, POS)),
    "dirac_decoding": ("decode", lambda ae: dirac_decoding(ae, POS, N_SIGNAL)),
    "dirac_decoding(codes=)": ("decode", lambda ae: dirac_decoding(ae, POS, N_SIGNAL, codes=torch.ones(4, 1))),
    "filter_cosine": ("encode", lambda ae: filter_cosine(ae, x=_diracs(POS))),
}


def _diracs(a) -> torch.Tensor:
    return torch.as_tensor(triangular_dirac(np.asarray(a, float), N_SIGNAL), dtype=torch.float32)[:, None]


def _views():
    for kind, (model, kw) in all_kinds().items():
        yield kind, model, autoencoder(model, **kw)


# ----------------------------------------------------------------------------------------- every probe, every kind
@pytest.mark.parametrize("probe", list(IMAGE_PROBES))
def test_every_image_probe_runs_on_every_kind_and_leaves_the_model_unchanged(probe):
    _, run = IMAGE_PROBES[probe]
    for kind, model, ae in _views():
        model.train()  # the probes switch to eval mode and must put training mode back
        before = snapshot(model)
        rep = run(ae)
        assert rep is not None, kind
        assert_unchanged(model, before)
        # a model read by default detection can be passed as it is (the probe wraps it)
        if kind in ("tuple_vae", "library"):
            run(model)
            assert_unchanged(model, before)


@pytest.mark.parametrize("probe", list(SIGNAL_PROBES))
def test_every_signal_probe_runs_on_every_kind_and_leaves_the_model_unchanged(probe):
    _, run = SIGNAL_PROBES[probe]
    for kind, (model, kw) in signal_kinds().items():
        model.train()
        before = snapshot(model)
        run(autoencoder(model, **kw))
        assert_unchanged(model, before)


def test_the_probes_read_each_kind_right():
    """Numbers equal the same computation on each kind's hand-written encode / decode / reconstruct."""
    for kind, model, ae in _views():
        model.eval()
        ref = references(kind, model)
        with torch.no_grad():
            rec = ref["reconstruct"](X)
            z = ref["encode"](X)
        tol = dict(rtol=1e-5, atol=1e-7)  # batch-size dependent float32 summation order
        np.testing.assert_allclose(clipped_errors(ae, X, clip=None), _mse(rec, X), **tol, err_msg=kind)
        out = outlier_auroc(ae, X[:12], NOISE, clip=None)
        with torch.no_grad():
            assert out.mean_error_out == pytest.approx(_mse(ref["reconstruct"](NOISE), NOISE).mean(), rel=1e-5)
        frames = iterate(ae, X[:2], n=2, keep=[2])
        with torch.no_grad():
            np.testing.assert_allclose(frames[0], ref["reconstruct"](ref["reconstruct"](X[:2])).numpy(), **tol)
        inter = interpolate(ae, X[:2], X[2:4], 3)  # [B, steps, ...]
        with torch.no_grad():
            za, zb = ref["encode"](X[:2]), ref["encode"](X[2:4])
            np.testing.assert_allclose(inter[:, 0], ref["decode"](za).numpy(), **tol, err_msg=kind)
            np.testing.assert_allclose(inter[:, 1], ref["decode"]((za + zb) / 2).numpy(), **tol, err_msg=kind)
        su = seen_unseen_probe(ae, X[:12], Y[:12], X[12:], Y[12:], repeats=1)
        assert su.code_dim == z.shape[1] == CODE, kind
        jac = jacobian_identity_distance(ae, X[:1], method="exact")
        j = torch.func.jacrev(lambda v: ref["reconstruct"](v.reshape(1, 1, 8, 8)).reshape(-1))(X[0].reshape(-1)).detach()
        assert jac["distance"] == pytest.approx(float(((j - torch.eye(64)) ** 2).sum() / 64), rel=1e-5), kind
        hom = decoder_homogeneity(ae, data_codes=z)
        assert hom.n_positive + hom.n_negative + hom.n_zero == X.shape[0]
        of = overfitting_split(ae, X[:12], X[12:], epochs=1, batch_size=8, control=False, max_train_eval=None)
        assert of.train_error == pytest.approx(_mse(rec[:12], X[:12]).mean(), rel=1e-5), kind


def test_signal_probes_read_each_kind_right():
    x = _diracs(POS)
    for kind, (model, kw) in signal_kinds().items():
        model.eval()
        ae = autoencoder(model, **kw)
        ref = signal_references(kind, model)
        with torch.no_grad():
            z = ref["encode"](x)
            y = ref["decode"](z)
        pe = position_encoding(ae, 3, POS)
        np.testing.assert_allclose(pe.z, z[:, 0].double().numpy(), rtol=1e-6, err_msg=kind)
        dd = dirac_decoding(ae, POS, N_SIGNAL)
        np.testing.assert_allclose(dd.outputs, y.reshape(4, -1).double().numpy(), rtol=1e-6, err_msg=kind)
        fc = filter_cosine(ae, x=x)
        assert len(fc.layers) == 3, (kind, fc.layers)  # the three Conv1d of the encoder, nothing of the decoder


# ----------------------------------------------------------------------------------------- U-Net read with code_at
def _count_forwards(model: nn.Module):
    calls: list = []
    handles = [m.register_forward_pre_hook(lambda mod, args: calls.append(mod)) for m in model.modules()]
    return calls, handles


@pytest.mark.parametrize("probe", [p for p, (need, _) in IMAGE_PROBES.items() if need != "decode"])
def test_unet_read_with_code_at_runs_the_reconstruction_and_code_probes(probe):
    torch.manual_seed(0)
    net = UNet().train()
    before = snapshot(net)
    IMAGE_PROBES[probe][1](autoencoder(net, code_at="down2"))
    assert_unchanged(net, before)


DECODE_PROBES = [p for p, (need, _) in {**IMAGE_PROBES, **SIGNAL_PROBES}.items() if need == "decode"]


@pytest.mark.parametrize("probe", DECODE_PROBES)
def test_unet_read_with_code_at_refuses_decode_probes_before_any_forward(probe):
    net = UNet()
    calls, handles = _count_forwards(net)
    run = {**IMAGE_PROBES, **SIGNAL_PROBES}[probe][1]
    name = probe.split("(")[0]
    try:
        with pytest.raises(TypeError) as info:
            run(autoencoder(net, code_at="down2"))
    finally:
        for h in handles:
            h.remove()
    assert calls == []  # refused before any work
    msg = str(info.value)
    assert name in msg and "decode(z)" in msg and "code_at='down2'" in msg, msg
    assert "decoder=" in msg and "decode=" in msg, msg


@pytest.mark.parametrize("probe", [p for p, (need, _) in {**IMAGE_PROBES, **SIGNAL_PROBES}.items()
                                   if need == "encode" and p != "filter_cosine"])
def test_container_without_names_refuses_encode_probes_before_any_forward(probe):
    seq = sequential_ae()  # no encoder / decoder: nothing says where the code is
    calls, handles = _count_forwards(seq)
    try:
        with pytest.raises(TypeError, match=r"needs encode\(x\).*encoder=.*code_at=.*encode="):
            {**IMAGE_PROBES, **SIGNAL_PROBES}[probe][1](seq)
    finally:
        for h in handles:
            h.remove()
    assert calls == []


# ----------------------------------------------------------------------------------------- devices
DEVICE_PROBES = {
    "clipped_errors": lambda m, d: clipped_errors(m, X[:4], device=d),
    "outlier_auroc": lambda m, d: outlier_auroc(m, X[:4], NOISE[:4], device=d),
    "identity_tests": lambda m, d: identity_tests(m, X[:6], y=Y[:6] * 0 + torch.arange(6) % 2, jacobian_points=1,
                                                  probe_repeats=1, device=d),
    "jacobian_identity_distance": lambda m, d: jacobian_identity_distance(m, X[:1], device=d),
    "interpolate": lambda m, d: interpolate(m, X[0], X[1], 2, device=d),
    "iterate": lambda m, d: iterate(m, X[:1], n=1, device=d),
    "seen_unseen_probe": lambda m, d: seen_unseen_probe(m, X[:8], torch.arange(8) % 2, X[8:16],
                                                        torch.arange(8) % 2, repeats=1, device=d),
    "overfitting_split": lambda m, d: overfitting_split(m, X[:8], X[8:16], epochs=1, batch_size=8, device=d),
    "checkerboard_probe": lambda m, d: checkerboard_probe(m, code_shape=(CODE,), n=2, device=d),
    "decoder_homogeneity": lambda m, d: decoder_homogeneity(m, codes=torch.ones(2, CODE), device=d),
    "separable_profile": lambda m, d: separable_profile(m, X[:2], [1.0, 2.0], device=d),
}


@pytest.mark.parametrize("probe", list(DEVICE_PROBES))
def test_probes_move_the_model_to_their_device_and_back(probe):
    """Only one device here, so ``model.to`` is recorded instead of run: the probe must ask for
    ``device`` once and for the model's own device after, i.e. it leaves the model where it was."""
    torch.manual_seed(0)
    # the package's own shape (tensor outputs, .encoder/.decoder): only the device is under test
    model = TinyAE(nn.Sequential(nn.Flatten(), nn.Linear(64, CODE)),
                   nn.Sequential(nn.Linear(CODE, 64), nn.Unflatten(1, (1, 8, 8))))
    moves: list[torch.device] = []

    def record(*args, **kwargs):
        moves.append(torch.device(args[0]))
        return model

    model.to = record  # instance attribute: the probe's model.to(...) lands here
    DEVICE_PROBES[probe](model, "meta")
    assert moves and moves[0] == torch.device("meta") and moves[-1] == torch.device("cpu"), moves
    assert moves.count(torch.device("meta")) == moves.count(torch.device("cpu")), moves


# ----------------------------------------------------------------------------------------- property tests
@settings(max_examples=20, deadline=None)
@given(enc_kind=st.sampled_from(WRAPS), out_kind=st.sampled_from(WRAPS), dec_kind=st.sampled_from(WRAPS[:4]),
       pos=st.integers(0, 2), code=st.integers(1, 4), width=st.integers(2, 6), seed=st.integers(0, 1000))
def test_random_wrapped_outputs_give_the_same_numbers(enc_kind, out_kind, dec_kind, pos, code, width, seed):
    """A bias-free linear AE whose outputs come wrapped in any supported way: the probes' numbers
    equal those of the bare linear maps, and Prop. 1 (homogeneity) holds for its decoder."""

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.e = nn.Linear(width, code, bias=False)
            self.d = nn.Linear(code, width, bias=False)

        def encode(self, x):
            z = self.e(x)
            return wrap(enc_kind, z, z * 0 + 7, "code", pos)

        def decode(self, z):
            y = self.d(z)
            return wrap(dec_kind, y, z, "output", pos)

        def forward(self, x):
            z = self.e(x)
            return wrap(out_kind, self.d(z), z, "output", pos)

    torch.manual_seed(seed)
    m = Wrapped()
    g = torch.Generator().manual_seed(seed)
    x, xo = torch.randn(10, width, generator=g), 3 * torch.randn(6, width, generator=g)
    with torch.no_grad():
        rec = m.d(m.e(x))
    np.testing.assert_allclose(clipped_errors(m, x, clip=None), _mse(rec, x), rtol=1e-5, atol=1e-7)
    rep = outlier_auroc(m, x, xo, clip=None)
    assert 0.0 <= rep.auroc <= 1.0 and rep.n_in == 10 and rep.n_out == 6
    frames = interpolate(m, x[:2], x[2:4], 3)
    with torch.no_grad():
        np.testing.assert_allclose(frames[:, 0], rec[:2].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(frames[:, 2], rec[2:4].numpy(), rtol=1e-5, atol=1e-6)
    assert decoder_homogeneity(m, codes=torch.randn(4, code, generator=g)).max_rel_error < 1e-5


# ----------------------------------------------------------------------------------------- dtypes
def test_float32_data_runs_on_a_float64_model_and_lossy_casts_are_refused_before_any_forward():
    from autoencoders import TupleVAE

    torch.manual_seed(0)
    vae = TupleVAE().double()
    ae = autoencoder(vae)
    rep = outlier_auroc(ae, X[:12], NOISE, clip=None)  # float32 images into a float64 model: lossless
    with torch.no_grad():
        want = _mse(vae.eval()(X[:12].double())[0], X[:12]).mean()
    assert rep.mean_error_in == pytest.approx(want, rel=1e-12)  # the model ran in float64
    assert interpolate(ae, X[0], X[1], 3).shape == (3, 1, 8, 8)
    assert decoder_homogeneity(ae, codes=torch.randn(4, CODE)).dtype == "float64"
    m32 = TupleVAE()
    calls, handles = _count_forwards(m32)
    try:
        with pytest.raises(TypeError, match="lose precision"):
            outlier_auroc(m32, X.double(), NOISE.double())  # float64 data into a float32 model: refused
    finally:
        for h in handles:
            h.remove()
    assert calls == []
