"""Does an autoencoder copy its input? Three identity-mapping tests in one report.

Manakov et al. (Sec. 4.1, 4.3) argue that *complete* CAEs (as many bottleneck neurons as
input pixels) do not learn a copy function: their test error does not go to zero and a
linear probe on their codes beats one on the pixels. A copy function ``f(x) = x`` has
three signatures, each measured here:

(a) **It reconstructs anything.** ``ood_errors[name]`` is the mean per-element MSE on an
    input set far from the data: ``"uniform_noise"`` (i.i.d. uniform on the data's
    [min, max]), ``"shuffled_pixels"`` (each data image with its pixel positions randomly
    permuted -- same value histogram, no spatial structure) and any user-given set (e.g.
    another dataset). Two normalisations:

    * ``ood_ratios[name] = (ood_mse + floor) / (in_mse + floor)``: OOD error relative to the
      in-distribution error (``floor = 1e-12 * mean(x**2)`` only avoids 0/0). A copier
      scores ~1 (it reconstructs everything equally well); an AE that learnt the data
      manifold scores >> 1.
    * ``ood_unexplained[name] = ood_mse / var_ood``, with ``var_ood`` the per-element
      variance of that OOD set: the fraction of the OOD signal the AE fails to reproduce.
      0 for a copier, ~1 for a model that ignores its input (outputs a constant), between
      for a projection (e.g. ``(d - k) / d`` for isotropic noise through a rank-``k``
      linear AE in ``d`` dimensions).

(b) **Its Jacobian is the identity.** ``jacobian_distance`` is the mean over data points of
    ``||J(x) - I||_F^2 / d``, ``J = d f / d x`` the ``d x d`` input-output Jacobian: 0 for
    the identity, 1 for a constant map, ``(d - k) / d`` for an orthogonal rank-``k``
    projection. Two companions put it in scale: ``jacobian_energy``, the mean ``||J||_F^2 / d``
    (mean squared singular value; 1 for the identity, ``k / d`` for the projection), and
    ``jacobian_trace``, the mean ``tr(J) / d`` (mean eigenvalue; 1 for the identity, ``k / d``
    for the projection, 0 for a constant map). A copier has distance 0, energy 1, trace 1;
    a trained CAE with normalisation layers can have energy >> 1 (it amplifies small input
    changes) and then a large distance says little beyond "not the identity" -- the trace
    says whether ``J`` still points along the identity at all. Estimators (``jacobian_method``):

    * ``"exact"``: ``torch.func.jacrev`` on each flattened point (``d`` reverse passes);
      used when ``d <= exact_max_dim``.
    * ``"hutchinson"``: with Rademacher directions ``v`` (``E[v v^T] = I``),
      ``E_v ||(J - I)^T v||^2 = tr((J - I)(J - I)^T) = ||J - I||_F^2``, so the average of
      ``||J^T v - v||^2 / d`` over ``directions`` draws is an unbiased estimate
      (``J^T v`` by one ``torch.func.vjp`` pullback per direction; ``ad="jvp"`` uses
      ``J v`` by forward mode instead, same expectation). Its variance is
      ``2 (||M||_F^2 - sum_i M_ii^2) / (directions * d^2)`` per point, ``M = (J-I)(J-I)^T``
      (``(J-I)^T (J-I)`` for ``"jvp"``); ``jacobian_distance_se`` is the standard error over
      points, which includes it. Likewise ``E_v v^T J v = tr(J)`` gives the trace.

    Batches of points are pushed through together, which assumes the model treats samples
    independently (true in ``eval`` mode for convolutions, InstanceNorm and BatchNorm with
    running statistics; the probe switches the model to ``eval`` and restores it).

(c) **Its code is as informative as the pixels, no more.** With labels ``y``,
    ``probe_acc_codes`` and ``probe_acc_inputs`` are the accuracies of the same
    standardised logistic-regression probe (:func:`aeprobe.probes.linear.linear_probe`,
    same splits) on flattened codes and on raw inputs; ``probe_gap = codes - inputs``.
    A copying encoder (codes = a permutation of the pixels) gives ``probe_gap = 0``
    exactly; the paper found codes of complete CAEs *better* than pixels (gap > 0).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch

from aeprobe.probes.linear import linear_probe
from aeprobe.utils import check_images, eval_mode, on_device
from aeprobe.view import as_view


@dataclass
class IdentityReport:
    """Identity-mapping figures; see the module docstring for each one's meaning."""

    in_dist_error: float
    ood_errors: dict[str, float] = field(default_factory=dict)
    ood_ratios: dict[str, float] = field(default_factory=dict)
    ood_unexplained: dict[str, float] = field(default_factory=dict)
    jacobian_distance: float = float("nan")
    jacobian_distance_se: float = float("nan")
    jacobian_energy: float = float("nan")
    jacobian_trace: float = float("nan")
    jacobian_method: str = ""
    jacobian_points: int = 0
    jacobian_directions: int = 0
    input_dim: int = 0
    probe_acc_codes: float | None = None
    probe_acc_inputs: float | None = None
    probe_gap: float | None = None

    def looks_like_copy(self, tol: float = 0.1) -> bool:
        """True when every OOD set is reconstructed (unexplained < ``tol``) and the Jacobian
        is within ``tol`` of the identity (normalised squared Frobenius distance)."""
        ood_ok = all(v < tol for v in self.ood_unexplained.values())
        return bool(ood_ok and self.jacobian_distance < tol)


# ----------------------------------------------------------------------------- (a) OOD sets


def uniform_noise_like(x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """I.i.d. uniform noise with ``x``'s shape on ``[x.min(), x.max()]``."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        hi = lo + 1.0
    return lo + (hi - lo) * torch.rand(x.shape, generator=g, dtype=x.dtype)


def shuffle_pixels(x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Each sample's spatial positions randomly permuted (channels move together).

    ``[N, C, H, W]`` permutes the ``H * W`` positions; ``[N, d]`` permutes the ``d`` features.
    """
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    if x.ndim == 2:
        flat = x.unsqueeze(1)
    else:
        flat = x.reshape(n, x.shape[1], -1)
    p = flat.shape[-1]
    idx = torch.stack([torch.randperm(p, generator=g) for _ in range(n)])  # [N, P]
    out = torch.gather(flat, 2, idx.unsqueeze(1).expand(-1, flat.shape[1], -1))
    return out.reshape(x.shape)


# ----------------------------------------------------------------------------- (b) Jacobian


def _exact_point(fn, x1: torch.Tensor) -> tuple[float, float, float]:
    """(||J - I||_F^2 / d, ||J||_F^2 / d, tr(J) / d) of ``fn`` (x -> x_hat) at one point ``x1`` (no batch dim)."""
    from torch.func import jacrev

    shape = x1.shape
    d = x1.numel()

    def f(v):
        return fn(v.reshape(1, *shape)).reshape(-1)

    jac = jacrev(f, chunk_size=min(d, 256))(x1.reshape(-1)).detach()
    if jac.shape != (d, d):
        raise ValueError(f"model output has {jac.shape[0]} elements but input has {d}; "
                         "the identity tests need an autoencoder (output shape = input shape)")
    eye = torch.eye(d, dtype=jac.dtype, device=jac.device)
    return float(((jac - eye) ** 2).sum() / d), float((jac ** 2).sum() / d), float(torch.trace(jac) / d)


def _hutchinson_batch(fn, xb: torch.Tensor, directions: int, g: torch.Generator,
                      ad: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-point Hutchinson estimates of ||J - I||_F^2 / d, ||J||_F^2 / d and tr(J) / d for a batch."""
    from torch.func import jvp, vjp

    d = xb[0].numel()
    dist = torch.zeros(xb.shape[0], dtype=torch.float64)
    energy = torch.zeros_like(dist)
    trace = torch.zeros_like(dist)
    pullback = None
    if ad == "vjp":
        out, pullback = vjp(fn, xb)
        if out.shape != xb.shape:
            raise ValueError(f"model output shape {tuple(out.shape)} differs from input shape {tuple(xb.shape)}; "
                             "the identity tests need an autoencoder")
    for _ in range(directions):
        v = (torch.randint(0, 2, xb.shape, generator=g, dtype=torch.int64) * 2 - 1).to(xb.dtype).to(xb.device)
        if ad == "vjp":
            (u,) = pullback(v)
        else:
            with warnings.catch_warnings():  # torch's first forward-AD call scripts decompositions
                warnings.simplefilter("ignore", DeprecationWarning)
                out, u = jvp(fn, (xb,), (v,))
            if out.shape != xb.shape:
                raise ValueError(f"model output shape {tuple(out.shape)} differs from input shape "
                                 f"{tuple(xb.shape)}; the identity tests need an autoencoder")
        u = u.detach()
        dist += ((u - v) ** 2).reshape(xb.shape[0], -1).sum(1).double().cpu() / d
        energy += (u ** 2).reshape(xb.shape[0], -1).sum(1).double().cpu() / d
        trace += (u * v).reshape(xb.shape[0], -1).sum(1).double().cpu() / d  # v^T J v (or v^T J^T v)
    return dist / directions, energy / directions, trace / directions


def jacobian_identity_distance(model, x, *, method: str = "auto", directions: int = 32,
                               exact_max_dim: int = 256, ad: str = "vjp", batch_size: int = 64,
                               seed: int = 0, device=None) -> dict:
    """Mean ``||J(x) - I||_F^2 / d`` over the points ``x`` (see module docstring, test (b)).

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view; ``J`` is the Jacobian of its
    reconstruction (``model(x)`` read with ``output=``). Returns ``{"distance", "distance_se",
    "energy", "trace", "method", "points", "directions", "dim"}``. ``method``: ``"exact"``
    (jacrev), ``"hutchinson"`` (random Rademacher directions) or ``"auto"`` (exact when
    ``d <= exact_max_dim``).
    """
    ae = as_view(model)
    x = check_images(x)
    if method not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"method must be 'auto', 'exact' or 'hutchinson', got {method!r}")
    if ad not in ("vjp", "jvp"):
        raise ValueError(f"ad must be 'vjp' or 'jvp', got {ad!r}")
    if directions < 1:
        raise ValueError(f"directions must be >= 1, got {directions}")
    d = x[0].numel()
    if method == "auto":
        method = "exact" if d <= exact_max_dim else "hutchinson"
    g = torch.Generator().manual_seed(seed)
    dists, energies, traces = [], [], []
    with on_device(ae.model, device), eval_mode(ae.model):
        x = ae.prepare(x)
        if method == "exact":
            for i in range(x.shape[0]):
                di, ei, ti = _exact_point(ae.reconstruct, x[i])
                dists.append(di)
                energies.append(ei)
                traces.append(ti)
        else:
            for i in range(0, x.shape[0], batch_size):
                di, ei, ti = _hutchinson_batch(ae.reconstruct, x[i:i + batch_size], directions, g, ad)
                dists += di.tolist()
                energies += ei.tolist()
                traces += ti.tolist()
    dists_a = np.asarray(dists)
    se = float(dists_a.std(ddof=1) / np.sqrt(dists_a.size)) if dists_a.size > 1 else float("nan")
    return {"distance": float(dists_a.mean()), "distance_se": se, "energy": float(np.mean(energies)),
            "trace": float(np.mean(traces)),
            "method": method, "points": int(dists_a.size), "directions": 0 if method == "exact" else directions,
            "dim": int(d)}


# ----------------------------------------------------------------------------- the report


def identity_tests(model, x, *, y=None, others: Mapping[str, torch.Tensor] | None = None,
                   noise: bool = True, shuffled: bool = True, jacobian_points: int = 16,
                   directions: int = 32, method: str = "auto", exact_max_dim: int = 256, ad: str = "vjp",
                   probe_repeats: int = 3, batch_size: int = 256, seed: int = 0,
                   device=None) -> IdentityReport:
    """Run the three identity-mapping tests of the module docstring on data ``x``.

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view. Tests (a) and (b) use its
    reconstruction only; test (c) (with ``y``) also needs ``encode`` and refuses before any work
    when the view has none. ``x``: in-distribution inputs (held-out data is the fair choice);
    ``y``: optional labels for test (c); ``others``: extra OOD sets ``{name: tensor}`` with
    ``x``'s per-sample shape; ``jacobian_points``: how many points of ``x`` the Jacobian test uses.

    Example::

        rep = identity_tests(aeprobe.autoencoder(unet, code_at="down2"), x_test)   # (a) and (b)
        rep.ood_unexplained, rep.jacobian_distance
    """
    ae = as_view(model)
    if y is not None:
        ae.require("encode", probe="identity_tests(y=...) (the linear probe on codes)")
    x = check_images(x)
    sets: dict[str, torch.Tensor] = {}
    if noise:
        sets["uniform_noise"] = uniform_noise_like(x, seed=seed)
    if shuffled:
        sets["shuffled_pixels"] = shuffle_pixels(x, seed=seed + 1)
    for name, xo in (others or {}).items():
        xo = check_images(xo, f"others[{name!r}]")
        if xo.shape[1:] != x.shape[1:]:
            raise ValueError(f"others[{name!r}] has per-sample shape {tuple(xo.shape[1:])}, "
                             f"expected {tuple(x.shape[1:])} like x")
        sets[name] = xo
    with on_device(ae.model, device):  # moved once for the whole report, and back on exit
        in_err = float(ae.per_sample_mse(x, batch_size=batch_size).mean())
        floor = 1e-12 * float((x.double() ** 2).mean()) + 1e-30
        rep = IdentityReport(in_dist_error=in_err, input_dim=int(x[0].numel()))
        for name, xo in sets.items():
            e = float(ae.per_sample_mse(xo, batch_size=batch_size).mean())
            var = float(xo.double().var(dim=0, unbiased=False).mean())
            rep.ood_errors[name] = e
            rep.ood_ratios[name] = (e + floor) / (in_err + floor)
            rep.ood_unexplained[name] = e / var if var > 0 else float("nan")
        if jacobian_points > 0:
            jac = jacobian_identity_distance(ae, x[:jacobian_points], method=method, directions=directions,
                                             exact_max_dim=exact_max_dim, ad=ad, seed=seed)
            rep.jacobian_distance, rep.jacobian_distance_se = jac["distance"], jac["distance_se"]
            rep.jacobian_energy, rep.jacobian_trace, rep.jacobian_method = jac["energy"], jac["trace"], jac["method"]
            rep.jacobian_points, rep.jacobian_directions = jac["points"], jac["directions"]
        if y is not None:
            z = ae.codes(x, batch_size=batch_size)
            pc = linear_probe(z, y, repeats=probe_repeats, seed=seed)
            pi = linear_probe(x.reshape(x.shape[0], -1), y, repeats=probe_repeats, seed=seed)
            rep.probe_acc_codes, rep.probe_acc_inputs = pc.accuracy, pi.accuracy
            rep.probe_gap = pc.accuracy - pi.accuracy
    return rep
