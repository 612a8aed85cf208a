"""How alike are the codes of the bottleneck grid's CAEs? SVCCA and CKA between every pair of models
(:func:`aeprobe.probes.code.svcca`, :func:`aeprobe.probes.code.cka`) on the same test images, and
Manakov et al.'s comparison: are codes of the *same bottleneck area* (other channel counts) more
alike than codes of *different areas*?

    sim = similarities(runs, codes, keep=0.99, permutations=5000)
    sim["test"]["svcca"]["difference"], sim["test"]["svcca"]["p_greater"]

Pairs of models fall in four groups: *seed replicates* (same area and compression, another seed:
the ceiling a configuration reaches with itself), *same area* (another compression, i.e. another
channel count), *same compression* (another area: the same code volume in other channels) and
*different area and compression*. The statistic compares the pairs that differ in compression:
mean(same area) - mean(different area and compression). (Pairs of the same compression are left
out of it: within an area every configuration has another compression, so counting them on the
different-area side only would credit the compression to the area.) Pairs share models, so they
are not independent and a rank test over pairs would be too optimistic; the p-value is that of a
permutation test that reassigns the area labels among the configurations (each configuration
keeps its compression and its seeds; the number of configurations per area is kept):
``p_greater`` = the share of relabellings whose statistic is at least the observed one (with the
observed labelling counted), ``p_less`` the other tail.

Codes wider than the number of images are first replaced by their coordinates in their own row
space (``U S`` of the centred code's SVD): an orthogonal map, which changes neither CKA nor SVCCA
(both see the codes only through their centred Gram matrix and principal directions) and makes each
pair cost at most ``O(N^3)``. SVCCA keeps, per code, the fewest principal directions that explain
``keep`` of its variance; when that is a large share of the ``N`` images, canonical correlations are
high whatever the codes (``kept`` in the results says how many were kept), which the permutation
test absorbs (it keeps every code's size) but a reader of the raw values should know.
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

__all__ = ["MEASURES", "GROUPS", "row_space", "kept_directions", "pair_groups", "area_test", "similarities",
           "similarity_verdict"]

#: the similarity measures computed for every pair, in :func:`similarities`' results
MEASURES = ("svcca", "cka", "cka_debiased")
#: the groups of pairs, in order
GROUPS = ("seed replicates", "same area", "same compression", "different area and compression")
ALPHA = 0.05


def row_space(z: torch.Tensor) -> torch.Tensor:
    """``[N, m]`` codes -> their centred coordinates in an orthonormal basis of their row space
    (``[N, min(N, m)]``, float64); CKA and SVCCA of the result equal those of ``z``."""
    z = z.reshape(z.shape[0], -1).double()
    z = z - z.mean(0, keepdim=True)
    if z.shape[1] <= z.shape[0]:
        return z
    u, s, _ = torch.linalg.svd(z, full_matrices=False)
    return u * s


def kept_directions(z: torch.Tensor, keep: float) -> int:
    """The number of principal directions of ``z`` that SVCCA keeps: the fewest explaining ``keep``
    of its variance (directions below ``1e-10`` of the largest variance do not count)."""
    from aeprobe.probes.code import RANK_RTOL

    s = torch.linalg.svdvals(row_space(z)) ** 2
    s = s[s > RANK_RTOL * s.max()] if s.numel() and s.max() > 0 else s[:0]
    if s.numel() == 0:
        return 0
    share = torch.cumsum(s, 0) / s.sum()
    return int(min(int((share < keep - 1e-12).sum()) + 1, s.numel()))


def pair_groups(areas: list[str], comps: list[str]) -> np.ndarray:
    """``[k, k]`` group index (into :data:`GROUPS`) of every pair of models from each model's area and
    compression: 0 seed replicates, 1 same area, 2 same compression, 3 both differ; -1 on the diagonal."""
    a, c = np.asarray(areas), np.asarray(comps)
    sa, sc = a[:, None] == a[None, :], c[:, None] == c[None, :]
    g = np.where(sa & sc, 0, np.where(sa, 1, np.where(sc, 2, 3)))
    np.fill_diagonal(g, -1)
    return g


def area_test(matrix: np.ndarray, areas: list[str], comps: list[str], *, permutations: int = 5000,
              seed: int = 0) -> dict[str, Any]:
    """Mean similarity of each group of pairs; ``difference`` = same area - different area and
    compression, and its permutation p-values (area labels reassigned among the configurations; see
    the module doc). Every distinct relabelling is used when there are at most ``permutations``."""
    m = np.asarray(matrix, dtype=float)
    iu = np.triu_indices(m.shape[0], 1)
    vals = m[iu]
    groups = pair_groups(areas, comps)[iu]
    out: dict[str, Any] = {"means": {}, "counts": {}}
    for gi, name in enumerate(GROUPS):
        sel = (groups == gi) & np.isfinite(vals)
        out["means"][name] = float(vals[sel].mean()) if sel.any() else None
        out["counts"][name] = int(sel.sum())
    same, diff = out["means"]["same area"], out["means"]["different area and compression"]
    if same is None or diff is None:
        out.update(difference=None, p_greater=None, p_less=None, permutations=0, exhaustive=False)
        return out
    out["difference"] = same - diff
    conf_ids = sorted(set(zip(areas, comps)), key=list(zip(areas, comps)).index)  # configurations, in order
    labels = [a for a, _ in conf_ids]
    index = {c: i for i, c in enumerate(conf_ids)}
    model_conf = np.array([index[c] for c in zip(areas, comps)])
    ci, cj = model_conf[iu[0]], model_conf[iu[1]]
    comp_arr = np.asarray(comps)
    eligible = (comp_arr[iu[0]] != comp_arr[iu[1]]) & np.isfinite(vals)  # pairs of two compressions

    def stat(lab: np.ndarray) -> float:
        same_area = lab[ci] == lab[cj]
        s, d = eligible & same_area, eligible & ~same_area
        return float(vals[s].mean() - vals[d].mean()) if s.any() and d.any() else np.nan

    distinct = _multiset_permutations(labels, limit=permutations)
    if distinct is not None:
        perms = [np.array(p) for p in distinct]
    else:
        rng = np.random.default_rng(seed)
        base = np.array(labels)
        perms = [rng.permutation(base) for _ in range(permutations)]
    stats = np.array([stat(p) for p in perms])
    stats = stats[np.isfinite(stats)]
    obs = stat(np.array(labels))
    tol = 1e-12 * max(1.0, abs(obs))
    if distinct is not None:  # exhaustive: the observed labelling is one of them
        p_greater = float(np.mean(stats >= obs - tol))
        p_less = float(np.mean(stats <= obs + tol))
    else:
        p_greater = float((1 + np.sum(stats >= obs - tol)) / (1 + stats.size))
        p_less = float((1 + np.sum(stats <= obs + tol)) / (1 + stats.size))
    out.update(p_greater=p_greater, p_less=p_less, permutations=int(stats.size), exhaustive=distinct is not None)
    return out


def _multiset_permutations(labels: list[str], limit: int = 200_000) -> list[tuple] | None:
    """Every distinct ordering of ``labels`` (None when there are more than ``limit``)."""
    from math import factorial

    counts = {lab: labels.count(lab) for lab in set(labels)}
    n = factorial(len(labels))
    for c in counts.values():
        n //= factorial(c)
    if n > limit:
        return None
    out: list[tuple] = []

    def rec(prefix: list, left: dict) -> None:
        if len(prefix) == len(labels):
            out.append(tuple(prefix))
            return
        for lab in sorted(left):
            if left[lab]:
                left[lab] -= 1
                prefix.append(lab)
                rec(prefix, left)
                prefix.pop()
                left[lab] += 1

    rec([], dict(counts))
    return out


def similarities(runs: list[dict], codes: dict[str, torch.Tensor], *, keep: float = 0.99,
                 permutations: int = 5000, seed: int = 0) -> dict[str, Any]:
    """SVCCA, CKA and debiased CKA between the codes of every pair of runs (in the order of ``runs``)
    and the same-area vs different-area test of each (:func:`area_test`). ``codes``: run key ->
    ``[N, m]`` codes of the same ``N`` test images."""
    import warnings

    from aeprobe.probes.code import Comoments

    keys = [r["key"] for r in runs]
    names = [f"{r['area']} {r['compression']} s{r['seed']}" for r in runs]
    areas = [r["area"] for r in runs]
    comps = [str(r["compression"]) for r in runs]
    red = {k: row_space(codes[k]) for k in keys}
    n = int(next(iter(red.values())).shape[0]) if red else 0
    k = len(keys)
    mats = {m: np.eye(k) for m in MEASURES}
    with warnings.catch_warnings():  # "canonical correlations biased upward": reported through ``kept``
        warnings.simplefilter("ignore", RuntimeWarning)
        for i, j in itertools.combinations(range(k), 2):
            mom = Comoments(2, quartic=True)  # one pass gives the three measures (aeprobe.probes.code)
            mom.update(red[keys[i]], red[keys[j]])
            vals = {"svcca": mom.svcca(0, 1, keep=keep), "cka": mom.cka(0, 1), "cka_debiased": mom.cka(0, 1, debiased=True)}
            for m in MEASURES:
                mats[m][i, j] = mats[m][j, i] = vals[m]
    for i in range(k):  # a code with itself: 1 by definition (0/0 for a constant code: NaN)
        a = red[keys[i]]
        if not bool((a.abs() > 0).any()):
            for m in MEASURES:
                mats[m][i, i] = np.nan
    return dict(names=names, keys=keys, areas=areas, compressions=comps, n_inputs=n, keep=float(keep),
                code_sizes=[int(codes[kk].reshape(codes[kk].shape[0], -1).shape[1]) for kk in keys],
                kept=[kept_directions(red[kk], keep) for kk in keys],
                matrices={m: mats[m].tolist() for m in MEASURES},
                test={m: area_test(mats[m], areas, comps, permutations=permutations, seed=seed)
                      for m in ("svcca", "cka_debiased")})


def similarity_verdict(test: dict[str, Any], alpha: float = ALPHA) -> str:
    """*supported*: same-area pairs more alike than pairs differing in area and compression,
    permutation p < ``alpha``; *contradicted*: the latter significantly more alike; *not supported*
    otherwise; *not testable* without both groups."""
    d = test.get("difference")
    if d is None or test.get("p_greater") is None:
        return "not testable (needs at least two areas with two compressions each)"
    if d > 0 and test["p_greater"] < alpha:
        return "supported"
    if d < 0 and test["p_less"] < alpha:
        return f"contradicted (different areas more alike, permutation p={test['p_less']:.2g})"
    return f"not supported (difference {d:+.3g}, permutation p={test['p_greater']:.2g})"
