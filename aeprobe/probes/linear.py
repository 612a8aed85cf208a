"""Linear probes on autoencoder codes, on data the AE saw and on data it did not see.

Manakov et al. (Sec. 3.3, 4.3) fit a logistic regression on latent codes to read off how
linearly separable the labels are, separately for codes of *seen* (training) images and
of *unseen* images, and compare with a probe on the raw pixels (the baseline): a copying
encoder would give the same accuracy as the pixels. They found seen ~= unseen even for
AEs that overfit in reconstruction, and suggested the decoder may be where overfitting
lives (see :mod:`aeprobe.probes.overfitting`).

Protocol here (scikit-learn): ``StandardScaler`` + ``LogisticRegression`` (L2, ``C``),
fit on a random ``1 - test_size`` part of one set and scored (accuracy) on the rest,
repeated over ``repeats`` seeds with different splits and averaged (the paper: 60/20/20
with early stopping, three seeds; we use sklearn's deterministic L-BFGS instead of a
one-cycle SGD schedule, so there is no validation part).

* ``acc_seen``: probe trained and tested on codes of seen images.
* ``acc_unseen``: the same protocol on codes of unseen images.
* ``gap = acc_seen - acc_unseen``: > 0 means the encoder's codes of seen images are more
  linearly informative than of unseen ones (encoder-side overfitting visible to a probe).
* ``acc_transfer``: probe trained on seen codes, tested on unseen codes (a distribution
  shift of the *codes* between seen and unseen images lowers it).

Both sets are subsampled to the same size before probing, because probe accuracy grows
with the number of probe training samples and would otherwise confound the gap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aeprobe.utils import check_images, on_device
from aeprobe.view import as_view


@dataclass
class ProbeResult:
    """Accuracy of a standardised logistic regression on one feature set.

    ``accuracy``: mean test accuracy over ``repeats`` random splits; ``std``: its standard
    deviation over the repeats; ``chance``: accuracy of always predicting the most
    frequent class of the test labels (averaged over repeats).
    """

    accuracy: float
    std: float
    chance: float
    n: int
    dim: int
    repeats: int


@dataclass
class LinearProbeReport:
    """Seen-vs-unseen linear probe on codes (see module docstring for each figure)."""

    acc_seen: float
    acc_unseen: float
    gap: float
    acc_transfer: float
    std_seen: float
    std_unseen: float
    chance: float
    n_per_set: int
    code_dim: int
    repeats: int


def _as_numpy_features(f) -> np.ndarray:
    if isinstance(f, torch.Tensor):
        f = f.detach().cpu().numpy()
    f = np.asarray(f, dtype=np.float64)
    if f.ndim < 2:
        raise ValueError(f"features must be [N, ...] with a batch dimension, got shape {f.shape}")
    f = f.reshape(f.shape[0], -1)
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf values")
    return f


def _as_labels(y, n: int, name: str = "labels") -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but there are {n} samples")
    if np.unique(y).size < 2:
        raise ValueError(f"{name} must contain at least two classes")
    return y


def _make_probe(C: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))


def _split(n: int, test_size: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    n_test = max(1, int(round(test_size * n)))
    if n - n_test < 2:
        raise ValueError(f"too few samples ({n}) for a probe with test_size={test_size}")
    return perm[n_test:], perm[:n_test]


def _fit_score(fx, y, tr, te, C, max_iter) -> float:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    if np.unique(y[tr]).size < 2:
        return float(np.mean(y[te] == y[tr][0]))
    from threadpoolctl import threadpool_limits

    clf = _make_probe(C, max_iter)
    # one BLAS/OpenMP thread: these fits are small, and multi-threaded BLAS on a busy
    # machine spin-waits (measured 50-100x slower on 2 shared cores)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(fx[tr], y[tr])
        return float(clf.score(fx[te], y[te]))


def _chance(y: np.ndarray) -> float:
    _, counts = np.unique(y, return_counts=True)
    return float(counts.max() / counts.sum())


def linear_probe(features, labels, *, test_size: float = 0.25, repeats: int = 3, seed: int = 0,
                 C: float = 1.0, max_iter: int = 300) -> ProbeResult:
    """Accuracy of ``StandardScaler + LogisticRegression`` on ``features`` (any ``[N, ...]``).

    Repeated ``repeats`` times on different random train/test splits (seeded); returns the
    mean and standard deviation of the test accuracy.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    fx = _as_numpy_features(features)
    y = _as_labels(labels, fx.shape[0])
    accs, chances = [], []
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        tr, te = _split(fx.shape[0], test_size, rng)
        accs.append(_fit_score(fx, y, tr, te, C, max_iter))
        chances.append(_chance(y[te]))
    return ProbeResult(float(np.mean(accs)), float(np.std(accs)), float(np.mean(chances)), fx.shape[0],
                       fx.shape[1], repeats)


def seen_unseen_probe_features(f_seen, y_seen, f_unseen, y_unseen, *, test_size: float = 0.25,
                               repeats: int = 3, seed: int = 0, C: float = 1.0,
                               max_iter: int = 300) -> LinearProbeReport:
    """:class:`LinearProbeReport` from precomputed features of seen and unseen samples."""
    fs, fu = _as_numpy_features(f_seen), _as_numpy_features(f_unseen)
    if fs.shape[1] != fu.shape[1]:
        raise ValueError(f"seen features have dim {fs.shape[1]} but unseen have {fu.shape[1]}")
    ys, yu = _as_labels(y_seen, fs.shape[0], "y_seen"), _as_labels(y_unseen, fu.shape[0], "y_unseen")
    n = min(fs.shape[0], fu.shape[0])
    rng = np.random.default_rng([seed, 9999])
    i_s = rng.permutation(fs.shape[0])[:n]
    i_u = rng.permutation(fu.shape[0])[:n]
    fs, ys, fu, yu = fs[i_s], ys[i_s], fu[i_u], yu[i_u]
    ps = linear_probe(fs, ys, test_size=test_size, repeats=repeats, seed=seed, C=C, max_iter=max_iter)
    pu = linear_probe(fu, yu, test_size=test_size, repeats=repeats, seed=seed, C=C, max_iter=max_iter)
    # transfer: fit on the same seen training parts, score on all unseen samples
    accs = []
    for r in range(repeats):
        tr, _ = _split(n, test_size, np.random.default_rng([seed, r]))
        accs.append(_fit_score(np.concatenate([fs[tr], fu]), np.concatenate([ys[tr], yu]),
                               np.arange(tr.size), np.arange(tr.size, tr.size + n), C, max_iter))
    return LinearProbeReport(
        acc_seen=ps.accuracy, acc_unseen=pu.accuracy, gap=ps.accuracy - pu.accuracy,
        acc_transfer=float(np.mean(accs)), std_seen=ps.std, std_unseen=pu.std,
        chance=_chance(np.concatenate([ys, yu])), n_per_set=n, code_dim=fs.shape[1], repeats=repeats)


def seen_unseen_probe(model, x_seen, y_seen, x_unseen, y_unseen, *, test_size: float = 0.25,
                      repeats: int = 3, seed: int = 0, C: float = 1.0, max_iter: int = 300,
                      batch_size: int = 256, device=None) -> LinearProbeReport:
    """Linear probe on the codes (``encode``) of seen (training) and unseen images.

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view (needs ``encode``; refused
    before any work otherwise). ``x_seen``/``x_unseen``: image batches; ``y_*``: integer labels.
    See the module docstring for the protocol and the meaning of each figure.
    """
    ae = as_view(model)
    ae.require("encode", probe="seen_unseen_probe")
    x_seen, x_unseen = check_images(x_seen, "x_seen"), check_images(x_unseen, "x_unseen")
    with on_device(ae.model, device):
        zs = ae.codes(x_seen, batch_size=batch_size)
        zu = ae.codes(x_unseen, batch_size=batch_size)
    return seen_unseen_probe_features(zs, y_seen, zu, y_unseen, test_size=test_size, repeats=repeats,
                                      seed=seed, C=C, max_iter=max_iter)
