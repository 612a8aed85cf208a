"""Activation patching (aeprobe.patching) on constructed models whose effects are known in closed form."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from aeprobe.activation_patching import PatchingReport, patching
from aeprobe.state import assert_unchanged, snapshot

G = torch.Generator().manual_seed(0)
XC = torch.randn(4, 5, generator=G)
XK = torch.randn(4, 5, generator=G)


class TwoBranch(nn.Module):
    """``y = a(x) + b(x)``: with a linear metric, patching branch ``a`` restores exactly its share."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 3)
        self.b = nn.Linear(5, 3)

    def forward(self, x):
        return self.a(x) + self.b(x)


class SharedTwice(nn.Module):
    """``y = out(lin(x) + lin(2 x))``: the shared ``lin`` carries 1/3 of the signal in call 0, 2/3 in call 1."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(self.lin(x) + self.lin(2 * x))


class AE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
        self.decoder = nn.Sequential(nn.Linear(2, 8), nn.ReLU(inplace=True), nn.Linear(8, 5))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def test_branch_effects_match_the_closed_form():
    """metric = sum(y) is linear, so effect[a] = sum(a(xc) - a(xk)) / sum(y(xc) - y(xk)) and the two
    branch effects add up to 1 (float32 rounding of ~20 terms: 1e-5 relative)."""
    torch.manual_seed(0)
    m = TwoBranch().eval()
    rep = patching(m, XC, XK, ["a", "b"], lambda y: y.sum())
    with torch.no_grad():
        da = (m.a(XC) - m.a(XK)).sum().item()
        db = (m.b(XC) - m.b(XK)).sum().item()
    assert isinstance(rep, PatchingReport) and rep.names == ["a", "b"]
    assert rep.effect["a"] == pytest.approx(da / (da + db), rel=1e-5)
    assert rep.effect["a"] + rep.effect["b"] == pytest.approx(1.0, rel=1e-5)
    assert rep.clean == pytest.approx(m(XC).sum().item(), rel=1e-6)
    assert rep.corrupted == pytest.approx(m(XK).sum().item(), rel=1e-6)
    # the branches do not carry the same share, so the test can tell them apart
    assert abs(rep.effect["a"] - rep.effect["b"]) > 0.1


def test_patching_the_whole_code_restores_the_clean_output():
    """The decoder only sees the code: patching ``encoder`` gives exactly the clean output (effect 1;
    the batch of 4 runs alongside the corrupted one, so up to float rounding: 1e-5)."""
    torch.manual_seed(0)
    ae = AE().eval()
    metric = lambda y: y.sum()  # noqa: E731
    rep = patching(ae, XC, XK + 3.0, ["encoder", "encoder.*"], metric)
    assert rep.effect["encoder"] == pytest.approx(1.0, abs=1e-5)
    assert rep.effect["encoder.2"] == pytest.approx(1.0, abs=1e-5)  # the code's last layer is the code too
    assert rep.patched["encoder"] == pytest.approx(rep.clean, rel=1e-5)
    assert abs(rep.corrupted - rep.clean) > 0.1  # a denominator far above float rounding (~1e-6)
    assert set(rep.effect) == {"encoder", "encoder.0", "encoder.1", "encoder.2"}


def test_calls_patch_one_call_of_a_shared_module():
    torch.manual_seed(0)
    m = SharedTwice().eval()
    metric = lambda y: y.sum()  # noqa: E731
    # metric linear in lin's outputs with weights 1 per call; lin(x) and lin(2x) differ by the
    # clean/corrupted inputs as (xc - xk) and 2 (xc - xk): shares 1/3 and 2/3
    first = patching(m, XC, XK, "lin", metric, calls=0)
    second = patching(m, XC, XK, "lin", metric, calls="last")
    both = patching(m, XC, XK, "lin", metric, calls="all")
    listed = patching(m, XC, XK, "lin", metric, calls=[1, 0])
    assert first.effect["lin"] == pytest.approx(1 / 3, rel=1e-5)
    assert second.effect["lin"] == pytest.approx(2 / 3, rel=1e-5)
    assert both.effect["lin"] == pytest.approx(1.0, rel=1e-5) == listed.effect["lin"]
    assert first.n_calls == {"lin": 2} and second.calls == {"lin": [1]} and listed.calls == {"lin": [0, 1]}
    with pytest.raises(ValueError, match="runs 2 time"):
        patching(m, XC, XK, "lin", metric, calls=2)


@pytest.mark.parametrize("batch_size", [1, 3, 8, 9, 100])
def test_batch_size_changes_nothing_but_the_packing(batch_size):
    """One run per forward (None) vs split runs (1, 3) vs several runs per forward (8, 9, 100): same
    effects up to float rounding of differently sized matmuls (1e-5)."""
    torch.manual_seed(0)
    ae = AE().eval()
    names = ["encoder.0", "encoder.1", "decoder.0", "decoder.1"]
    metric = lambda y: (y - XC).abs().mean()  # noqa: E731
    ref = patching(ae, XC, XK, names, metric)
    rep = patching(ae, XC, XK, names, metric, batch_size=batch_size)
    for n in names:
        assert rep.effect[n] == pytest.approx(ref.effect[n], abs=1e-5)
    assert 0.0 < ref.effect["encoder.0"] and ref.effect["decoder.1"] == pytest.approx(1.0, abs=1e-5)


def test_tuple_outputs_are_patched_whole():
    torch.manual_seed(0)

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.mu = nn.Linear(5, 2)
            self.lv = nn.Linear(5, 2)

        def forward(self, x):
            return self.mu(x), self.lv(x)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = Enc()
            self.dec = nn.Linear(4, 5)

        def forward(self, x):
            return self.dec(torch.cat(self.enc(x), 1))

    vae = VAE().eval()
    for bs in (None, 2, 16):
        rep = patching(vae, XC, XK, ["enc", "enc.mu"], lambda y: y.sum(), batch_size=bs)
        assert rep.effect["enc"] == pytest.approx(1.0, abs=1e-5)
        assert 0.0 < abs(rep.effect["enc.mu"]) and rep.effect["enc.mu"] != pytest.approx(1.0, abs=1e-3)


def test_model_restored_and_train_mode_handled():
    """A train-mode BatchNorm model: clean and corrupted are not stacked (their batch statistics would
    mix); eval=True runs in eval mode; either way the model is bit-identical afterwards."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()
    m(torch.randn(16, 5))
    before = snapshot(m)
    with pytest.warns(RuntimeWarning, match="BatchNorm1d"):
        rep = patching(m, XC, XK, ["0", "1"], lambda y: y.square().sum())
    assert rep.effect["1"] == pytest.approx(1.0, abs=1e-5)
    assert_unchanged(m, before)
    rep_eval = patching(m, XC, XK, ["0"], lambda y: y.square().sum(), eval=True)
    with torch.no_grad():
        m.eval()
        ref = (m(XC).square().sum() - m(XK).square().sum()).item()
        m.train()
    assert rep_eval.clean - rep_eval.corrupted == pytest.approx(ref, rel=1e-5)
    assert_unchanged(m, before)

    class Boom(Exception):
        pass

    def bad_metric(y):
        raise Boom()

    with pytest.raises(Boom):
        patching(m, XC, XK, ["0"], bad_metric, eval=True)
    assert_unchanged(m, before)


def test_undefined_effect_and_bad_arguments(tmp_path):
    torch.manual_seed(0)
    m = TwoBranch().eval()
    with pytest.warns(RuntimeWarning, match="undefined"):
        rep = patching(m, XC, XC.clone(), ["a"], lambda y: y.sum())
    assert math.isnan(rep.effect["a"])
    with pytest.raises(ValueError, match="same shape"):
        patching(m, XC, XK[:2], "a", lambda y: y.sum())
    with pytest.raises(ValueError, match="scalar"):
        patching(m, XC, XK, "a", lambda y: y)
    with pytest.raises(KeyError, match="close matches: 'a'"):
        patching(m, XC, XK, "aa", lambda y: y.sum())
    m.unused = nn.Linear(2, 2)
    with pytest.raises(KeyError, match="did not run"):
        patching(m, XC, XK, "unused", lambda y: y.sum())
    with pytest.raises(ValueError, match="batch_size"):
        patching(m, XC, XK, "a", lambda y: y.sum(), batch_size=0)
    rep = patching(m, XC, XK, ["a", "b"], lambda y: y.sum())
    path = rep.plot(tmp_path / "patching.png")
    assert path.exists() and path.stat().st_size > 1000
