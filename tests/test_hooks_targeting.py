"""Targeting in aeprobe.hooks: per-call (``calls=``), wildcard names, ``select=`` on tuple/dict
outputs, and the edit helpers. Every expected value is computed independently of the hooks (same
ops on the same data in the same order), so equalities are exact unless stated."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from aeprobe._modules import resolve_modules
from aeprobe.ablation import remove_biases
from aeprobe.hooks import capture, intervene, set_value, stream, zero_channels


class Shared(nn.Module):
    """``out(tanh(lin(tanh(lin(x)))))``: ``lin`` runs twice per forward."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.lin(torch.tanh(self.lin(x)))))

    @torch.no_grad()
    def calls(self, x):
        h1 = self.lin(x)
        h2 = self.lin(torch.tanh(h1))
        return h1, h2


@pytest.fixture
def shared():
    torch.manual_seed(0)
    return Shared()


X = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
X2 = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))


# ----------------------------------------------------------------------------- calls= on capture
def test_capture_selects_calls_of_a_shared_module(shared):
    h1, h2 = shared.calls(X)
    with capture(shared, "lin", calls=0) as c0, capture(shared, "lin", calls=1) as c1, \
            capture(shared, "lin", calls=[1, 0]) as both, capture(shared, "lin", calls="all") as every, \
            capture(shared, "lin", calls=2) as c2:
        shared(X)
    assert torch.equal(c0["lin"], h1) and torch.equal(c1["lin"], h2)
    assert [t.shape for t in both["lin"]] == [(4, 3)] * 2
    assert torch.equal(both["lin"][0], h2) and torch.equal(both["lin"][1], h1)  # in the order asked
    assert len(every["lin"]) == 2 and torch.equal(every["lin"][1], h2)
    with pytest.raises(KeyError, match="did not run"):
        c2["lin"]  # the module ran twice: there is no call 2


def test_calls_are_counted_per_forward_also_when_a_submodule_is_called_directly():
    """The count restarts at each forward of the outermost enclosing module that runs -- here
    ``model.encoder(x)`` called directly, as ``model.encode(x)`` would."""
    torch.manual_seed(0)
    model = nn.Module()
    model.encoder = Shared()
    with capture(model, "encoder.lin", calls=1) as acts:
        model.encoder(X)
        model.encoder(X2)
    assert torch.equal(acts["encoder.lin"], model.encoder.calls(X2)[1])


def test_calls_spec_is_validated(shared):
    for bad, err in ((-1, ValueError), ([0, 0], ValueError), ([], ValueError), ("first", ValueError),
                     (1.0, TypeError), (True, TypeError)):
        with pytest.raises(err, match="calls"):
            with capture(shared, "lin", calls=bad):
                pass
    with pytest.raises(ValueError, match="calls='last'"):
        with intervene(shared, {"lin": lambda t: t}, calls="last"):
            pass


# ----------------------------------------------------------------------------- calls= on intervene and stream
def test_intervene_edits_only_the_chosen_call(shared):
    h1, h2 = shared.calls(X)
    with torch.no_grad():
        only_second = shared.out(torch.tanh(torch.zeros_like(h2)))
        only_first = shared.out(torch.tanh(shared.lin(torch.tanh(torch.zeros_like(h1)))))
    zero = lambda t: torch.zeros_like(t)  # noqa: E731
    with torch.no_grad(), intervene(shared, {"lin": zero}, calls=1):
        y1 = shared(X)
    with torch.no_grad(), intervene(shared, {"lin": zero}, calls=[0]):
        y0 = shared(X)
    with torch.no_grad(), intervene(shared, {"lin": zero}):  # default: every call
        y_all = shared(X)
    assert torch.equal(y1, only_second) and torch.equal(y0, only_first)
    assert torch.equal(y_all, only_second)  # the second call is zeroed either way
    assert not torch.equal(y0, y1)
    # and the capture of the edited forward sees the edit on the second call only
    with torch.no_grad(), intervene(shared, {"lin": zero}, calls=1), capture(shared, "lin", calls="all") as acts:
        shared(X)
    assert torch.equal(acts["lin"][0], h1) and (acts["lin"][1] == 0).all()


def test_stream_reduces_the_chosen_calls(shared):
    batches = [X, X2]
    with stream(shared, "lin", "mean", calls=1) as second, stream(shared, "lin", "mean", calls="last") as last, \
            stream(shared, "lin", "mean") as every:
        for xb in batches:
            shared(xb)
    h2 = torch.cat([shared.calls(xb)[1] for xb in batches]).double()
    allcalls = torch.cat([torch.cat(shared.calls(xb)) for xb in batches]).double()
    torch.testing.assert_close(second["lin"].result(), h2.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last["lin"].result(), h2.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(every["lin"].result(), allcalls.mean(0), rtol=1e-12, atol=1e-12)
    assert second["lin"].count == 8 and every["lin"].count == 16


def test_stream_last_call_is_a_copy_safe_from_later_inplace_ops():
    """calls='last' holds the pending value until the forward ends: a later in-place op must not
    change what gets reduced."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(inplace=True))
    with stream(net, "0", "mean", calls="last") as red:
        net(X)
    torch.testing.assert_close(red["0"].result(), net[0](X).detach().double().mean(0), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- wildcards
class TinyAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2))
        self.decoder = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Sequential(nn.Linear(4, 6)))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def test_wildcards_expand_to_submodules():
    torch.manual_seed(0)
    ae = TinyAE()
    assert list(resolve_modules(ae, "decoder.*")) == ["decoder.0", "decoder.1", "decoder.2", "decoder.2.0"]
    assert list(resolve_modules(ae, "*.0")) == ["encoder.0", "decoder.0", "decoder.2.0"]
    assert list(resolve_modules(ae, ["decoder.1", "decoder.?"])) == ["decoder.1", "decoder.0", "decoder.2"]
    assert "" not in resolve_modules(ae, "*")  # a pattern never matches the model itself
    with pytest.raises(KeyError, match=r"no module matches the pattern 'decodr\.\*'.*close matches: 'decoder'"):
        resolve_modules(ae, "decodr.*")
    x = torch.randn(3, 6)
    with capture(ae, "decoder.*") as acts:
        y = ae(x)
    assert sorted(acts) == ["decoder.0", "decoder.1", "decoder.2", "decoder.2.0"]
    assert torch.equal(acts["decoder.2"], y.detach())
    with stream(ae, "encoder.[02]", "mean") as red:
        ae(x)
    assert sorted(red) == ["encoder.0", "encoder.2"]
    with torch.no_grad(), intervene(ae, {"decoder.*": lambda t: None}):  # pattern keys expand too
        assert torch.equal(ae(x), y.detach())
    with torch.no_grad(), remove_biases(ae, "decoder.*"):  # every name-taking tool accepts patterns
        assert (ae.decoder[0].bias == 0).all() and (ae.encoder[0].bias != 0).any()


def test_a_module_shared_under_two_names_is_matched_once_and_edited_once():
    torch.manual_seed(0)
    lin = nn.Linear(2, 2)
    model = nn.Sequential(lin, nn.Tanh(), lin)  # the same module registered as "0" and "2"
    assert list(resolve_modules(model, "*")) == ["0", "1"]
    with pytest.raises(ValueError, match="same module"):
        with intervene(model, {"0": lambda t: t, "2": lambda t: t}):
            pass


# ----------------------------------------------------------------------------- select= and the edit helpers
class TupleEncoder(nn.Module):
    """A VAE-style encoder returning ``(mu, logvar)``."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Linear(3, 2)
        self.logvar = nn.Linear(3, 2)

    def forward(self, x):
        return self.mu(x), self.logvar(x)


class TupleVAE(nn.Module):
    def __init__(self, as_dict: bool = False):
        super().__init__()
        self.enc = TupleEncoder()
        self.dec = nn.Linear(4, 3)
        self.as_dict = as_dict

    def forward(self, x):
        mu, logvar = self.enc(x)
        return self.dec(torch.cat([mu, logvar], 1))


def test_set_value_and_zero_channels_edit_the_selected_tensor_of_a_tuple():
    torch.manual_seed(0)
    vae = TupleVAE()
    with torch.no_grad():
        mu, logvar = vae.enc(X)
        mu_edit = mu.clone()
        mu_edit[:, 0] = 2.0
        ref = vae.dec(torch.cat([mu_edit, logvar], 1))
        ref_zero = vae.dec(torch.cat([mu, torch.zeros_like(logvar)], 1))
    with torch.no_grad(), capture(vae, "enc") as acts:
        with intervene(vae, {"enc": set_value(0, 2.0)}, select=0):
            y = vae(X)
    assert torch.equal(y, ref)
    assert torch.equal(acts["enc"][1], logvar)  # the rest of the tuple passes through unchanged
    with torch.no_grad(), intervene(vae, {"enc": set_value(0, 2.0, select=0)}):  # or on the helper
        assert torch.equal(vae(X), ref)
    with torch.no_grad(), intervene(vae, {"enc": zero_channels([0, 1], select=lambda out: out[1])}):
        assert torch.equal(vae(X), ref_zero)
    with pytest.raises(TypeError, match="select="):  # before: AttributeError: 'tuple' object has no attribute 'clone'
        with torch.no_grad(), intervene(vae, {"enc": set_value(0, 2.0)}):
            vae(X)


def test_select_by_key_on_dict_outputs_and_in_stream():
    torch.manual_seed(0)

    class DictEnc(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            z = self.lin(x)
            return {"mu": z, "scale": z.exp()}

    enc = DictEnc()
    with torch.no_grad(), intervene(enc, {"": set_value(1, -1.0)}, select="mu"):
        out = enc(X)
    z = enc.lin(X).detach()
    assert (out["mu"][:, 1] == -1.0).all() and torch.equal(out["mu"][:, 0], z[:, 0])
    assert torch.equal(out["scale"], z.exp())
    with stream(enc, "", "mean", select="scale") as red:
        enc(X)
    torch.testing.assert_close(red[""].result(), z.exp().double().mean(0), rtol=1e-12, atol=1e-12)
    with pytest.raises(KeyError, match="'sigma'.*keys"):
        with stream(enc, "", "mean", select="sigma"):
            enc(X)
    with pytest.raises(TypeError, match="own tensors"):  # a callable select must pick, not compute
        with intervene(enc, {"": set_value(0, 0.0)}, select=lambda out: out["mu"] * 1):
            enc(X)


def test_zero_channels_keeps_inf_channels_finite():
    """An inf in a zeroed channel becomes 0 (0 * inf would be NaN); other channels are untouched."""
    out = torch.randn(2, 3, 4, 4)
    out[:, 1] = float("inf")
    out[0, 2, 0, 0] = float("-inf")
    new = zero_channels(1)(out)
    assert (new[:, 1] == 0).all() and torch.isfinite(new[:, [0]]).all()
    assert torch.equal(new[:, [0, 2]], out[:, [0, 2]])  # including the -inf left in channel 2
    nan = torch.full((2, 3), float("nan"))
    assert (zero_channels([0, -1])(nan)[:, [0, 2]] == 0).all()
    with pytest.raises(IndexError, match="out of range"):
        zero_channels(5)(out)
    # through intervene, on a module whose channel overflows to inf
    lin = nn.Linear(2, 3)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.tensor([1.0, float("inf"), 2.0]))
    with torch.no_grad(), intervene(lin, {"": zero_channels(1)}):
        y = lin(torch.randn(5, 2))
    assert torch.isfinite(y).all() and (y[:, 1] == 0).all()
