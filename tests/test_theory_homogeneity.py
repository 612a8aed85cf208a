"""Prop. 1 of Newson et al.: bias-free networks with leaky ReLU are positively homogeneous."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from theory.homogeneity import CONDITIONS, check_homogeneity


def numpy_fn(module):
    def fn(z):
        with torch.no_grad():
            return module(torch.as_tensor(z, dtype=torch.float64)).numpy()

    return fn


def mlp(widths, bias, seed):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b, bias=bias), nn.LeakyReLU(0.2)]
    net = nn.Sequential(*layers[:-1]).double()
    if bias:  # default init can give tiny biases; make them clearly non-zero
        for m in net.modules():
            if isinstance(m, nn.Linear):
                nn.init.uniform_(m.bias, 0.5, 1.0)
    return net


class ConvDecoder(nn.Module):
    """Scalar code -> image with upsampling + 3x3 convs, as Newson's decoder."""

    def __init__(self, depths, bias):
        super().__init__()
        self.depths = depths
        layers = []
        for a, b in zip(depths, depths[1:]):
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(a, b, 3, padding=1, bias=bias), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers[:-1])
        if bias:
            for m in self.net.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.uniform_(m.bias, 0.5, 1.0)

    def forward(self, z):
        return self.net(z.reshape(z.shape[0], self.depths[0], 1, 1))


widths_st = st.lists(st.integers(1, 12), min_size=2, max_size=5)


@given(widths=widths_st, seed=st.integers(0, 10_000))
@settings(max_examples=25)
def test_bias_free_mlp_is_homogeneous(widths, seed):
    net = mlp(widths, bias=False, seed=seed)
    z = np.random.default_rng(seed).normal(size=(16, widths[0]))
    rep = check_homogeneity(numpy_fn(net), z)
    # float64 forward: rounding ~1e-16 per op, but an output that is a near-cancelling sum
    # (e.g. width-1 output) amplifies it relative to |D(z)|; measured worst ~1e-12, bound 1e-9.
    # Biased nets sit above 1e-3, so the bound still separates the two cases by 6 decades.
    assert rep.max_rel_error < 1e-9
    assert rep.holds()


@given(widths=widths_st, seed=st.integers(0, 10_000))
@settings(max_examples=25)
def test_biased_mlp_violates_homogeneity(widths, seed):
    net = mlp(widths, bias=True, seed=seed)
    z = np.random.default_rng(seed).normal(size=(16, widths[0]))
    rep = check_homogeneity(numpy_fn(net), z)
    # a bias b in the last layer alone gives D(lz) - lD(z) = (1-l) b != 0 for l != 1
    assert rep.max_rel_error > 1e-3
    assert not rep.holds()


@given(depths=st.lists(st.integers(1, 4), min_size=2, max_size=4), seed=st.integers(0, 1000))
@settings(max_examples=10)
def test_conv_decoder_homogeneity(depths, seed):
    torch.manual_seed(seed)
    z = np.random.default_rng(seed).normal(size=(8, depths[0]))
    free = ConvDecoder(depths, bias=False).double()
    assert check_homogeneity(numpy_fn(free), z).max_rel_error < 1e-9
    biased = ConvDecoder(depths, bias=True).double()
    assert check_homogeneity(numpy_fn(biased), z).max_rel_error > 1e-3


def test_float32_precision_and_report_fields():
    net = mlp([1, 8, 8, 16], bias=False, seed=0).float()

    def fn(z):
        with torch.no_grad():
            return net(torch.as_tensor(z, dtype=torch.float32)).numpy()

    rep = check_homogeneity(fn, np.linspace(-2, 2, 9), lambdas=[0.5, 2.0, 7.0])
    # float32: relative rounding ~6e-8 per op, a few ops deep
    assert rep.max_rel_error < 1e-5
    assert rep.rel_errors.shape == (3, 9)
    assert rep.n_codes == 9
    assert "bias-free" in rep.statement and "Prop. 1" in CONDITIONS


def test_sigmoid_output_breaks_homogeneity_without_bias():
    net = nn.Sequential(nn.Linear(1, 4, bias=False), nn.Sigmoid()).double()
    assert check_homogeneity(numpy_fn(net), np.array([0.3, 1.0, -2.0])).max_rel_error > 1e-2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(z=[np.nan]), "non-finite"),
        (dict(z=[1.0], lambdas=[-1.0]), "> 0"),
        (dict(z=np.zeros((0, 1))), "at least one"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_homogeneity(lambda z: z, **kwargs)
