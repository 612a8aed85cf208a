"""sympy derivations: Euler-Lagrange of Eq. (7) and the closed form of Prop. 3."""
import pytest
import sympy as sp

from theory.derivations import euler_lagrange, symbolic_encoder, verify_airy_solution, verify_position_closed_form


def test_euler_lagrange_reduces_to_airy_ode():
    d = euler_lagrange(degree=3)
    # exact identity for all cubic f and eta (symbolic coefficients): Fubini step of the first variation
    assert d.first_variation_residual == 0
    assert d.ode_holds
    assert d.bc_origin.rhs == 0
    assert d.bc_R.rhs == 0


def test_airy_closed_form_solves_the_ode_symbolically():
    res = verify_airy_solution()
    assert all(sp.simplify(v) == 0 for v in res.values()), res


@pytest.mark.parametrize("L", range(1, 7))
def test_prop3_closed_form(L):
    assert verify_position_closed_form(L) == 0


def test_symbolic_encoder_detects_a_wrong_filter():
    """The check can fail: a closed form with one wrong weight leaves a non-zero residual."""
    xs, E = symbolic_encoder(3)
    wrong = sum((8 - i) * x for i, x in enumerate(xs)) + xs[3]
    assert sp.expand(E - wrong) != 0
