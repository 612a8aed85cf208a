"""Where does an autoencoder overfit: in its encoder or in its decoder?

Manakov et al. (Sec. 4.3, 5) found linear probes on codes about as accurate on unseen as
on seen images, even for CAEs whose reconstruction error overfits badly, and asked whether
overfitting "occurs mainly in the encoder or decoder". This probe splits the
generalisation gap of a trained AE ``x -> D(E(x))`` into an encoder and a decoder share.

Method (refit a fresh decoder on codes of unseen data)
------------------------------------------------------
Held-out images are split at random into halves ``A`` and ``B``; ``T`` is the training set.
Errors are mean per-element squared errors.

* ``train_error = err(D o E, T)`` and ``test_error = err(D o E, B)``; ``gap = test - train``.
* A **fresh decoder** ``D'`` -- a copy of ``D`` with every ``reset_parameters()`` called
  (seeded), or ``decoder_factory()`` -- is trained on ``(E(x), x)`` for ``x`` in ``A`` with
  ``E`` frozen (codes are computed once, in ``eval`` mode). ``D'`` never saw a training
  code, so it cannot exploit memorised training codes; its held-out error
  ``refit_error = err(D' o E, B)`` measures what the encoder's codes of *unseen* images
  still allow a decoder to reconstruct.
* ``encoder_gap = refit_error - train_error``: error the encoder's codes of unseen images
  force on *any* decoder fit this way, beyond the training error.
  ``decoder_gap = test_error - refit_error``: error removed by merely re-fitting the
  decoder on unseen codes, i.e. the original decoder's specialisation to training codes.
  The two add up to ``gap``; ``encoder_share``/``decoder_share`` divide by ``gap`` (NaN when
  ``gap <= 0``).
* **Budget-matched control** (``control=True``): a second fresh decoder ``D''``, same
  protocol, same number of fit samples and epochs, is fit on codes of a training subset
  ``T1`` and scored on a disjoint training subset ``T2``: ``refit_seen_error``. Because
  ``D'`` and ``D''`` differ only in whether the *encoder* saw the images,
  ``encoder_gap_matched = refit_error - refit_seen_error`` removes the refit's own
  shortfall (too few epochs, too few samples in ``A``, the fresh decoder's own
  overfitting), and ``decoder_gap_matched = gap - encoder_gap_matched``.
* ``probe``: with labels, the seen/unseen linear-probe gap of
  :func:`aeprobe.probes.linear.seen_unseen_probe` on the same codes.

Assumptions
-----------
1. The decoder architecture can represent the best decoder for the codes, and the refit
   reaches it: then ``refit_error`` is what the codes allow and the split is exact.
2. ``A`` and ``B`` are i.i.d. unseen samples; ``A`` is big enough for ``D'`` to generalise
   from ``A`` to ``B`` (diagnosed by ``refit_fit_error``, ``D'``'s error on ``A`` itself).
3. The encoder is deterministic and treats samples independently in ``eval`` mode.

Failure modes (how the figures mislead, and the diagnostic)
------------------------------------------------------------
* **Refit shortfall** (under-trained or over-fitting ``D'``): ``refit_error`` is too high,
  so ``encoder_gap`` is *over*-estimated and ``decoder_gap`` under-estimated (it can go
  negative). Diagnostics: ``refit_error > test_error`` (negative ``decoder_gap``), a large
  ``refit_error - refit_fit_error`` (``D'`` overfit ``A``), ``refit_seen_error`` well above
  ``train_error``. ``encoder_gap_matched`` cancels the shortfall's *level* to first order,
  but not its *selectivity*: a refit that only learns to read the coarse content of the codes
  cannot see what the codes of unseen images lack in finer content, so when the shortfall
  ``refit_seen_error - train_error`` is comparable to ``gap`` the matched encoder part is
  *under*-estimated (biased towards the decoder). Measured on the CAEs of
  ``experiments/bottleneck.py`` (32x32 patches): halving the refit epochs from 20 to 10 raised
  the shortfall from ~0.005-0.013 to ~0.025-0.034 (gap ~0.02) and cut the matched encoder part
  from ~0.02 to ~0.005-0.01. Give the refit enough epochs that the shortfall is small
  against the gap, and report it.
* **Small training set** for the control: ``D''`` is fit on at most half of ``T``; when
  ``T`` is smaller than the code dimension, ``D''`` cannot generalise from ``T1`` to ``T2``
  and the matched figures are biased towards the decoder. ``n_fit`` is reported.
* **Codes that carry the information but in a form the decoder class cannot read** (a
  nonlinear scrambling of the codes of unseen images) are charged to the encoder: the
  split is relative to the decoder architecture, not to all functions.
* **Distribution shift between seen and unseen images** (not i.i.d. splits) is charged to
  the encoder as well.
* ``train_error`` is the *final* training error; early-stopped or noisy training losses
  change the gap but not the refit.
* The shares are unstable when ``gap`` is small compared with the seed-to-seed spread of
  the errors; report the gaps, not only the shares.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from aeprobe.probes._batch import (batched, check_autoencoder, check_images, codes as _codes, eval_mode,
                                   model_device, per_sample_mse)
from aeprobe.probes.linear import LinearProbeReport, seen_unseen_probe_features


@dataclass
class OverfittingReport:
    """Encoder/decoder split of the generalisation gap; see the module docstring."""

    train_error: float
    test_error: float
    gap: float
    refit_error: float
    refit_fit_error: float
    encoder_gap: float
    decoder_gap: float
    encoder_share: float
    decoder_share: float
    refit_seen_error: float | None
    encoder_gap_matched: float | None
    decoder_gap_matched: float | None
    n_train: int
    n_fit: int
    n_eval: int
    n_control_eval: int
    epochs: int
    init: str
    probe: LinearProbeReport | None = None

    @property
    def probe_gap(self) -> float | None:
        return None if self.probe is None else self.probe.gap


class _Decoding(nn.Module):
    """``z -> ae.decode(z)`` with only the decoder registered (so only it is trained)."""

    def __init__(self, ae: nn.Module):
        super().__init__()
        self.decoder = ae.decoder
        object.__setattr__(self, "_ae", ae)

    def forward(self, z):
        return self._ae.decode(z)


def fresh_decoder_model(model: nn.Module, *, init: str = "reset", seed: int = 0,
                        decoder_factory: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A deep copy of ``model`` whose ``.decoder`` is re-initialised (``init="reset"``: every
    submodule's ``reset_parameters()`` under ``torch.manual_seed(seed)``), replaced by
    ``decoder_factory()``, or kept (``init="finetune"``). The caller's RNG is untouched."""
    if init not in ("reset", "finetune"):
        raise ValueError(f"init must be 'reset' or 'finetune', got {init!r}")
    if not isinstance(getattr(model, "decoder", None), nn.Module):
        raise TypeError(f"{type(model).__name__} has no .decoder submodule to refit")
    ae = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if decoder_factory is not None:
            ae.decoder = decoder_factory()
            if not isinstance(ae.decoder, nn.Module):
                raise TypeError("decoder_factory must return an nn.Module")
        elif init == "reset":
            n_reset = 0
            for m in ae.decoder.modules():
                if callable(getattr(m, "reset_parameters", None)):
                    m.reset_parameters()
                    n_reset += 1
            if n_reset == 0 and any(True for _ in ae.decoder.parameters()):
                raise ValueError("decoder has parameters but no submodule with reset_parameters(); "
                                 "pass decoder_factory= to build a fresh decoder")
    if not any(p.requires_grad for p in ae.decoder.parameters()):
        raise ValueError("the fresh decoder has no trainable parameters; pass decoder_factory=")
    for p in ae.parameters():
        p.requires_grad_(False)
    for p in ae.decoder.parameters():
        p.requires_grad_(True)
    return ae


def _fit_and_score(model, z_fit, x_fit, z_eval, x_eval, *, init, seed, decoder_factory, epochs, batch_size, lr,
                   device) -> tuple[float, float]:
    """Fit a fresh decoder on ``(z_fit, x_fit)``; return (error on fit set, error on eval set)."""
    from aeprobe.train import train

    ae = fresh_decoder_model(model, init=init, seed=seed, decoder_factory=decoder_factory)
    dec = _Decoding(ae)
    ae.to(device)
    # codes were computed beforehand, so the encoder takes no part in this fit
    train(dec, z_fit, x_fit, epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=seed, progress=False)
    with eval_mode(dec):
        out_fit = batched(dec, z_fit, device=device)
        out_eval = batched(dec, z_eval, device=device)
    return float(((out_fit - x_fit) ** 2).mean()), float(((out_eval - x_eval) ** 2).mean())


def overfitting_split(model: nn.Module, x_train, x_heldout, *, y_train=None, y_heldout=None, epochs: int = 30,
                      batch_size: int = 64, lr: float = 1e-3, init: str = "reset",
                      decoder_factory: Callable[[], nn.Module] | None = None, control: bool = True,
                      max_train_eval: int | None = 2000, probe_repeats: int = 3, seed: int = 0,
                      device=None) -> OverfittingReport:
    """Split ``model``'s generalisation gap into encoder and decoder shares (module docstring).

    ``x_train``: the images the AE was trained on; ``x_heldout``: unseen images (split at
    random, seeded, into fit half ``A`` and evaluation half ``B``); ``y_*``: optional labels
    for the seen/unseen linear probe. ``epochs``/``batch_size``/``lr``: the fresh decoder's
    training (Adam via :func:`aeprobe.train.train`). ``max_train_eval`` caps the number of
    training images used for ``train_error`` (random subset, seeded).
    """
    check_autoencoder(model)
    x_train, x_heldout = check_images(x_train, "x_train"), check_images(x_heldout, "x_heldout")
    if x_train.shape[1:] != x_heldout.shape[1:]:
        raise ValueError(f"x_train samples have shape {tuple(x_train.shape[1:])} but x_heldout samples "
                         f"{tuple(x_heldout.shape[1:])}")
    if x_heldout.shape[0] < 4:
        raise ValueError(f"x_heldout needs at least 4 samples to split into fit/eval halves, got {x_heldout.shape[0]}")
    if control and x_train.shape[0] < 4:
        raise ValueError(f"the control needs at least 4 training samples, got {x_train.shape[0]}")
    dev = model_device(model, device)
    rng = np.random.default_rng(seed)

    perm = torch.from_numpy(rng.permutation(x_heldout.shape[0]))
    half = x_heldout.shape[0] // 2
    idx_a, idx_b = perm[:half], perm[half:]
    n_fit = half if not control else min(half, x_train.shape[0] // 2)
    idx_a = idx_a[:n_fit]
    x_a, x_b = x_heldout[idx_a], x_heldout[idx_b]

    n_tr = x_train.shape[0]
    tr_eval = torch.from_numpy(rng.permutation(n_tr)[: (max_train_eval or n_tr)])
    train_error = float(per_sample_mse(model, x_train[tr_eval], device=dev).mean())
    test_error = float(per_sample_mse(model, x_b, device=dev).mean())

    z_a = _codes(model, x_a, device=dev, flatten=False)
    z_b = _codes(model, x_b, device=dev, flatten=False)
    kw = dict(init=init, seed=seed, decoder_factory=decoder_factory, epochs=epochs, batch_size=batch_size, lr=lr,
              device=dev)
    refit_fit, refit_err = _fit_and_score(model, z_a, x_a, z_b, x_b, **kw)

    refit_seen = None
    n_ctrl_eval = 0
    if control:
        p = torch.from_numpy(rng.permutation(n_tr))
        t1 = p[:n_fit]
        t2 = p[n_fit:n_fit + x_b.shape[0]]
        n_ctrl_eval = int(t2.numel())
        z_t1 = _codes(model, x_train[t1], device=dev, flatten=False)
        z_t2 = _codes(model, x_train[t2], device=dev, flatten=False)
        _, refit_seen = _fit_and_score(model, z_t1, x_train[t1], z_t2, x_train[t2], **kw)

    gap = test_error - train_error
    enc = refit_err - train_error
    dec = test_error - refit_err
    share_ok = gap > 0
    enc_m = None if refit_seen is None else refit_err - refit_seen
    probe = None
    if y_train is not None and y_heldout is not None:
        zs = _codes(model, x_train, device=dev)
        zu = _codes(model, x_heldout, device=dev)
        probe = seen_unseen_probe_features(zs, y_train, zu, y_heldout, repeats=probe_repeats, seed=seed)
    return OverfittingReport(
        train_error=train_error, test_error=test_error, gap=gap, refit_error=refit_err, refit_fit_error=refit_fit,
        encoder_gap=enc, decoder_gap=dec,
        encoder_share=enc / gap if share_ok else float("nan"), decoder_share=dec / gap if share_ok else float("nan"),
        refit_seen_error=refit_seen, encoder_gap_matched=enc_m,
        decoder_gap_matched=None if enc_m is None else gap - enc_m,
        n_train=n_tr, n_fit=int(n_fit), n_eval=int(x_b.shape[0]), n_control_eval=n_ctrl_eval, epochs=epochs,
        init=init if decoder_factory is None else "factory", probe=probe)
