"""Sect. 5 / Prop. 3 of Newson et al.: [1,2,1] + stride 2 encodes a Dirac's position."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from theory.position import closed_form_weights, encode, layer, triangular_dirac

# Table 2 of the paper, n = 8: u(1), u(2), u(3) for the one-hot at each position.
TABLE_2 = [
    ([2, 0, 0, 0], [4, 0], 8),
    ([1, 1, 0, 0], [3, 1], 7),
    ([0, 2, 0, 0], [2, 2], 6),
    ([0, 1, 1, 0], [1, 3], 5),
    ([0, 0, 2, 0], [0, 4], 4),
    ([0, 0, 1, 1], [0, 3], 3),
    ([0, 0, 0, 2], [0, 2], 2),
    ([0, 0, 0, 1], [0, 1], 1),
]


@pytest.mark.parametrize("a", range(8))
def test_table_2_exactly(a):
    x = np.eye(8)[a]
    u1 = layer(x)
    u2 = layer(u1)
    u3 = layer(u2)
    assert u1.tolist() == TABLE_2[a][0]
    assert u2.tolist() == TABLE_2[a][1]
    assert u3.tolist() == [TABLE_2[a][2]]


@given(L=st.integers(1, 10), data=st.data())
def test_encode_one_hot_equals_closed_form(L, data):
    n = 2**L
    a = data.draw(st.integers(0, n - 1))
    x = np.zeros(n)
    x[a] = 1.0
    assert encode(x) == n - a
    assert encode(x) == closed_form_weights(L) @ x


@given(L=st.integers(1, 10), data=st.data())
def test_encode_is_linear_on_nonnegative_inputs(L, data):
    n = 2**L
    x = data.draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 100.0)))
    # float64 sums of <= 1024 terms of size <= 1e5: relative error well below 1e-12
    assert encode(x) == pytest.approx(closed_form_weights(L) @ x, rel=1e-12, abs=1e-9)


@given(L=st.integers(1, 6), batch=st.integers(1, 5), data=st.data())
def test_batched_layers(L, batch, data):
    x = data.draw(hnp.arrays(np.float64, (batch, 2**L), elements=st.floats(-10, 10)))
    np.testing.assert_allclose(encode(x), x @ closed_form_weights(L), atol=1e-9)
    assert layer(x).shape == (batch, 2 ** (L - 1))


@given(n=st.integers(2, 128), data=st.data())
def test_triangular_dirac_mass_and_position(n, data):
    a = data.draw(st.floats(0.0, n - 1.0))
    y = triangular_dirac(a, n)
    assert y.shape == (n,)
    assert y.sum() == pytest.approx(1.0, abs=1e-12)
    assert (np.arange(n) * y).sum() == pytest.approx(a, abs=1e-9)
    assert np.count_nonzero(y) <= 2


def test_triangular_dirac_integer_positions_are_one_hots():
    np.testing.assert_array_equal(triangular_dirac(np.arange(8.0), 8), np.eye(8))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: layer(np.ones(6)), "power of two"),
        (lambda: encode(np.ones(1)), "power of two"),
        (lambda: encode(np.array([1.0, np.nan])), "non-finite"),
        (lambda: closed_form_weights(0), "L"),
        (lambda: triangular_dirac(np.nan, 8), "non-finite"),
        (lambda: triangular_dirac(1.0, 0), "n"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
