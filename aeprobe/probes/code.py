"""Code-space diagnostics: what the sparse-autoencoder tool-makers measure, for every autoencoder.

::

    from aeprobe.probes.code import code_stats, unit_ablation, cka, svcca, pca_alignment
    st = code_stats(model, x)                  # model or aeprobe.autoencoder(...) view
    st.dead, st.l0, st.fve, st.effective_dim   # dead units, mean active units, explained variance
    st.plot("runs/code.png")                   # log-density histogram, spectrum, frequency bars
    ab = unit_ablation(model, x)               # zero each unit: measured vs first-order predicted
    ab.measured / ab.predicted                 # = ab.ratio; 1 for a linear decoder
    cka(codes_a, codes_b), svcca(codes_a, codes_b, keep=0.99)

Every function streams over mini-batches of ``x`` (a tensor, an array, or any iterable of batches
such as a ``DataLoader``; a ``(x, y)`` batch is read as ``x``) and keeps state of size
``O(code size^2)`` (``pca_alignment``: ``O(input size^2)``), never ``O(number of inputs)``.
Codes are flattened to ``[N, m]``; unit ``k`` is entry ``k`` of the flattened code.

**Statistics** (:func:`code_stats`; conventions of SAELens / dictionary_learning):

* ``frequency[k] = #{i : |z_ik| > threshold} / N`` (SAELens "feature density");
  ``dead`` = units with frequency 0 (never above the threshold on these inputs);
  ``l0 = (1/N) sum_i #{k : |z_ik| > threshold} = sum_k frequency[k]``.
* ``mean[k]``, ``std[k]``: the unit's mean and population standard deviation (``ddof=0``).
* ``fve = 1 - sum_i ||x_i - x̂_i||^2 / sum_i ||x_i - mean(x)||^2`` over all inputs and features
  (the fraction of variance explained; dictionary_learning's ``frac_variance_explained`` uses the
  variance of the residual instead, which forgives a constant offset -- this one does not);
  ``mse = sum_i ||x_i - x̂_i||^2 / (N * D)`` (per element).
* ``spectrum``: eigenvalues (descending) of the code covariance
  ``Sigma = (1/N) sum_i (z_i - mean)(z_i - mean)^T``; ``effective_dim`` is its participation ratio
  ``(sum λ)^2 / sum λ^2 = tr(Sigma)^2 / ||Sigma||_F^2`` (``d`` for an isotropic code in ``d``
  dimensions, 1 for a code on a line).
* ``decoder_norms[k] = ||W_dec[:, k]||`` and ``enc_dec_cosines[k] = cos(W_enc[k, :], W_dec[:, k])``
  where the code is the output of an ``nn.Linear`` (possibly through an elementwise activation such
  as the ReLU of an SAE) and enters the decoder through an ``nn.Linear``
  (:func:`find_linear_maps` says which layers, or why there are none).

The covariance is streamed with Chan et al.'s pairwise update in float64: each batch is centred at
its own mean and merged with ``C += C_b + n n_b/(n + n_b) δ δ^T`` -- no ``E[zz^T] - μμ^T``
cancellation (:class:`Comoments`).

**Similarity of codes** (:func:`cka`, :func:`svcca`, :func:`code_similarity`), ``X, Y`` the centred
``[N, p]`` and ``[N, q]`` codes of the same inputs:

* linear CKA (Kornblith et al. 2019, "Similarity of neural network representations revisited"):
  ``CKA = ||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F)``, invariant to orthogonal maps and isotropic
  scaling of either code, not to general invertible maps. ``debiased=True`` replaces each
  ``||X^T Y||_F^2 = tr(K L)`` by the unbiased HSIC estimator of Song et al. 2012 (as used for CKA
  by Nguyen, Raghu & Kornblith 2021), in feature space:
  ``||X^T Y||_F^2 - N/(N-2) sum_i ||x_i||^2 ||y_i||^2 + ||X||_F^2 ||Y||_F^2 / ((N-1)(N-2))``.
* SVCCA (Raghu et al. 2017): keep the fewest principal directions of each code that explain
  ``keep`` of its variance, then CCA between the two reduced codes; the result is the mean of the
  ``min(k, l)`` canonical correlations. With ``keep=1`` it is invariant to any invertible linear
  map of either code; with ``keep < 1`` only as far as the map keeps the same directions.

**Ablations** (:func:`unit_ablation`): ``measured[k] = mean_i ||D(z_i - z_ik e_k) - D(z_i)||`` and
``predicted[k] = mean_i ||J_D(z_i) z_ik e_k||`` (one forward-mode jvp per unit and batch); equal for
an affine decoder, and their ratio shows how non-linear the decoder is around the data.

**Theory link** (:func:`pca_alignment`): a linear autoencoder trained to its minimum has a
decoder whose column space is the top-``d`` principal subspace of the data (Baldi & Hornik 1989);
the report gives the principal angles between the two.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.linalg import subspace_angles
from torch import nn

from aeprobe.reducers import Reducer
from aeprobe.view import as_view

__all__ = [
    "Comoments",
    "CodeStatsReducer",
    "CodeStats",
    "code_stats",
    "effective_dim",
    "cka",
    "svcca",
    "SimilarityReport",
    "code_similarity",
    "AblationReport",
    "unit_ablation",
    "AlignmentReport",
    "pca_alignment",
    "LinearMaps",
    "find_linear_maps",
]

#: eigenvalues below ``RANK_RTOL * largest`` count as zero (directions with no variance) in SVCCA.
RANK_RTOL = 1e-10


# ============================================================================================ inputs
def _batches(x: Any, batch_size: int, name: str = "x") -> Iterator[torch.Tensor]:
    """Validate ``x`` now and return an iterator over its batches (tensors with a leading sample dim).

    ``x``: a tensor / numpy array ``[N, ...]`` (sliced into ``batch_size`` rows) or an iterable of
    such batches (a ``(x, y, ...)`` tuple or list gives its first entry).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor):
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty batch [N, ...], got shape {tuple(x.shape)}")
        return (x[i:i + batch_size] for i in range(0, x.shape[0], batch_size))
    if isinstance(x, (str, bytes, Mapping)) or not isinstance(x, Iterable):
        raise TypeError(f"{name} must be a tensor, a numpy array or an iterable of batches, got {type(x).__name__}")

    def gen():
        seen = 0
        for i, b in enumerate(x):
            if isinstance(b, (tuple, list)) and b:
                b = b[0]
            if isinstance(b, np.ndarray):
                b = torch.from_numpy(np.ascontiguousarray(b))
            if not isinstance(b, torch.Tensor):
                raise TypeError(f"{name}: batch {i} is a {type(b).__name__}, not a tensor")
            if b.ndim < 1:
                raise ValueError(f"{name}: batch {i} has no sample dimension (shape {tuple(b.shape)})")
            if b.shape[0]:
                seen += 1
                yield b
        if not seen:
            raise ValueError(f"{name} yielded no samples")

    return gen()


def _flat64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(t.shape[0], -1).to(device="cpu", dtype=torch.float64)


def _nan_to_none(obj: Any) -> Any:
    """Arrays to lists, NaN/inf to None, tuples to lists: strict JSON."""
    if isinstance(obj, np.ndarray):
        return _nan_to_none(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


class _Report:
    def to_dict(self) -> dict:
        """The report as plain JSON-able Python (lists for arrays, ``None`` for NaN)."""
        return _nan_to_none(asdict(self))


# ============================================================================================ moments
class Comoments(Reducer):
    """Joint streaming first and second moments of ``k`` codes of the same inputs (float64, Chan merge).

    ``update(z_1, ..., z_k)`` with ``[b, ...]`` tensors of the same ``b`` samples (flattened to
    ``[b, p_i]``). State, all centred at the running means: ``count``, ``means[i]``, the comoment
    matrices ``C[(i, j)] = sum_n (z_in - μ_i)(z_jn - μ_j)^T`` for ``i <= j``; with ``quartic=True``
    also ``Q[(i, j)] = sum_n a_in a_jn`` and ``S[(i, j)] = (sum_n a_in (z_jn - μ_j), sum_n a_jn (z_in - μ_i))``
    with ``a_in = ||z_in - μ_i||^2``, which the debiased CKA needs. Memory ``O((sum_i p_i)^2)``,
    whatever the number of samples.

    Each batch is centred at its own mean, its moments computed, and both sets of moments are
    re-centred exactly to the merged mean before they are added (Chan, Golub & LeVeque 1983 for
    the covariance, Pébay 2008 for the higher terms): no ``E[zz^T] - μμ^T`` cancellation.

    >>> m = Comoments(2); m.update(torch.randn(100, 3), torch.randn(100, 5)); m.cov(0).shape
    torch.Size([3, 3])
    """

    def __init__(self, k: int = 1, *, quartic: bool = False):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        self.k = k
        self.quartic = bool(quartic)
        self.count = 0
        self.dims: list[int] | None = None
        self.means: list[torch.Tensor] = []
        self.C: dict[tuple[int, int], torch.Tensor] = {}
        self.Q: dict[tuple[int, int], torch.Tensor] = {}
        self.S: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _state_tensors(self) -> list[torch.Tensor]:
        out = list(self.means) + list(self.C.values()) + list(self.Q.values())
        for a, b in self.S.values():
            out += [a, b]
        return out

    def _pairs(self):
        return [(i, j) for i in range(self.k) for j in range(i, self.k)]

    def _batch_moments(self, xs: list[torch.Tensor]):
        means = [x.mean(0) for x in xs]
        xc = [x - m for x, m in zip(xs, means)]
        C = {(i, j): xc[i].T @ xc[j] for i, j in self._pairs()}
        Q, S = {}, {}
        if self.quartic:
            a = [(x * x).sum(1) for x in xc]
            for i, j in self._pairs():
                Q[(i, j)] = (a[i] * a[j]).sum()
                S[(i, j)] = (xc[j].T @ a[i], xc[i].T @ a[j])
        return means, C, Q, S

    def _recentre(self, n: int, deltas: list[torch.Tensor], C, Q, S) -> None:
        """Moments about the old means -> about ``old mean + delta`` (in place, exact algebra)."""
        traces = [torch.trace(C[(i, i)]) for i in range(self.k)]
        sq = [(d * d).sum() for d in deltas]
        if self.quartic:
            for i, j in self._pairs():
                di, dj, cij = deltas[i], deltas[j], C[(i, j)]
                su, sv = S[(i, j)]
                Q[(i, j)] = (Q[(i, j)] - 2 * (dj @ su) - 2 * (di @ sv) + sq[j] * traces[i] + sq[i] * traces[j]
                             + 4 * (di @ cij @ dj) + n * sq[i] * sq[j])
                S[(i, j)] = (su - 2 * (cij.T @ di) - dj * (traces[i] + n * sq[i]),
                             sv - 2 * (cij @ dj) - di * (traces[j] + n * sq[j]))
        for i, j in self._pairs():
            C[(i, j)] = C[(i, j)] + n * torch.outer(deltas[i], deltas[j])

    def update(self, *zs: torch.Tensor) -> None:
        if len(zs) != self.k:
            raise ValueError(f"Comoments({self.k}) needs {self.k} tensors per update, got {len(zs)}")
        b = zs[0].shape[0]
        for i, z in enumerate(zs):
            if z.shape[0] != b:
                raise ValueError(f"code {i} has {z.shape[0]} samples in this batch but code 0 has {b}")
        if b == 0:
            return
        xs = [_flat64(z) for z in zs]
        dims = [x.shape[1] for x in xs]
        if self.dims is None:
            self.dims = dims
        elif dims != self.dims:
            raise ValueError(f"code sizes changed between batches: {self.dims} before, {dims} now")
        means, C, Q, S = self._batch_moments(xs)
        if self.count == 0:
            self.count, self.means, self.C, self.Q, self.S = b, means, C, Q, S
            return
        n, tot = self.count, self.count + b
        if not self.quartic:  # Chan's update in one step: C += C_b + n b / (n + b) Δ_i Δ_j^T
            deltas = [mb.sub_(mu) for mb, mu in zip(means, self.means)]
            for i, j in self._pairs():
                self.C[(i, j)].add_(C[(i, j)]).addr_(deltas[i], deltas[j], alpha=n * b / tot)
            for mu, d in zip(self.means, deltas):
                mu.add_(d, alpha=b / tot)
            self.count = tot
            return
        new = [mu + (mb - mu) * (b / tot) for mu, mb in zip(self.means, means)]
        self._recentre(n, [nm - mu for nm, mu in zip(new, self.means)], self.C, self.Q, self.S)
        self._recentre(b, [nm - mb for nm, mb in zip(new, means)], C, Q, S)
        for key in self.C:
            self.C[key] = self.C[key] + C[key]
        for key in self.Q:
            self.Q[key] = self.Q[key] + Q[key]
            self.S[key] = (self.S[key][0] + S[key][0], self.S[key][1] + S[key][1])
        self.means, self.count = new, tot

    # ---------------------------------------------------------------- results
    def _check(self, need: int = 1) -> None:
        if self.count < need:
            raise ValueError(f"Comoments: {self.count} samples reduced, need at least {need}")

    def result(self) -> list[torch.Tensor]:
        """The covariance matrices ``[cov(0), ..., cov(k-1)]``."""
        return [self.cov(i) for i in range(self.k)]

    def cov(self, i: int = 0, j: int | None = None, *, ddof: int = 0) -> torch.Tensor:
        """Covariance ``C[(i, j)] / (N - ddof)`` (``j=None``: the covariance of code ``i``)."""
        self._check(ddof + 1)
        j = i if j is None else j
        c = self.C[(i, j)] if i <= j else self.C[(j, i)].T
        return c / (self.count - ddof)

    def spectrum(self, i: int = 0) -> torch.Tensor:
        """Eigenvalues of ``cov(i)``, descending, clipped at 0 (float64)."""
        lam = torch.linalg.eigvalsh(self.cov(i)).flip(0)
        return lam.clamp_min(0)

    def effective_dim(self, i: int = 0) -> float:
        """Participation ratio ``tr(Σ)^2 / ||Σ||_F^2`` of code ``i`` (NaN with a warning if constant)."""
        c = self.cov(i)
        fro2 = float((c * c).sum())
        if fro2 == 0.0:
            warnings.warn("effective_dim: the code is constant (zero covariance); returning NaN",
                          RuntimeWarning, stacklevel=2)
            return float("nan")
        return float(torch.trace(c)) ** 2 / fro2

    def cka(self, i: int = 0, j: int = 1, *, debiased: bool = False) -> float:
        """Linear CKA between codes ``i`` and ``j`` (see :func:`cka`)."""
        n = self.count
        if debiased:
            if not self.quartic:
                raise ValueError("debiased CKA needs Comoments(..., quartic=True)")
            if n < 4:
                raise ValueError(f"debiased CKA needs at least 4 samples, got {n}")
        self._check(2)

        def dot(a: int, b: int) -> float:
            c = self.C[(min(a, b), max(a, b))]
            v = float((c * c).sum())
            if debiased:
                q = float(self.Q[(min(a, b), max(a, b))])
                ta, tb = float(torch.trace(self.C[(a, a)])), float(torch.trace(self.C[(b, b)]))
                v = v - n / (n - 2) * q + ta * tb / ((n - 1) * (n - 2))
            return v

        xx, yy = dot(i, i), dot(j, j)
        if xx <= 0 or yy <= 0:
            warnings.warn(f"cka: code {i if xx <= 0 else j} has no variance (or too few samples for the debiased "
                          "estimator); returning NaN", RuntimeWarning, stacklevel=2)
            return float("nan")
        return dot(i, j) / math.sqrt(xx * yy)

    def _reduced(self, i: int, keep: float) -> tuple[torch.Tensor, torch.Tensor]:
        lam, vec = torch.linalg.eigh(self.cov(i))
        lam, vec = lam.flip(0), vec.flip(1)
        if lam[0] <= 0:
            return lam[:0], vec[:, :0]
        ok = lam > RANK_RTOL * lam[0]
        lam, vec = lam[ok], vec[:, ok]
        share = torch.cumsum(lam, 0) / lam.sum()
        kk = int(torch.searchsorted(share, torch.tensor(keep - 1e-12, dtype=share.dtype))) + 1
        kk = min(kk, lam.numel())
        return lam[:kk], vec[:, :kk]

    def canonical_correlations(self, i: int = 0, j: int = 1, *, keep: float = 0.99) -> np.ndarray:
        """Canonical correlations (descending) of the SVD-reduced codes ``i`` and ``j`` (see :func:`svcca`)."""
        _check_keep(keep)
        self._check(2)
        la, va = self._reduced(i, keep)
        lb, vb = self._reduced(j, keep)
        if la.numel() == 0 or lb.numel() == 0:
            warnings.warn(f"svcca: code {i if la.numel() == 0 else j} has no variance; returning NaN",
                          RuntimeWarning, stacklevel=3)
            return np.array([np.nan])
        n = self.count
        if n < 5 * (la.numel() + lb.numel()):
            warnings.warn(f"svcca: {n} samples for {la.numel()} + {lb.numel()} kept directions; canonical "
                          "correlations are biased upward unless the samples far outnumber the directions "
                          "(all equal 1 once N <= k + l)", RuntimeWarning, stacklevel=3)
        cross = va.T @ self.cov(i, j) @ vb
        m = cross / la.sqrt()[:, None] / lb.sqrt()[None, :]
        rho = torch.linalg.svdvals(m).clamp(0, 1)
        return rho.numpy()

    def svcca(self, i: int = 0, j: int = 1, *, keep: float = 0.99) -> float:
        """Mean canonical correlation of the SVD-reduced codes (see :func:`svcca`)."""
        return float(np.mean(self.canonical_correlations(i, j, keep=keep)))


def _check_keep(keep: float) -> None:
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ValueError(f"keep must be a share of variance in (0, 1], got {keep!r}")


def _codes_pair(a, b, batch_size: int, quartic: bool) -> Comoments:
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, (torch.Tensor, np.ndarray)):
            raise TypeError(f"{name} must be a tensor or numpy array of codes [N, ...], got {type(t).__name__}")
        if t.ndim < 1 or t.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty batch of codes [N, ...], got shape {tuple(t.shape)}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a has {a.shape[0]} samples but b has {b.shape[0]}: codes must be of the same inputs")
    a = torch.as_tensor(a)
    b = torch.as_tensor(b)
    for name, t in (("a", a), ("b", b)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf values")
    mom = Comoments(2, quartic=quartic)
    for s in range(0, a.shape[0], batch_size):
        mom.update(a[s:s + batch_size], b[s:s + batch_size])
    return mom


def effective_dim(z, *, batch_size: int = 4096) -> float:
    """Participation ratio of the covariance spectrum of codes ``z`` ``[N, ...]`` (flattened).

    ``(sum_k λ_k)^2 / sum_k λ_k^2 = tr(Σ)^2 / ||Σ||_F^2``, ``Σ`` the (population) covariance:
    ``d`` for an isotropic code in ``d`` dimensions, 1 for a code on a line. For ``N`` Gaussian
    samples of an isotropic ``d``-dim code the estimate is biased low, ``E ≈ d N / (N + d + 1)``.
    ``z`` may also be an iterable of code batches. Streams with ``O(m^2)`` memory.

    >>> round(effective_dim(torch.randn(100000, 4)), 1)
    4.0
    """
    mom = Comoments(1)
    for zb in _batches(z, batch_size, "z"):
        mom.update(zb)
    mom._check(2)
    return mom.effective_dim()


def cka(a, b, *, debiased: bool = False, batch_size: int = 4096) -> float:
    """Linear CKA between two codes of the same ``N`` inputs (``[N, ...]`` each, flattened).

    ``CKA(X, Y) = ||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` with ``X``, ``Y`` centred
    (Kornblith et al. 2019, Eq. for linear HSIC in feature space). 1 for codes equal up to an
    orthogonal map and an isotropic scaling; invariant to both. ``debiased=True`` uses the
    unbiased HSIC estimator (Song et al. 2012; Nguyen, Raghu & Kornblith 2021) in each of the
    three terms, which removes the upward bias of CKA between unrelated high-dimensional codes at
    small ``N``; it can be slightly negative. Streams over ``batch_size`` rows (memory
    ``O((p + q)^2)``).

    >>> z = torch.randn(500, 8); q, _ = torch.linalg.qr(torch.randn(8, 8))
    >>> round(cka(z, 3 * z @ q), 6)
    1.0
    """
    return _codes_pair(a, b, batch_size, quartic=debiased).cka(0, 1, debiased=debiased)


def svcca(a, b, *, keep: float = 0.99, batch_size: int = 4096) -> float:
    """SVCCA (Raghu et al. 2017) between two codes of the same ``N`` inputs: mean canonical correlation.

    Each code (flattened, centred) is reduced to its top principal directions that explain
    ``keep`` of its variance (the fewest ``k`` with ``sum_{<=k} λ / sum λ >= keep``; directions
    with variance below ``1e-10`` of the largest count as absent); then
    ``ρ = svd(Λ_a^{-1/2} V_a^T Σ_ab V_b Λ_b^{-1/2})``, the canonical correlations between the
    reduced codes, and the result is ``mean(ρ)`` over the ``min(k, l)`` of them. Computed from the
    streamed covariances (memory ``O((p + q)^2)``), which equals the SVD-of-the-data route.
    With ``keep=1`` the value is invariant to any invertible linear map of either code.

    >>> z = torch.randn(2000, 6); t = torch.randn(6, 6) + 3 * torch.eye(6)
    >>> round(svcca(z, z @ t, keep=1.0), 6)
    1.0
    """
    _check_keep(keep)
    return _codes_pair(a, b, batch_size, quartic=False).svcca(0, 1, keep=keep)


# ============================================================================================ linear maps
@dataclass(kw_only=True)
class LinearMaps:
    """Which ``nn.Linear`` layers produce the code and read it (:func:`find_linear_maps`).

    ``encoder``: ``(name, module)`` of the Linear whose output rows ``encoder_rows`` are the code
    (through ``activation``, ``"identity"`` when the code is that output itself); ``decoder``:
    ``(name, module)`` of the Linear that takes the code as its input. ``None`` where there is no
    such layer; ``reason`` says why.
    """

    encoder: tuple[str, nn.Linear] | None = None
    encoder_rows: slice | None = None
    activation: str | None = None
    decoder: tuple[str, nn.Linear] | None = None
    reason: str = ""

    def describe(self) -> str:
        enc = (f"code = {self.activation}({self.encoder[0]}(...)[{self.encoder_rows.start}:{self.encoder_rows.stop}])"
               if self.encoder else "encoder: no Linear map")
        dec = f"decoder reads it with {self.decoder[0]}" if self.decoder else "decoder: no Linear map"
        return f"{enc}; {dec}" + (f" ({self.reason})" if self.reason else "")


_ACTIVATIONS = {
    "identity": lambda t: t,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": nn.functional.softplus,
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,
    "elu": nn.functional.elu,
    "leaky_relu": nn.functional.leaky_relu,
}


def _linears(modules: Mapping[str, nn.Module]) -> list[tuple[str, nn.Linear]]:
    out, seen = [], set()
    for prefix, mod in modules.items():
        for n, m in mod.named_modules():
            if isinstance(m, nn.Linear) and id(m) not in seen:
                seen.add(id(m))
                out.append((f"{prefix}.{n}" if prefix and n else prefix or n, m))
    return out


def _run_recording(fn, arg, linears, side: str) -> list[tuple[str, nn.Linear, torch.Tensor]]:
    fired: list[tuple[str, nn.Linear, torch.Tensor]] = []
    handles = []

    def make(name, mod):
        def hook(module, args, output):
            t = args[0] if side == "input" else output
            if isinstance(t, torch.Tensor):
                fired.append((name, mod, t.detach()))
        return hook

    try:
        for name, mod in linears:
            handles.append(mod.register_forward_hook(make(name, mod)))
        fn(arg)
    finally:
        for h in handles:
            h.remove()
    return fired


def find_linear_maps(ae, x) -> LinearMaps:
    """Find the ``nn.Linear`` that produces the code and the one that reads it, by running ``ae`` on ``x``.

    Encoder side: among the Linear layers that run during ``encode(x)`` (the view's
    :meth:`~aeprobe.view.Autoencoder.encoder_modules`), the last one whose output -- or a
    code-sized chunk of it, as in ``mu, logvar = h.chunk(2)`` -- equals the code, exactly or through
    an elementwise activation (ReLU, tanh, sigmoid, softplus, GELU, SiLU, ELU, leaky ReLU; for one
    layer an exact match is preferred). Decoder side: the first Linear that runs during ``decode(z)`` with the code
    itself as its input. ``x``: a few example inputs (eval mode, no gradients).
    """
    view = as_view(ae, name="ae")
    view.require("encode", probe="find_linear_maps")
    x = next(_batches(x, 16))[:16]
    out = LinearMaps()
    reasons = []
    with view.evaluating():
        x = view.prepare(x)
        z = view.encode(x)
        zf = z.reshape(z.shape[0], -1)
        m = zf.shape[1]
        enc_lin = _linears(view.encoder_modules(x))
        best = None
        if z.ndim != 2:
            reasons.append(f"the code has shape {tuple(z.shape[1:])}, not the output of a Linear")
        elif not enc_lin:
            reasons.append("no nn.Linear runs in the encoder")
        else:
            atol = 1e-6 * max(1.0, float(z.abs().max()))
            fired = _run_recording(view.encode, x, enc_lin, "output")
            for name, mod, o in reversed(fired):  # the last Linear that produces the code
                if o.ndim != 2 or o.shape[0] != z.shape[0] or o.shape[1] % m:
                    continue
                segs = [(s, o[:, s:s + m]) for s in range(0, o.shape[1], m)]
                best = next(((name, mod, slice(s, s + m), "identity") for s, seg in segs if torch.equal(seg, z)), None)
                for act, f in list(_ACTIVATIONS.items())[1:]:
                    if best is not None:
                        break
                    best = next(((name, mod, slice(s, s + m), act) for s, seg in segs
                                 if torch.allclose(f(seg), z, rtol=1e-5, atol=atol)), None)
                if best is not None:
                    break
            if best is None:
                reasons.append("no Linear in the encoder outputs the code (or an elementwise function of it)")
        if best is not None:
            out.encoder, out.encoder_rows, out.activation = (best[0], best[1]), best[2], best[3]
        if not view.can_decode:
            reasons.append("the view has no decode")
        else:
            dec_lin = _linears(view.decoder_modules(z))
            for name, mod, inp in _run_recording(view.decode, z, dec_lin, "input"):
                if inp.shape == z.shape and torch.equal(inp, z):
                    out.decoder = (name, mod)
                    break
            if out.decoder is None:
                reasons.append("no nn.Linear in the decoder takes the code itself as input")
    out.reason = "; ".join(reasons)
    return out


def _weight_stats(maps: LinearMaps) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Decoder column norms and encoder-decoder cosines from the maps (None + a reason where absent)."""
    note = maps.describe()
    if maps.decoder is None:
        return None, None, note
    wd = maps.decoder[1].weight.detach().to("cpu", torch.float64)  # [out, m]
    norms = wd.norm(dim=0).numpy()
    if maps.encoder is None:
        return norms, None, note
    we = maps.encoder[1].weight.detach().to("cpu", torch.float64)[maps.encoder_rows]  # [m, in]
    if we.shape[1] != wd.shape[0]:
        return norms, None, note + (f"; no cosines: the encoder Linear reads {we.shape[1]} features, the decoder "
                                    f"Linear writes {wd.shape[0]}")
    cos = nn.functional.cosine_similarity(we, wd.T, dim=1, eps=1e-300).numpy()
    return norms, cos, note


# ============================================================================================ code_stats
class CodeStatsReducer(Reducer):
    """Streaming state of :func:`code_stats`: ``update(x, z, x_hat)`` per batch, memory ``O(m^2 + D)``.

    ``m`` = code size, ``D`` = input size; nothing grows with the number of inputs. ``nbytes()``
    counts the state; on top of it two fixed-size buffers are reused: the codes of up to
    ``chunk_rows`` inputs (at most :attr:`CHUNK_ELEMENTS` numbers), reduced a chunk at a time, and
    the residuals of one batch (:meth:`scratch_nbytes`).
    """

    #: the chunk buffer of codes holds at most this many numbers (4 MiB of float32)
    CHUNK_ELEMENTS = 1 << 20

    def __init__(self, threshold: float = 0.0, *, chunk_rows: int = 8192):
        self.threshold = float(threshold)
        self.chunk_rows = int(chunk_rows)
        self._zbuf: torch.Tensor | None = None  # codes waiting to be reduced (fixed size, not state)
        self._zfill = 0
        self.moments = Comoments(1)
        self.count = 0
        self.active: torch.Tensor | None = None  # [m] int64
        self.x_shift: torch.Tensor | None = None  # [D] shift c of the input sums (None: 0)
        self.x_sum: torch.Tensor | None = None  # [D] float64, sum_i (x_i - c)
        self.x_sq = 0.0  # sum_i ||x_i - c||^2 (a Python float: float64)
        self.sse = 0.0  # sum_i ||x_i - x_hat_i||^2
        self.code_shape: tuple[int, ...] | None = None
        self.input_size = 0
        self._scratch: torch.Tensor | None = None  # one batch of residuals, reused (not state)

    def _state_tensors(self) -> list[torch.Tensor]:
        return self.moments._state_tensors() + [t for t in (self.active, self.x_shift, self.x_sum) if t is not None]

    def nbytes(self) -> int:
        return super().nbytes() + 2 * 8  # + the two float64 sums

    def scratch_nbytes(self) -> int:
        """Bytes of the two reused buffers (fixed by the batch and chunk sizes, not by the number of inputs)."""
        return sum(t.numel() * t.element_size() for t in (self._zbuf, self._scratch) if t is not None)

    def update(self, x: torch.Tensor, z: torch.Tensor, x_hat: torch.Tensor) -> None:
        b = x.shape[0]
        if x_hat.shape != x.shape:
            raise ValueError(f"the reconstruction has shape {tuple(x_hat.shape)} but the input {tuple(x.shape)}")
        if z.shape[0] != b:
            raise ValueError(f"the code has {z.shape[0]} samples but the input batch {b}")
        if b == 0:
            return
        if self.code_shape is None:
            self.code_shape = tuple(z.shape[1:])
        zf = z.detach().reshape(b, -1)
        self._stage(zf)
        # input side, in the model's dtype (at least float32) per batch and in float64 across batches,
        # in as few passes over the batch as possible (the model may be as memory-bound as they are):
        # sse = sum ||x_hat - x||^2 by one subtraction into a reused scratch buffer (fresh batch-sized
        # temporaries cost more in page faults than the arithmetic) and a BLAS dot (~3e-7 relative in
        # float32); sst from the shifted sums sum(x - c) and sum ||x - c||^2 (the shifted-data algorithm
        # of Chan, Golub & LeVeque): c = 0 when the first batch shows mean^2 <= 10 variance (the final
        # centring then loses at most a factor 11), else c = the first batch's mean (one more pass).
        xw, xhw = x.detach().reshape(b, -1), x_hat.detach().reshape(b, -1)
        if xw.dtype not in (torch.float32, torch.float64):
            xw, xhw = xw.float(), xhw.float()
        buf = self._scratch
        if buf is None or buf.shape[0] < b or buf.shape[1:] != xw.shape[1:] or buf.dtype != xw.dtype \
                or buf.device != xw.device:
            buf = self._scratch = torch.empty_like(xw)
        buf = buf[:b]
        torch.sub(xhw, xw, out=buf)
        r = buf.reshape(-1)
        self.sse += float(torch.dot(r, r))
        if self.x_sum is None:
            self.input_size = xw.shape[1]
            mb = xw.mean(0)
            torch.sub(xw, mb, out=buf)
            spread = float(buf.mul_(buf).sum()) / b
            self.x_shift = None if float(mb @ mb) <= 10 * spread else mb
        if self.x_shift is None:
            y = xw.reshape(-1) if xw.is_contiguous() else xw.contiguous().reshape(-1)
            self.x_sum = xw.sum(0).to("cpu", torch.float64) + (0 if self.x_sum is None else self.x_sum)
            self.x_sq += float(torch.dot(y, y))
        else:
            torch.sub(xw, self.x_shift, out=buf)
            self.x_sum = buf.sum(0).to("cpu", torch.float64) + (0 if self.x_sum is None else self.x_sum)
            y = buf.reshape(-1)
            self.x_sq += float(torch.dot(y, y))
        self.count += b

    def _stage(self, zf: torch.Tensor) -> None:
        """Copy codes into the chunk buffer; reduce it when full. Each torch op costs tens of µs whatever
        its size, so reducing a chunk of many batches at once makes the code side nearly free."""
        b, m = zf.shape
        buf = self._zbuf
        if buf is None:
            rows = max(b, min(self.chunk_rows, max(1, self.CHUNK_ELEMENTS // max(1, m))))
            dt = zf.dtype if zf.dtype in (torch.float32, torch.float64) else torch.float32
            buf = self._zbuf = torch.empty(rows, m, dtype=dt, device=zf.device)
        elif buf.shape[1] != m:
            raise ValueError(f"the code size changed between batches: {buf.shape[1]} before, {m} now")
        if self._zfill + b > buf.shape[0]:
            self.flush()
            if b > buf.shape[0]:
                buf = self._zbuf = torch.empty(b, m, dtype=buf.dtype, device=buf.device)
        buf[self._zfill:self._zfill + b].copy_(zf)
        self._zfill += b

    def flush(self) -> None:
        """Reduce the codes waiting in the chunk buffer (called when it is full and by :meth:`result`)."""
        if not self._zfill:
            return
        zc = self._zbuf[:self._zfill]
        self._zfill = 0
        if zc.is_floating_point() and not bool(torch.isfinite(zc).all()):
            raise ValueError("the code contains NaN or inf values")
        self.moments.update(zc)
        on = (zc != 0) if self.threshold == 0 else (zc.abs() > self.threshold)
        act = on.sum(0).to("cpu", torch.int64)
        if self.active is None:
            self.active = act
        else:
            self.active.add_(act)

    def result(self) -> CodeStats:
        self.flush()
        if self.count == 0:
            raise ValueError("CodeStatsReducer: no data was reduced")
        n = self.count
        freq = (self.active.double() / n).numpy()
        cov = self.moments.cov(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            eff = self.moments.effective_dim(0)
        sst = max(0.0, self.x_sq - float(self.x_sum @ self.x_sum) / n)
        sse = float(self.sse)
        return CodeStats(
            n=n, threshold=self.threshold, code_shape=self.code_shape,
            frequency=freq, mean=self.moments.means[0].numpy().copy(),
            std=torch.diagonal(cov).clamp_min(0).sqrt().numpy(),
            dead=np.flatnonzero(self.active.numpy() == 0), l0=float(freq.sum()),
            fve=1.0 - sse / sst if sst > 0 else float("nan"), mse=sse / (n * self.input_size),
            spectrum=self.moments.spectrum(0).numpy(), effective_dim=eff)


@dataclass(kw_only=True)
class CodeStats(_Report):
    """Per-unit and global statistics of a code (module docstring for each formula).

    ``frequency``, ``mean``, ``std``, ``decoder_norms``, ``enc_dec_cosines``: ``[m]`` arrays over the
    flattened code units; ``dead``: indices of units never above ``threshold``; ``spectrum``: code
    covariance eigenvalues, descending; ``linear_maps``: which layers the weight statistics come from
    (or why they are ``None``); ``reconstruction``: ``"decode(encode(x))"`` or ``"model(x)"``.
    """

    n: int
    threshold: float
    code_shape: tuple[int, ...]
    frequency: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    dead: np.ndarray
    l0: float
    fve: float
    mse: float
    spectrum: np.ndarray
    effective_dim: float
    decoder_norms: np.ndarray | None = None
    enc_dec_cosines: np.ndarray | None = None
    linear_maps: str = ""
    reconstruction: str = ""

    @property
    def code_size(self) -> int:
        return int(self.frequency.size)

    @property
    def dead_fraction(self) -> float:
        return self.dead.size / max(1, self.code_size)

    def plot(self, path):
        """Log-density histogram, covariance spectrum and frequency bars (:func:`aeprobe.plots.code.plot_code_stats`)."""
        from aeprobe.plots.code import plot_code_stats

        return plot_code_stats(self, path)


def code_stats(ae, x, *, threshold: float = 0.0, batch_size: int = 256, device=None) -> CodeStats:
    """Dead units, frequencies, L0, FVE, covariance spectrum and weight statistics of a code, streamed.

    ``ae``: a model or an :func:`aeprobe.autoencoder` view (needs ``encode``; the reconstruction is
    ``decode(encode(x))`` when the view can decode, else ``model(x)``); ``x``: inputs ``[N, ...]`` or
    an iterable of batches; ``threshold``: a unit is active on an input when ``|z_k| > threshold``.
    Runs in eval mode without gradients; memory ``O(m^2 + D)`` whatever ``N``.

    >>> import torch, aeprobe
    >>> sae = torch.nn.Module(); sae.encoder = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
    >>> sae.decoder = torch.nn.Linear(16, 8)
    >>> st = code_stats(sae, torch.randn(1000, 8))
    >>> st.l0 <= 16 and st.decoder_norms.shape == (16,)
    True
    """
    view = as_view(ae, name="ae")
    view.require("encode", probe="code_stats")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise ValueError(f"threshold must be a number >= 0, got {threshold!r}")
    batches = _batches(x, batch_size)
    red = CodeStatsReducer(threshold)
    decode = view.can_decode
    example = None
    with view.evaluating(device):
        dtype, dev = view.dtype, view.device
        for xb in batches:
            if xb.dtype != dtype or xb.device != dev:
                xb = view.prepare(xb)
            z = view.encode(xb)
            xh = view.decode(z) if decode else view.reconstruct(xb)
            red.update(xb, z, xh)
            if example is None:
                example = xb[:16].clone()
    st = red.result()
    st.reconstruction = "decode(encode(x))" if decode else "model(x)"
    try:
        maps = find_linear_maps(view, example)
    except Exception as e:  # the statistics above stand; only the weight statistics are unavailable
        st.linear_maps = f"linear maps not determined ({type(e).__name__}: {e})"
        return st
    st.decoder_norms, st.enc_dec_cosines, st.linear_maps = _weight_stats(maps)
    return st


# ============================================================================================ similarity
@dataclass(kw_only=True)
class SimilarityReport(_Report):
    """Pairwise similarity of the codes of several models on the same inputs (``[M, M]`` matrices)."""

    names: list[str]
    code_sizes: list[int]
    n: int
    keep: float
    cka: np.ndarray
    cka_debiased: np.ndarray
    svcca: np.ndarray

    def plot(self, path):
        """Heatmaps of CKA, debiased CKA and SVCCA (:func:`aeprobe.plots.code.plot_similarity`)."""
        from aeprobe.plots.code import plot_similarity

        return plot_similarity(self, path)


def code_similarity(models_or_views, x, *, keep: float = 0.99, batch_size: int = 256, device=None) -> SimilarityReport:
    """CKA (plain and debiased) and SVCCA between the codes of every pair of models, streamed over ``x``.

    ``models_or_views``: a list of models / views, or a ``{name: model or view}`` dict; every model
    encodes the same inputs ``x`` (a tensor or an iterable of batches). Memory ``O((sum_i m_i)^2)``.

    >>> import aeprobe
    >>> a, b = torch.nn.Linear(8, 3), torch.nn.Linear(8, 5)
    >>> views = {n: aeprobe.autoencoder(m, encode=m) for n, m in (("a", a), ("b", b))}
    >>> code_similarity(views, torch.randn(500, 8)).cka.shape
    (2, 2)
    """
    _check_keep(keep)
    if isinstance(models_or_views, Mapping):
        names = [str(k) for k in models_or_views]
        items = list(models_or_views.values())
    elif isinstance(models_or_views, Sequence) and not isinstance(models_or_views, (str, bytes)):
        items = list(models_or_views)
        names = [f"model {i}" for i in range(len(items))]
    else:
        raise TypeError("models_or_views must be a list or a dict of models / aeprobe.autoencoder views, got "
                        f"{type(models_or_views).__name__}")
    if not items:
        raise ValueError("models_or_views is empty")
    views = [as_view(m, name=f"models_or_views[{names[i]!r}]") for i, m in enumerate(items)]
    for name, v in zip(names, views):
        v.require("encode", probe=f"code_similarity ({name})")
    batches = _batches(x, batch_size)
    mom = Comoments(len(views), quartic=True)
    with contextlib.ExitStack() as stack:
        for v in views:
            stack.enter_context(v.evaluating(device))
        for xb in batches:
            mom.update(*[v.encode(xb) for v in views])
    k = len(views)
    out = {key: np.full((k, k), np.nan) for key in ("cka", "cka_debiased", "svcca")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        for i in range(k):
            for j in range(i, k):
                vals = (mom.cka(i, j), mom.cka(i, j, debiased=True), mom.svcca(i, j, keep=keep))
                for key, v in zip(("cka", "cka_debiased", "svcca"), vals):
                    out[key][i, j] = out[key][j, i] = v
    for msg in {str(w.message) for w in caught}:
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return SimilarityReport(names=names, code_sizes=list(mom.dims), n=mom.count, keep=float(keep), **out)


# ============================================================================================ ablation
@dataclass(kw_only=True)
class AblationReport(_Report):
    """Zeroing each code unit: measured vs first-order predicted change of the output (``[len(units)]``).

    ``measured[k] = mean_i ||D(z_i - z_ik e_k) - D(z_i)||``; ``predicted[k] = mean_i ||J_D(z_i) z_ik e_k||``;
    ``ratio = measured / predicted`` (NaN where ``predicted`` is 0, e.g. a dead unit);
    ``loss_change[k]`` = mean per-element squared error with unit ``k`` zeroed minus ``base_loss``.
    """

    units: list[int]
    n: int
    code_shape: tuple[int, ...]
    measured: np.ndarray
    predicted: np.ndarray
    ratio: np.ndarray
    loss_change: np.ndarray
    base_loss: float

    def plot(self, path):
        """Measured vs predicted per unit (:func:`aeprobe.plots.code.plot_ablation`)."""
        from aeprobe.plots.code import plot_ablation

        return plot_ablation(self, path)


def _check_units(units, m: int) -> list[int]:
    if units is None:
        return list(range(m))
    if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        units = [int(units)]
    out = []
    for u in units:
        if isinstance(u, bool) or not isinstance(u, (int, np.integer)):
            raise TypeError(f"units must be ints (flattened code indices), got {u!r}")
        if not 0 <= int(u) < m:
            raise ValueError(f"unit {int(u)} is out of range for a code of {m} units")
        out.append(int(u))
    if not out:
        raise ValueError("units is empty")
    return out


def unit_ablation(ae, x, units=None, *, batch_size: int = 256, device=None) -> AblationReport:
    """Zero each code unit in turn: the measured change of the decoded output vs its first-order prediction.

    For unit ``k`` and input ``i`` with code ``z_i``: measured ``||D(z_i - z_ik e_k) - D(z_i)||`` (two
    decodes), predicted ``||J_D(z_i) (z_ik e_k)||`` (one ``torch.func.jvp``), both averaged over the
    inputs; for an affine decoder they agree to rounding. ``loss_change[k]``: the mean per-element
    squared error against ``x`` with unit ``k`` zeroed, minus the unablated one. ``units``: flattened
    code indices (default: all). Needs ``encode`` and ``decode``; costs ``len(units)`` decodes and
    jvps per batch.

    >>> lin = torch.nn.Module(); lin.encoder = torch.nn.Linear(6, 3); lin.decoder = torch.nn.Linear(3, 6)
    >>> r = unit_ablation(lin, torch.randn(200, 6))
    >>> bool(abs(r.ratio - 1).max() < 1e-5)
    True
    """
    from torch.func import jvp

    view = as_view(ae, name="ae")
    view.require("encode", "decode", probe="unit_ablation")
    if units is not None and not isinstance(units, (int, np.integer)):
        units = list(units)
    batches = _batches(x, batch_size)
    meas = pred = loss = None
    base = torch.zeros((), dtype=torch.float64)
    n = 0
    code_shape = None
    with view.evaluating(device), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch scripts decompositions on 1st jvp
        for xb in batches:
            xb = view.prepare(xb)
            z = view.encode(xb)
            b = z.shape[0]
            zf = z.reshape(b, -1)
            if code_shape is None:
                code_shape = tuple(z.shape[1:])
                units = _check_units(units, zf.shape[1])
                meas, pred, loss = (torch.zeros(len(units), dtype=torch.float64) for _ in range(3))
            out0 = view.decode(z)
            if out0.shape != xb.shape:
                raise ValueError(f"decode(encode(x)) has shape {tuple(out0.shape)} but x {tuple(xb.shape)}")
            base = base + ((out0 - xb).reshape(b, -1).double() ** 2).mean(1).sum()
            for idx, k in enumerate(units):
                v = torch.zeros_like(zf)
                v[:, k] = zf[:, k]
                v = v.reshape(z.shape)
                out_k = view.decode(z - v)
                _, tangent = jvp(view.decode, (z,), (v,))
                meas[idx] += (out_k - out0).reshape(b, -1).double().norm(dim=1).sum()
                pred[idx] += tangent.reshape(b, -1).double().norm(dim=1).sum()
                loss[idx] += ((out_k - xb).reshape(b, -1).double() ** 2).mean(1).sum()
            n += b
    meas, pred, loss, base = (t / n for t in (meas, pred, loss, base))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pred.numpy() > 0, meas.numpy() / pred.numpy(), np.nan)
    return AblationReport(units=units, n=n, code_shape=code_shape, measured=meas.numpy(), predicted=pred.numpy(),
                          ratio=ratio, loss_change=(loss - base).numpy(), base_loss=float(base))


# ============================================================================================ PCA alignment
@dataclass(kw_only=True)
class AlignmentReport(_Report):
    """Principal angles between the decoder's column space and the top-``d`` PCA subspace of the data.

    ``angles``: radians, ascending (``min(rank, d)`` of them); ``pca_variance``: covariance
    eigenvalues of the data, descending; ``eigengap = (λ_d - λ_{d+1}) / λ_d`` (the PCA subspace is
    ill-defined as it goes to 0); ``explained_pca`` / ``explained_decoder``: the share of the data's
    variance in the PCA subspace / in the decoder's column space (``<=`` the former, equal at the
    linear optimum); ``affine_error``: ``max_i ||D(z_i) - D(z̄) - J (z_i - z̄)|| / ||D(z_i) - D(z̄)||`` on
    up to 16 data codes (0 for an affine decoder, where the column space is that of ``W_dec``).
    """

    n: int
    code_dim: int
    rank: int
    center: bool
    angles: np.ndarray
    pca_variance: np.ndarray
    eigengap: float
    explained_pca: float
    explained_decoder: float
    affine_error: float

    @property
    def max_angle(self) -> float:
        return float(self.angles.max()) if self.angles.size else float("nan")

    @property
    def angles_deg(self) -> np.ndarray:
        return np.degrees(self.angles)

    def plot(self, path):
        """Angles and the PCA spectrum (:func:`aeprobe.plots.code.plot_alignment`)."""
        from aeprobe.plots.code import plot_alignment

        return plot_alignment(self, path)


def pca_alignment(ae, x, *, center: bool = True, batch_size: int = 256, device=None) -> AlignmentReport:
    """Principal angles between the decoder's column space and the top-``d`` PCA subspace of ``x``.

    The decoder's columns are its Jacobian ``J = ∂D/∂z`` at the mean code ``z̄`` (``d`` = code size
    jvps); for an affine decoder ``D(z) = W z + b`` that is ``W`` exactly, elsewhere the tangent space
    at ``z̄`` (see ``affine_error``). The PCA subspace: the top-``d`` eigenvectors of the data
    covariance (``center=False``: of the second moment ``E[x x^T]``, the optimum of a linear AE
    without biases). Angles by :func:`scipy.linalg.subspace_angles` (accurate for small angles).
    A linear AE at its minimum has all angles 0 (Baldi & Hornik 1989). Memory ``O(D^2)``,
    ``D`` = input size.

    >>> lin = torch.nn.Module(); lin.encoder = torch.nn.Linear(6, 2); lin.decoder = torch.nn.Linear(2, 6)
    >>> pca_alignment(lin, torch.randn(500, 6)).angles.shape
    (2,)
    """
    from torch.func import jvp

    view = as_view(ae, name="ae")
    view.require("encode", "decode", probe="pca_alignment")
    batches = _batches(x, batch_size)
    xmom = Comoments(1)
    second = None
    zsum = None
    zex = None
    n = 0
    with view.evaluating(device) as dev, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        for xb in batches:
            xb = view.prepare(xb)
            z = view.encode(xb)
            xmom.update(xb)
            if not center:
                xf = _flat64(xb)
                second = xf.T @ xf if second is None else second + xf.T @ xf
            zs = _flat64(z).sum(0)
            zsum = zs if zsum is None else zsum + zs
            if zex is None:
                zex = z[:16].detach().clone()
            n += xb.shape[0]
        dim = xmom.dims[0]
        d = zsum.numel()
        if d > dim:
            raise ValueError(f"the code has {d} units but the input only {dim} features: no top-{d} PCA subspace")
        zbar = (zsum / n).to(device=dev, dtype=zex.dtype).reshape(1, *zex.shape[1:])
        eye = torch.eye(d, dtype=zex.dtype, device=dev).reshape(d, *zex.shape[1:])
        out0, cols = jvp(view.decode, (zbar.expand(d, *zex.shape[1:]).clone(),), (eye,))
        cols = cols.reshape(d, -1).T.to("cpu", torch.float64)  # [D, d]
        if cols.shape[0] != dim:
            raise ValueError(f"decode gives {cols.shape[0]} features per sample but x has {dim}")
        base = out0[:1].reshape(1, -1).to("cpu", torch.float64)
        dz = (_flat64(zex) - zsum[None] / n)
        lin_pred = base + dz @ cols.T
        actual = _flat64(view.decode(zex))
        num = (actual - lin_pred).norm(dim=1)
        den = (actual - base).norm(dim=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            affine = float(np.nanmax(np.where(den.numpy() > 0, (num / den).numpy(), 0.0)))
    sigma = xmom.cov(0) if center else second / n
    lam, vec = torch.linalg.eigh(sigma)
    lam, vec = lam.flip(0).clamp_min(0), vec.flip(1)
    u, s, _ = torch.linalg.svd(cols, full_matrices=False)
    rank = int((s > s[0] * max(cols.shape) * torch.finfo(torch.float64).eps).sum()) if s[0] > 0 else 0
    if rank < d:
        warnings.warn(f"pca_alignment: the decoder's Jacobian has rank {rank} < code size {d}; comparing its "
                      f"{rank}-dim column space with the top-{d} PCA subspace", RuntimeWarning, stacklevel=2)
    top = vec[:, :d]
    q = u[:, :rank]
    angles = np.sort(subspace_angles(q.numpy(), top.numpy())) if rank else np.array([])
    angles = angles[:min(rank, d)]
    total = float(lam.sum())
    gap = float((lam[d - 1] - lam[d]) / lam[d - 1]) if d < dim and lam[d - 1] > 0 else float("nan")
    if math.isfinite(gap) and gap < 1e-6:
        warnings.warn(f"pca_alignment: eigenvalues {d} and {d + 1} of the data are equal to 1e-6 "
                      f"({float(lam[d - 1]):.6g}); the top-{d} PCA subspace is not unique", RuntimeWarning,
                      stacklevel=2)
    exp_dec = float(torch.trace(q.T @ sigma @ q)) / total if total > 0 and rank else float("nan")
    return AlignmentReport(n=n, code_dim=d, rank=rank, center=bool(center), angles=angles,
                           pca_variance=lam.numpy(), eigengap=gap,
                           explained_pca=float(lam[:d].sum()) / total if total > 0 else float("nan"),
                           explained_decoder=exp_dec, affine_error=affine)
