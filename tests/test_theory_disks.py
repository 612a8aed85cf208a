"""Prop. 2 / App. B of Newson et al.: the Airy profile is the optimal bias-free disk decoder."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from theory.disks import (
    AIRY_ZERO,
    airy_k,
    airy_profile,
    airy_profile_derivative,
    decoding_energy,
    optimal_amplitude,
    optimal_energy,
    optimal_profile,
    radial_image,
)

radii_R = st.floats(min_value=2.0, max_value=64.0, allow_nan=False)


@given(R=radii_R, u=st.lists(st.floats(0.0, 0.999), min_size=1, max_size=8))
def test_airy_profile_solves_its_ode(R, u):
    """y'' = -k t y, y(0)=1, y'(0)=0, integrated independently with a tight RK solver."""
    k = airy_k(R)
    t_eval = np.unique(np.asarray(u)) * R
    sol = solve_ivp(lambda t, y: [y[1], -k * t * y[0]], (0.0, R), [1.0, 0.0], t_eval=t_eval, rtol=1e-11, atol=1e-13,
                    method="DOP853")
    # tolerance: the ODE solver's accuracy at rtol=1e-11 over one oscillation is ~1e-9
    np.testing.assert_allclose(airy_profile(t_eval, R), sol.y[0], atol=1e-8)
    np.testing.assert_allclose(airy_profile_derivative(t_eval, R), sol.y[1], atol=1e-8)


@given(R=radii_R, t=st.floats(0.01, 0.99))
def test_second_derivative_by_finite_differences(R, t):
    """Central second difference of the closed form vs -k t y (O(h^2) ~ 1e-6 relative at h = 1e-3 R)."""
    h = 1e-3 * R
    x = t * R
    y = airy_profile(np.array([x - h, x, x + h]), R)
    ypp = (y[0] - 2 * y[1] + y[2]) / h**2
    assert ypp == pytest.approx(-airy_k(R) * x * y[1], abs=1e-5 * airy_k(R) * R)


@given(R=radii_R)
def test_initial_conditions_and_first_zero_at_R(R):
    assert airy_profile(np.array([0.0]), R)[0] == pytest.approx(1.0, abs=1e-14)
    assert airy_profile_derivative(np.array([0.0]), R)[0] == pytest.approx(0.0, abs=1e-14)
    t = np.linspace(0, R, 2001)[:-1]
    f = airy_profile(t, R)
    assert np.all(f > 0), "the profile must be positive before its first zero"
    # the closed form right before R tends to 0 (first zero exactly at R): |f(R - d)| ~ |f'(R)| d
    just_before = airy_profile(np.array([R * (1 - 1e-9)]), R)[0]
    assert abs(just_before) < 1e-7
    assert np.all(airy_profile(np.array([R, R + 1.0, 10 * R]), R) == 0.0)


def test_airy_zero_constant():
    # s0 is the first zero of pi[Bi'(0)Ai(-s) - Ai'(0)Bi(-s)]; value from the closed form, 1.98635...
    assert AIRY_ZERO == pytest.approx(1.9863527074, abs=1e-9)


def test_optimal_profile_converges_to_airy():
    """Rayleigh-Ritz with P1 elements: eigenvector error is O(h^2).

    Measured max|f_n - airy| ~ 7e-6 at n = 200 and 1.8e-6 at n = 400 for R = 20; we require
    the error to drop by at least 3x per doubling (4x is the O(h^2) rate) and to be < 1e-4 at n = 400.
    """
    R = 20.0
    errs = []
    for n in (50, 100, 200, 400):
        rho, f = optimal_profile(R, n)
        assert f[0] == 1.0
        errs.append(np.max(np.abs(f - airy_profile(rho, R))))
    assert all(e1 / e2 > 3.0 for e1, e2 in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-4


@given(R=st.floats(3.0, 40.0))
@settings(max_examples=10)
def test_optimal_energy_matches_airy_energy(R):
    """The maximal J (top eigenvalue) equals J of the Airy profile; both scale as R^3."""
    rho = np.linspace(0, R, 4001)
    j_airy = decoding_energy(airy_profile(rho, R), rho, R)
    j_opt = optimal_energy(R, 300)
    # trapezoid quadrature at 4001 points: relative error < 1e-5 (measured ~3e-7)
    assert j_airy == pytest.approx(j_opt, rel=1e-5)
    assert j_opt / R**3 == pytest.approx(optimal_energy(1.0, 300), rel=1e-9)


coef = st.floats(-1.0, 1.0, allow_nan=False)


@given(R=st.floats(4.0, 40.0), coeffs=st.lists(coef, min_size=1, max_size=6), outside=st.floats(0.0, 1.0))
def test_airy_beats_random_admissible_profiles(R, coeffs, outside):
    """J(airy) >= J(g) for random profiles g (any norm; J is normalised by ||g||^2).

    g mixes cosines on [0, R] (smooth radial profiles) plus optional mass beyond R. Tolerance:
    the trapezoid rule's discrete maximum exceeds the continuum one by < 1e-5 relative at 4001 points.
    """
    T = 1.5 * R
    rho = np.linspace(0, T, 4001)
    g = sum(c * np.cos(i * np.pi * rho / R) for i, c in enumerate(coeffs)) * (rho < R) + outside * (rho >= R)
    if np.sum(g**2) < 1e-12:
        g = np.ones_like(rho)
    j_airy = decoding_energy(airy_profile(rho, R), rho, R)
    assert decoding_energy(g, rho, R) <= j_airy * (1 + 1e-5)


def test_energy_of_known_profiles():
    """Hand calculations: f = 1 on [0, R] gives J = R^5/20 and ||f||^2 = R^2/2, so J/||f||^2 = R^3/10."""
    R = 10.0
    rho = np.linspace(0, R, 20001)
    assert decoding_energy(np.ones_like(rho), rho, R) == pytest.approx(R**3 / 10, rel=1e-6)
    assert decoding_energy(np.ones_like(rho), rho, R, normalize=False) == pytest.approx(R**5 / 20, rel=1e-6)
    # Airy is strictly better than the constant profile (J*/R^3 ~ 0.1276 > 0.1)
    assert decoding_energy(airy_profile(rho, R), rho, R) / R**3 > 0.12


def test_optimal_amplitude_matches_direct_projection():
    """h(r) = <f, 1_Br>/||f||^2 (Eq. 8): for f = 1_{B_R}, h(r) = area(B_r)/area(B_R) for r <= R."""
    m, R = 64, 20.0
    f = (radial_image(lambda d: (d <= R).astype(float), m)).astype(float)
    radii = np.array([3.0, 7.5, 12.0, 19.0])
    h = optimal_amplitude(f, radii, supersample=1)
    d = radial_image(lambda d: d, m)
    expected = np.array([(d <= r).sum() for r in radii]) / (d <= R).sum()
    np.testing.assert_allclose(h, expected, rtol=1e-12)
    # with supersampling, 1_Br is an area fraction: total ~ pi r^2 within 1 % for r >= 3
    hs = optimal_amplitude(np.ones((m, m)), radii, supersample=8) * m * m
    np.testing.assert_allclose(hs, np.pi * radii**2, rtol=0.01)


def test_optimal_amplitude_minimises_eq6():
    """For fixed f the h of Eq. (8) minimises ||h f - 1_Br||^2: perturbing h only increases it."""
    m = 32
    f = radial_image(lambda d: airy_profile(d, 14.0), m)
    for r in (4.0, 9.0, 13.0):
        h = optimal_amplitude(f, r, supersample=1)
        disk = (radial_image(lambda d: d, m) <= r).astype(float)
        loss = lambda hh: np.sum((hh * f - disk) ** 2)  # noqa: E731
        assert loss(h) <= min(loss(h * 1.01), loss(h * 0.99))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: airy_k(0.0), "R"),
        (lambda: airy_k(-3.0), "R"),
        (lambda: airy_k(float("nan")), "R"),
        (lambda: airy_profile([0.0, float("nan")], 10.0), "non-finite"),
        (lambda: airy_profile([-1.0], 10.0), ">= 0"),
        (lambda: decoding_energy([1, 1, 1], [0, 1, 2], 0), "R"),
        (lambda: decoding_energy([1, np.nan, 1], [0, 1, 2], 2.0), "non-finite"),
        (lambda: decoding_energy([1, 1], [0, 1, 2], 2.0), "same length"),
        (lambda: optimal_profile(-1.0), "R"),
        (lambda: optimal_energy(10.0, 1), "n must be an integer >= 4"),
        (lambda: optimal_energy(10.0, 3), "n must be an integer >= 4"),
        (lambda: optimal_energy(10.0, 7.5), "n must be an integer >= 4"),
        (lambda: optimal_energy(10.0, "200"), "n must be an integer >= 4"),
        (lambda: optimal_profile(10.0, 2), "n must be an integer >= 4"),
        (lambda: optimal_amplitude(np.ones(5), [1.0]), "2-D"),
        (lambda: optimal_amplitude(np.zeros((5, 5)), [1.0]), "zero norm"),
    ],
)
def test_bad_input_raises_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
