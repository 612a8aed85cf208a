"""``aeprobe.inspect``: the report on a user's own model, through the Python API.

Whole runs (smoke budget, 8x8 images) check the structure: one results.json key per section, a
reading / figure / probe per section, a one-line reason where a section does not apply, the model
left as found, a self-contained report.html. Single sections run on constructed models whose answer
is known: a bias-free ReLU decoder is homogeneous (Prop. 1), a copier copies, a linear decoder's
ablations match their first-order prediction, a resize-conv decoder makes no period-2 pattern from
constant codes while an uneven transposed convolution does.
"""
from __future__ import annotations

import base64
import json
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from torch import nn

import aeprobe
from aeprobe.inspection import Budget, sections
from aeprobe.inspection.ops import prop1_conditions, record_ops
from aeprobe.inspection.readings import ALIAS_EXCESS, READINGS, reading
from aeprobe.inspection.sections import SECTIONS, Context
from aeprobe.state import assert_unchanged, snapshot
from autoencoders import SHAPE, DictAE, TupleVAE, UNet, images, sequential_ae

KEYS = ["architecture", "code", "identity", "overfitting", "homogeneity", "checkerboard", "attribution", "ablation",
        "interpolation", "probe"]


def _labels(x: torch.Tensor) -> torch.Tensor:
    return (x.mean((1, 2, 3)) > x.mean()).long()


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A tuple-output VAE (a plain model, default detection), with held-out images and labels for both."""
    torch.manual_seed(0)
    vae = TupleVAE()
    x, xt = images(96, seed=0), images(64, seed=1)
    before = snapshot(vae)
    out = tmp_path_factory.mktemp("vae")
    rep = aeprobe.inspect(vae, x, xt, labels=_labels(x), labels_test=_labels(xt), out=out, budget=Budget.smoke(),
                          progress=False, strict=True)
    return vae, before, rep, out


def test_the_sections_are_the_results_keys():
    assert list(SECTIONS) == KEYS == list(READINGS)


def test_api_on_a_tuple_vae_writes_every_section(vae_run):
    vae, before, rep, out = vae_run
    assert_unchanged(vae, before)  # every probe put the weights, modes, flags and hooks back
    on_disk = json.loads((out / "results.json").read_text())
    for key in KEYS:
        s = on_disk[key]
        assert s["status"] in ("done", "not applicable"), (key, s)
        assert s["reading"] == rep.reading(key) and s["reading"]
        if s["status"] == "done":
            assert s["probe"] and s["data"] and (out / s["figure"]).is_file(), key
            assert s["reading"] == READINGS[key](s)  # the reading is a function of the stored numbers
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert on_disk["run"]["stage_seconds"].keys() == set(KEYS)
    # what applies to this model, and why the rest does not
    assert [k for k in KEYS if not rep.applies(k)] == ["checkerboard"]
    assert "no 2-D convolution" in rep.section("checkerboard")["why"]
    arch = rep.section("architecture")
    assert arch["total_params"] == sum(p.numel() for p in vae.parameters())
    assert {l["name"]: l["part"] for l in arch["layers"]} == {"fc1": "encoder", "fc21": "encoder", "fc22": "encoder",
                                                               "fc3": "decoder", "fc4": "decoder"}
    assert arch["encoder_params"] + arch["decoder_params"] == arch["total_params"]
    assert arch["code_shape"] == [4] and arch["output_shape"] == list(SHAPE)
    h = rep.section("homogeneity")  # decode ends in torch.sigmoid: no module, but the recorded ops show it
    assert h["conditions_met"] is False and "sigmoid" in h["conditions_breaking"]
    assert h["has_biases"] and h["biases_zeroed"] == ["fc3.bias", "fc4.bias"]
    assert on_disk["claims"] == []  # Prop. 1 is not claimed where its conditions fail
    assert rep.section("probe")["acc_unseen"] is not None
    assert rep.section("code")["code_size"] == 4


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.refs, self.tags = [], [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for key in ("href", "src", "action", "poster", "data"):
            if key in a and tag != "img":
                self.refs.append(a[key])


def test_report_html_embeds_every_image_and_links_nowhere_else(vae_run):
    _, _, rep, out = vae_run
    page = _Links()
    page.feed((out / "report.html").read_text())
    figures = [k for k in KEYS if rep.applies(k) and rep.section(k).get("figure")]
    assert len(page.imgs) == len(figures) >= 9
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.refs and all(r.startswith("#") for r in page.refs)  # only the table of contents
    assert not page.tags & {"link", "script", "iframe", "object", "embed"}


def test_unet_read_with_code_at_says_why_the_decoder_sections_do_not_apply(tmp_path):
    x = images(48)
    rep = aeprobe.inspect(aeprobe.autoencoder(UNet(), code_at="down2"), x, images(32, seed=1), labels=_labels(x),
                          out=tmp_path, budget=Budget.smoke(), progress=False, strict=True)
    needs_decode = ["overfitting", "homogeneity", "checkerboard", "ablation", "interpolation"]
    assert [k for k in KEYS if not rep.applies(k)] == needs_decode
    for k in needs_decode:
        why = rep.section(k)["why"]
        assert "\n" not in why and "`decode(z)`" in why and "code_at='down2'" in why
        assert "aeprobe.autoencoder(model, decoder=" in why  # the API's fix (the command line says --view)
        assert rep.reading(k).startswith("Does not apply: ")
    assert rep.section("code")["code_shape"] == [8, 4, 4]


def test_sequential_read_with_a_view_and_without(tmp_path):
    x, xt = images(48), images(32, seed=1)
    seq = sequential_ae()
    view = aeprobe.autoencoder(seq, encoder=["0", "1", "2"], decoder=["3", "4"])
    rep = aeprobe.inspect(view, x, xt, out=tmp_path / "view", budget=Budget.smoke(), progress=False, strict=True)
    assert rep.applies("homogeneity") and rep.section("homogeneity")["conditions_met"] is True
    assert rep.results["claims"][0]["met"] is True  # Linear + Unflatten with its bias zeroed: Prop. 1 holds
    assert not rep.applies("probe") and "labels=" in rep.section("probe")["why"]
    plain = aeprobe.inspect(seq, x, out=tmp_path / "plain", budget=Budget.smoke(), progress=False, strict=True)
    assert [k for k in KEYS if plain.applies(k)] == ["architecture", "identity"]  # model(x) only
    assert "`encode(x)`" in plain.section("code")["why"]
    assert "pass x_test" in plain.section("overfitting")["why"]


# ----------------------------------------------------------------------------- single sections, known answers


def _ctx(ae, x, tmp_path, xt=None, **kw) -> Context:
    return Context(ae=aeprobe.autoencoder(ae, **kw), x_train=x, x_test=xt, y_train=None, y_test=None,
                   budget=Budget.smoke(), out=tmp_path)


class _BNDecoderAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
        self.decoder = nn.Sequential(nn.Linear(4, 64), nn.Unflatten(1, (1, 8, 8)), nn.BatchNorm2d(1), nn.ReLU())

    def forward(self, x):
        return self.decoder(self.encoder(x))


def test_homogeneity_section_states_prop1_and_checks_it(tmp_path):
    torch.manual_seed(0)
    x = images(64)
    h = sections.homogeneity(_ctx(DictAE(), x, tmp_path, encoder="enc", decoder="dec"))
    # Linear -> Unflatten -> ReLU -> ConvTranspose2d: homogeneous once the biases are zeroed
    assert h["conditions_met"] is True and set(h["conditions_breaking"]) == set()
    assert {"linear", "relu", "conv_transpose2d"} <= set(h["ops"])
    assert h["max_rel_error_zeroed"] <= 1e-5  # float32 rounding only (Prop. 1)
    assert h["max_rel_error_biases"] > 1e-3   # the trained biases break it: D(0) != 0
    claim = READINGS["homogeneity"]({**h, "status": "done"})
    assert "as Prop. 1 says it must" in claim
    model = _BNDecoderAE().eval()
    with torch.no_grad():  # a BatchNorm with a running mean: an implicit bias that zeroing biases leaves in
        model.decoder[2].running_mean.fill_(0.5)
    hb = sections.homogeneity(_ctx(model, x, tmp_path))
    assert hb["conditions_met"] is False and "batch_norm" in hb["conditions_breaking"]
    assert hb["max_rel_error_zeroed"] > 1e-3


def test_ops_sort_the_conditions_of_prop1():
    z = torch.randn(3, 4)
    lin = nn.Linear(4, 5, bias=False)
    ok = prop1_conditions(record_ops(lambda t: torch.relu(lin(t)).view(3, 5), z), biases_zeroed=True)
    assert ok.met is True and ok.homogeneous == ["linear", "relu"]
    shifted = prop1_conditions(record_ops(lambda t: lin(t) + 1.0, z), biases_zeroed=True)
    assert shifted.met is False and shifted.breaking == ["add of a non-zero constant"]
    scaled = prop1_conditions(record_ops(lambda t: 2.0 * lin(t) - 0.0, z), biases_zeroed=True)
    assert scaled.met is True  # scaling is homogeneous, subtracting 0 is no shift
    squared = prop1_conditions(record_ops(lambda t: lin(t) * lin(t), z), biases_zeroed=True)
    assert squared.met is None and squared.unclassified == ["mul of two tensors"]
    biased = prop1_conditions(record_ops(lin, z), biases_zeroed=False)
    assert biased.met is False and biased.breaking[0] == "biases"


def test_identity_section_recognises_a_copier(tmp_path):
    copier = nn.Sequential(nn.Flatten(), nn.Unflatten(1, SHAPE))
    s = sections.identity(_ctx(copier, images(32), tmp_path, encoder="0", decoder="1"))
    assert s["looks_like_copy"] and s["jacobian_distance"] < 1e-6
    assert READINGS["identity"](s).startswith("It behaves like a copy machine")


class _LinearAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 6))
        self.decoder = nn.Sequential(nn.Linear(6, 64), nn.Unflatten(1, SHAPE))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def test_ablation_section_on_a_linear_decoder_matches_the_first_order_prediction(tmp_path):
    torch.manual_seed(0)
    s = sections.ablation(_ctx(_LinearAE(), images(32), tmp_path))
    assert len(s["units"]) == Budget.smoke().ablation_units  # the strongest 4 of 6 units
    assert abs(s["ratio_min"] - 1) < 1e-5 and abs(s["ratio_max"] - 1) < 1e-5
    assert "acts linearly" in READINGS["ablation"](s)


class _ConvCodeAE(nn.Module):
    """16x16 images -> a 4 x 8 x 8 spatial code -> a resize + conv decoder, or a 3x3 stride-2 transposed conv."""

    def __init__(self, transposed: bool):
        super().__init__()
        self.encoder = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.decoder = (nn.ConvTranspose2d(4, 1, 3, stride=2, padding=1, output_padding=1) if transposed else
                        nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(4, 1, 3, padding=1)))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def test_checkerboard_section_tells_resize_conv_from_uneven_transposed_conv(tmp_path):
    torch.manual_seed(0)
    low = torch.rand(32, 1, 8, 8)
    x = nn.functional.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False)
    resize = sections.checkerboard(_ctx(_ConvCodeAE(False), x, tmp_path))
    assert resize["crop"] == 2 and resize["spatial_code"]
    assert resize["constant"]["alias_rms"] < 1e-6  # shift-invariant layers map a constant to a constant
    assert resize["conv_layers"] == ["decoder.1"]
    model = _ConvCodeAE(False)  # decode given as a callable: its modules are found by running it (each listed once)
    called = sections.checkerboard(_ctx(model, x, tmp_path, decode=lambda z: model.decoder(z)))
    assert called["conv_layers"] == ["decoder.1"] and called["constant"]["alias_rms"] < 1e-6
    uneven = sections.checkerboard(_ctx(_ConvCodeAE(True), x, tmp_path))
    assert uneven["constant"]["alias_rms"] > 1e-3  # kernel 3, stride 2: the Odena et al. artifact
    assert uneven["constant"]["alias_rms"] > 1e3 * max(resize["constant"]["alias_rms"], 1e-9)


def test_readings_follow_the_numbers():
    of = dict(gap=-0.01, test_error=0.1, train_error=0.11)
    assert READINGS["overfitting"](of).startswith("No generalisation gap")
    of = dict(gap=0.02, test_error=0.1, train_error=0.08, encoder_gap_matched=0.005, decoder_gap_matched=0.015,
              refit_shortfall=0.001)
    text = READINGS["overfitting"](of)
    assert "most of the gap is in the decoder" in text and "reliable" in text
    of.update(encoder_gap_matched=0.015, decoder_gap_matched=0.005, refit_shortfall=0.03)
    text = READINGS["overfitting"](of)
    assert "most of the gap is in the encoder" in text and "under-estimated" in text
    stats = lambda f: dict(nyquist_fraction=f, alias_rms=0.0)  # noqa: E731
    cb = dict(random=stats(0.3), reconstructions=stats(0.2), data_images=stats(0.2 / (ALIAS_EXCESS + 0.5)),
              constant=stats(0.0), spatial_code=False, crop=0)
    assert "adds period-2" in READINGS["checkerboard"](cb)
    cb["data_images"] = stats(0.2 / (ALIAS_EXCESS - 0.5))
    assert "no excess period-2" in READINGS["checkerboard"](cb)
    path = dict(pairs=[[0, 1]], steps=8, nn_mse_decoded=0.02, nn_mse_decoded_ends=0.01, nn_mse_blend=0.03,
                nn_mse_blend_ends=0.01)
    assert "leaves the data between its end points" in READINGS["interpolation"](path)
    path["nn_mse_decoded"] = 0.012
    assert "stays as close to the data as its end points" in READINGS["interpolation"](path)
    assert reading("probe", {"status": "not applicable", "why": "x"}) == "Does not apply: x"


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    def boom(ctx):
        raise RuntimeError("broken probe\nsecond line")

    def skip(ctx):
        raise sections.NotApplicable("skipped in this test")

    for key in KEYS[1:]:
        monkeypatch.setitem(SECTIONS, key, skip)
    monkeypatch.setitem(SECTIONS, "ablation", boom)
    x = images(16)
    with pytest.warns(RuntimeWarning, match="section 'ablation' failed"):
        rep = aeprobe.inspect(TupleVAE(), x, out=tmp_path, budget=Budget.smoke(), progress=False)
    assert rep.section("ablation") | {} == {"status": "failed", "error": "RuntimeError: broken probe",
                                           "seconds": rep.section("ablation")["seconds"],
                                           "reading": "Failed: RuntimeError: broken probe"}
    assert rep.applies("architecture")
    with pytest.raises(RuntimeError, match="broken probe"):
        aeprobe.inspect(TupleVAE(), x, out=tmp_path, budget=Budget.smoke(), progress=False, strict=True)


def test_bad_inputs_are_refused_before_any_section(tmp_path):
    vae = TupleVAE()
    with pytest.raises(ValueError, match=r"cannot read the images of shape \(1, 4, 4\)"):
        aeprobe.inspect(vae, torch.rand(8, 1, 4, 4), out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="labels must be one label per image"):
        aeprobe.inspect(vae, images(8), labels=np.zeros(7), out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="x_test has per-image shape"):
        aeprobe.inspect(vae, images(8), torch.rand(8, 1, 4, 4), out=tmp_path, progress=False)

    class Padded(nn.Module):  # returns a bigger image next to the right one: the default pick is wrong
        def forward(self, x):
            return nn.functional.pad(x, (1, 1, 1, 1)), x

    with pytest.raises(ValueError, match="pass output=|output="):
        aeprobe.inspect(Padded(), images(8), out=tmp_path, progress=False)
    assert not (tmp_path / "results.json").exists()


def test_warnings_of_a_clean_run_are_none(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rep = aeprobe.inspect(sequential_ae(), images(16), out=tmp_path, budget=Budget.smoke(), progress=False,
                              strict=True)
    assert rep.applies("identity")
