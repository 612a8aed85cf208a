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
* A **fresh decoder** ``D'`` -- ``D`` with every ``reset_parameters()`` of its modules called
  (seeded), or ``decoder_factory()`` -- is trained on ``(E(x), x)`` for ``x`` in ``A`` with
  ``E`` frozen (codes are computed once, in ``eval`` mode). ``D``'s modules are those the view
  knows (``decoder=``, ``.decoder``) or those that run during ``decode`` (a VAE whose
  ``decode`` uses ``fc3`` and ``fc4`` has them refit). They are reset and trained *in place*
  (so callables bound to the model see them) inside :func:`fresh_decoder`, which puts every
  weight, buffer, gradient, mode and flag back bit-identically afterwards. ``D'`` never saw a training
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

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from aeprobe.probes.linear import LinearProbeReport, seen_unseen_probe_features
from aeprobe.state import ModelGuard
from aeprobe.utils import batched, check_images, eval_mode, on_device
from aeprobe.view import Autoencoder, as_view, pick

__all__ = ["OverfittingReport", "overfitting_split", "fresh_decoder"]


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


def _resettable(mods: dict[str, nn.Module]) -> list[nn.Module]:
    """The decoder's modules with ``reset_parameters()``, each once, in ``modules()`` order."""
    out, seen = [], set()
    for m in (sub for mod in mods.values() for sub in mod.modules()):
        if id(m) not in seen and callable(getattr(m, "reset_parameters", None)):
            seen.add(id(m))
            out.append(m)
    return out


def _refit_plan(ae: Autoencoder, z, init: str) -> tuple[dict[str, nn.Module], dict[str, nn.Parameter]]:
    """The decoder's modules and parameters, or an error saying why they cannot be refit."""
    ae.require("decode", probe="refitting the decoder")
    if init not in ("reset", "finetune"):
        raise ValueError(f"init must be 'reset' or 'finetune', got {init!r}")
    mods = ae.decoder_modules(z)
    params = ae.parameters_of(mods)
    names = ", ".join(n or "(the model itself)" for n in mods)
    if not params:
        raise ValueError(f"the decoder ({names}) has no parameters to refit; pass decoder_factory= (a function "
                         "returning a fresh decoder module)")
    if init == "reset" and not _resettable(mods):
        raise ValueError(f"the decoder ({names}) has parameters but no submodule with reset_parameters(); pass "
                         "decoder_factory= to build a fresh decoder, or init='finetune'")
    return mods, params


@contextlib.contextmanager
def fresh_decoder(model, z=None, *, init: str = "reset", seed: int = 0) -> Iterator[dict[str, nn.Parameter]]:
    """The decoder of ``model`` re-initialised *in place* for the block, restored on exit.

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view with ``decode``; ``z``: an
    example code, needed once when the decoder's modules are found by running ``decode`` (the last
    code the view encoded is used if none). ``init="reset"`` calls every ``reset_parameters()`` of
    the decoder's modules under ``torch.manual_seed(seed)`` (the caller's RNG is untouched);
    ``init="finetune"`` keeps the weights. Yields ``{name: parameter}`` of the decoder: trainable
    inside the block, every other parameter of the model frozen. On exit -- also on an error --
    weights and buffers are bit-identical to before, and gradients, ``requires_grad`` flags and
    train/eval modes are as they were.

    Example::

        with fresh_decoder(vae, z[:1]) as params:          # vae.decode uses fc3 and fc4
            sorted(params)                                 # ['fc3.bias', 'fc3.weight', 'fc4.bias', 'fc4.weight']
            train(some_module_calling_vae_decode, z, x, epochs=5, batch_size=32, progress=False)
        # vae is bit-identical to before here
    """
    ae = as_view(model)
    mods, params = _refit_plan(ae, z, init)
    model_ = ae.model
    in_model = {id(p): n for n, p in model_.named_parameters(remove_duplicate=False)}
    guards = [ModelGuard(model_, params=sorted({in_model[id(p)] for p in params.values() if id(p) in in_model}))]
    for name, m in mods.items():  # decoder modules given to the view that are not part of the model
        if not any(m is sub for sub in model_.modules()):
            guards.append(ModelGuard(m, params=[n for n, _ in m.named_parameters()]))
    grads = [(p, p.grad) for p in params.values()]
    try:
        if init == "reset":
            devs = sorted({p.device for p in params.values() if p.device.type == "cuda"}, key=str)
            with torch.random.fork_rng(devices=devs):
                torch.manual_seed(seed)
                for m in _resettable(mods):
                    m.reset_parameters()
        for p in model_.parameters():
            p.requires_grad_(False)
        for m in mods.values():
            for p in m.parameters():
                p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
            p.grad = None
        yield dict(params)
    finally:
        errors = []
        for g in reversed(guards):
            try:
                g.restore()
            except BaseException as e:  # noqa: BLE001 - restore everything, then re-raise the first error
                errors.append(e)
        for p, g in grads:
            p.grad = g
        if errors:
            raise errors[0]


class _Decoding(nn.Module):
    """``z -> ae.decode(z)`` with exactly the decoder's parameters registered (so only they are trained)."""

    def __init__(self, ae: Autoencoder, params: dict[str, nn.Parameter]):
        super().__init__()
        object.__setattr__(self, "_ae", ae)
        self.decoder_parameters = nn.ParameterList(list(params.values()))  # the same Parameter objects

    def forward(self, z):
        return self._ae.decode(z)


class _Picked(nn.Module):
    """A standalone fresh decoder from ``decoder_factory()``; its output read like ``decode``'s."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z):
        out = self.net(z)
        return out if isinstance(out, torch.Tensor) else pick(out, "output", where="decoder_factory()(z)")[0]


def _error(out: torch.Tensor, x: torch.Tensor) -> float:
    if out.shape != x.shape:
        raise ValueError(f"the refit decoder's output has shape {tuple(out.shape)} but the images {tuple(x.shape)}")
    return float(((out.double() - x.double()) ** 2).mean())


def _fit_and_score(ae: Autoencoder, z_fit, x_fit, z_eval, x_eval, *, init, seed, decoder_factory, epochs,
                   batch_size, lr) -> tuple[float, float]:
    """Fit a fresh decoder on ``(z_fit, x_fit)``; return (error on fit set, error on eval set)."""
    from aeprobe.train import train

    dev = ae.device
    kw = dict(epochs=epochs, batch_size=batch_size, lr=lr, device=dev, seed=seed, progress=False)
    # codes were computed beforehand, so the encoder takes no part in these fits
    if decoder_factory is not None:
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            net = decoder_factory()
        if not isinstance(net, nn.Module):
            raise TypeError(f"decoder_factory must return an nn.Module, got {type(net).__name__}")
        if not any(p.requires_grad for p in net.parameters()):
            raise ValueError("the module from decoder_factory() has no trainable parameters")
        dec = _Picked(net)
        train(dec, z_fit, x_fit, **kw)
        with eval_mode(dec):
            out_fit, out_eval = batched(dec, z_fit, device=dev), batched(dec, z_eval, device=dev)
        return _error(out_fit, x_fit), _error(out_eval, x_eval)
    with fresh_decoder(ae, z_fit[:1], init=init, seed=seed) as params:
        mods = ae.decoder_modules()
        for m in mods.values():  # the refit trains in training mode (dropout, batch statistics); restored on exit
            m.train()
        train(_Decoding(ae, params), z_fit, x_fit, **kw)
        out_fit, out_eval = ae.decodings(z_fit), ae.decodings(z_eval)
    return _error(out_fit, x_fit), _error(out_eval, x_eval)


def overfitting_split(model, x_train, x_heldout, *, y_train=None, y_heldout=None, epochs: int = 30,
                      batch_size: int = 64, lr: float = 1e-3, init: str = "reset",
                      decoder_factory: Callable[[], nn.Module] | None = None, control: bool = True,
                      max_train_eval: int | None = 2000, probe_repeats: int = 3, seed: int = 0,
                      device=None) -> OverfittingReport:
    """Split the generalisation gap of ``model`` into encoder and decoder shares (module docstring).

    ``model``: an autoencoder or an :func:`aeprobe.autoencoder` view. Needs ``encode`` and, to
    refit the decoder, ``decode`` (both refused before any work when missing). With
    ``decoder_factory`` (a function returning a fresh decoder module ``z -> x_hat``, seeded with
    ``seed``) that module is trained instead and ``decode`` is not needed. ``x_train``: the images
    the AE was trained on; ``x_heldout``: unseen images (split at random, seeded, into fit half
    ``A`` and evaluation half ``B``); ``y_*``: optional labels for the seen/unseen linear probe.
    ``epochs``/``batch_size``/``lr``: the fresh decoder's training (Adam via
    :func:`aeprobe.train.train`). ``max_train_eval`` caps the number of training images used for
    ``train_error`` (random subset, seeded). The refit happens in place and is undone: the model
    leaves the probe bit-identical, on its own device.

    Example::

        of = overfitting_split(aeprobe.autoencoder(vae), x_train, x_test, epochs=20)   # refits fc3/fc4
        of.encoder_gap, of.decoder_gap, of.encoder_gap_matched
    """
    ae = as_view(model)
    ae.require("encode", probe="overfitting_split")
    if decoder_factory is None:
        ae.require("decode", probe="overfitting_split (refitting the decoder; or pass decoder_factory=)")
    elif not callable(decoder_factory):
        raise TypeError(f"decoder_factory must be a callable returning an nn.Module, got {type(decoder_factory).__name__}")
    if init not in ("reset", "finetune"):
        raise ValueError(f"init must be 'reset' or 'finetune', got {init!r}")
    x_train, x_heldout = check_images(x_train, "x_train"), check_images(x_heldout, "x_heldout")
    if x_train.shape[1:] != x_heldout.shape[1:]:
        raise ValueError(f"x_train samples have shape {tuple(x_train.shape[1:])} but x_heldout samples "
                         f"{tuple(x_heldout.shape[1:])}")
    if x_heldout.shape[0] < 4:
        raise ValueError(f"x_heldout needs at least 4 samples to split into fit/eval halves, got {x_heldout.shape[0]}")
    if control and x_train.shape[0] < 4:
        raise ValueError(f"the control needs at least 4 training samples, got {x_train.shape[0]}")
    rng = np.random.default_rng(seed)

    perm = torch.from_numpy(rng.permutation(x_heldout.shape[0]))
    half = x_heldout.shape[0] // 2
    idx_a, idx_b = perm[:half], perm[half:]
    n_fit = half if not control else min(half, x_train.shape[0] // 2)
    idx_a = idx_a[:n_fit]
    x_a, x_b = x_heldout[idx_a], x_heldout[idx_b]
    n_tr = x_train.shape[0]
    tr_eval = torch.from_numpy(rng.permutation(n_tr)[: (max_train_eval or n_tr)])

    with on_device(ae.model, device):  # moved once for the whole probe, and back on exit
        z_a = ae.codes(x_a, flatten=False)
        z_b = ae.codes(x_b, flatten=False)
        if decoder_factory is None:
            _refit_plan(ae, z_a[:1], init)  # a decoder that cannot be refit is refused before the long work
        train_error = float(ae.per_sample_mse(x_train[tr_eval]).mean())
        test_error = float(ae.per_sample_mse(x_b).mean())
        kw = dict(init=init, seed=seed, decoder_factory=decoder_factory, epochs=epochs, batch_size=batch_size,
                  lr=lr)
        refit_fit, refit_err = _fit_and_score(ae, z_a, x_a, z_b, x_b, **kw)

        refit_seen = None
        n_ctrl_eval = 0
        if control:
            p = torch.from_numpy(rng.permutation(n_tr))
            t1 = p[:n_fit]
            t2 = p[n_fit:n_fit + x_b.shape[0]]
            n_ctrl_eval = int(t2.numel())
            z_t1 = ae.codes(x_train[t1], flatten=False)
            z_t2 = ae.codes(x_train[t2], flatten=False)
            _, refit_seen = _fit_and_score(ae, z_t1, x_train[t1], z_t2, x_train[t2], **kw)

        probe = None
        if y_train is not None and y_heldout is not None:
            zs = ae.codes(x_train)
            zu = ae.codes(x_heldout)
            probe = seen_unseen_probe_features(zs, y_train, zu, y_heldout, repeats=probe_repeats, seed=seed)
    gap = test_error - train_error
    enc = refit_err - train_error
    dec = test_error - refit_err
    share_ok = gap > 0
    enc_m = None if refit_seen is None else refit_err - refit_seen
    return OverfittingReport(
        train_error=train_error, test_error=test_error, gap=gap, refit_error=refit_err, refit_fit_error=refit_fit,
        encoder_gap=enc, decoder_gap=dec,
        encoder_share=enc / gap if share_ok else float("nan"), decoder_share=dec / gap if share_ok else float("nan"),
        refit_seen_error=refit_seen, encoder_gap_matched=enc_m,
        decoder_gap_matched=None if enc_m is None else gap - enc_m,
        n_train=n_tr, n_fit=int(n_fit), n_eval=int(x_b.shape[0]), n_control_eval=n_ctrl_eval, epochs=epochs,
        init=init if decoder_factory is None else "factory", probe=probe)
