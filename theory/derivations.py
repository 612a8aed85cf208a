r"""Symbolic derivations (sympy) behind :mod:`theory.disks` and :mod:`theory.position`.

1. :func:`euler_lagrange` — the optimality condition of Prop. 2. With
   ``F(r) = int_0^r f(s) s ds`` and ``G(rho) = int_rho^R F(r) dr``, the first variation of
   ``J(f) = int_0^R F(r)^2 dr`` (Eq. 7) in a direction ``eta`` is
   ``dJ = 2 int_0^R eta(rho) rho G(rho) d rho`` (Fubini); the constraint ``||f||^2 = int f^2 rho``
   contributes ``2 mu int eta rho f``. Stationarity for every ``eta`` gives ``G(rho) = mu f(rho)``.
   Differentiating twice: ``G' = -F`` and ``G'' = -rho f``, hence
   ``f'' = -k rho f`` with ``k = 1/mu``, ``f'(0) = -F(0)/mu = 0`` and ``f(R) = G(R)/mu = 0``.
   The Fubini step is verified exactly for polynomial ``f`` and ``eta`` with symbolic coefficients.
2. :func:`verify_airy_solution` — the closed form
   ``y = pi [Bi'(0) Ai(-k^{1/3} t) - Ai'(0) Bi(-k^{1/3} t)]`` solves ``y'' = -k t y``, ``y(0)=1``, ``y'(0)=0``.
3. :func:`verify_position_closed_form` — Prop. 3 / Eq. (15): ``L`` layers of ``[1, 2, 1]`` with
   stride 2 equal ``sum_i (2^L - i) x_i`` for symbolic ``x``.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

__all__ = ["ELDerivation", "euler_lagrange", "verify_airy_solution", "verify_position_closed_form", "symbolic_encoder"]


@dataclass
class ELDerivation:
    """The steps of :func:`euler_lagrange` as sympy objects."""

    first_variation_residual: sp.Expr  # dJ - 2 int eta rho G, for polynomial f, eta: simplifies to 0
    stationarity: sp.Eq  # G(rho) = mu f(rho)
    ode: sp.Eq  # f'' = -k rho f
    bc_origin: sp.Eq  # f'(0) = 0
    bc_R: sp.Eq  # f(R) = 0

    @property
    def ode_holds(self) -> bool:
        """Whether the derived ODE is ``f'' + k rho f = 0`` (checked symbolically)."""
        rho, k = sp.symbols("rho k", positive=True)
        f = sp.Function("f")
        return sp.simplify(self.ode.lhs - self.ode.rhs - (f(rho).diff(rho, 2) + k * rho * f(rho))) == 0


def euler_lagrange(degree: int = 3) -> ELDerivation:
    """Derive the Euler-Lagrange equation of Eq. (7) under ``||f|| = 1`` (see module docstring).

    ``degree`` sets the polynomial degree of ``f`` and ``eta`` used to verify the first
    variation exactly (symbolic coefficients, so it holds for all such polynomials).
    """
    rho, r, s, R, eps, mu = sp.symbols("rho r s R epsilon mu", positive=True)
    a = sp.symbols(f"a0:{degree + 1}")
    b = sp.symbols(f"b0:{degree + 1}")
    f_poly = sum(ai * s**i for i, ai in enumerate(a))
    eta_poly = sum(bi * s**i for i, bi in enumerate(b))

    def F_of(g, upper):  # int_0^upper g(s) s ds
        return sp.integrate(g * s, (s, 0, upper))

    J = sp.integrate(F_of(f_poly + eps * eta_poly, r) ** 2, (r, 0, R))
    dJ = sp.diff(J, eps).subs(eps, 0)
    G_poly = sp.integrate(F_of(f_poly, r), (r, rho, R))
    rhs = 2 * sp.integrate((eta_poly.subs(s, rho)) * rho * G_poly, (rho, 0, R))
    residual = sp.expand(dJ - rhs)

    # Generic f: G(rho) = int_rho^R F(r) dr, stationarity G = mu f, differentiate twice.
    f = sp.Function("f")
    k = sp.symbols("k", positive=True)
    F = sp.Integral(f(s) * s, (s, 0, r))
    G = sp.Integral(F, (r, rho, R))
    stationarity = sp.Eq(G, mu * f(rho))
    d1 = sp.Eq(sp.diff(G, rho).doit(), mu * f(rho).diff(rho))  # -F(rho) = mu f'(rho)
    d2 = sp.Eq(sp.diff(G, rho, 2).doit(), mu * f(rho).diff(rho, 2))  # -rho f(rho) = mu f''
    f2 = sp.solve(d2, f(rho).diff(rho, 2))[0]  # f'' = -rho f / mu
    ode = sp.Eq(f(rho).diff(rho, 2), sp.simplify(f2.subs(mu, 1 / k)))
    # f'(0) = -F(0)/mu = 0, since F(0) is an integral over an empty interval.
    fp = sp.solve(d1, f(rho).diff(rho))[0]
    bc0 = sp.Eq(sp.Symbol("fprime0"), sp.simplify(fp.subs(rho, 0).doit()))
    # f(R) = G(R)/mu = 0, since G(R) is an integral over an empty interval.
    bcR = sp.Eq(sp.Symbol("f_R"), sp.simplify((G / mu).subs(rho, R).doit()))
    return ELDerivation(residual, stationarity, ode, bc0, bcR)


def verify_airy_solution() -> dict[str, sp.Expr]:
    """Residuals of the Airy closed form; each simplifies to 0.

    Returns ``{"ode": y'' + k t y, "y0": y(0) - 1, "dy0": y'(0)}``.
    """
    t, k = sp.symbols("t k", positive=True)
    c = sp.cbrt(k)
    aip0 = sp.airyaiprime(0)
    bip0 = sp.airybiprime(0)
    y = sp.pi * (bip0 * sp.airyai(-c * t) - aip0 * sp.airybi(-c * t))
    ode = sp.simplify(sp.diff(y, t, 2) + k * t * y)
    y0 = sp.simplify(sp.expand_func(y.subs(t, 0)) - 1)
    dy0 = sp.simplify(sp.diff(y, t).subs(t, 0))
    return {"ode": ode, "y0": sp.nsimplify(sp.simplify(y0.rewrite(sp.gamma))), "dy0": dy0}


def symbolic_encoder(L: int) -> tuple[list[sp.Symbol], sp.Expr]:
    """Apply ``L`` layers of ``u(t) = u(2t-1) + 2u(2t) + u(2t+1)`` (zero padding) to symbols ``x_0..x_{2^L-1}``."""
    if int(L) != L or L < 1:
        raise ValueError(f"L must be an integer >= 1; got {L!r}")
    xs = list(sp.symbols(f"x0:{2 ** L}"))
    u = list(xs)
    while len(u) > 1:
        padded = [sp.Integer(0)] + u + [sp.Integer(0)]
        u = [padded[2 * t] + 2 * padded[2 * t + 1] + padded[2 * t + 2] for t in range(len(u) // 2)]
    return xs, sp.expand(u[0])


def verify_position_closed_form(L: int) -> sp.Expr:
    """``E(x) - sum_i (2^L - i) x_i`` for symbolic ``x`` (Prop. 3, Eq. 15); it expands to 0."""
    xs, E = symbolic_encoder(L)
    closed = sum((2**L - i) * x for i, x in enumerate(xs))
    return sp.expand(E - closed)
