"""Ablations: zero biases or weights, replace weights, freeze parts -- reversibly -- and strip biases structurally.

Two different experiments are called "an autoencoder without biases" (Newson et al., sec. 4.3):

* **Zeroing at inference** -- :func:`remove_biases` (context manager). A network *trained with*
  biases is evaluated with ``b = 0``. Its weights were learned to work together with the biases,
  so this measures how much the trained network relies on them (Newson et al.: the encoder copes,
  the decoder does not). Restored bit-identically on exit.
* **Training without biases** -- :func:`strip_biases` (structural). Returns a model whose layers
  have ``bias=None``: there is no bias parameter at all, so the optimizer, weight decay,
  ``state_dict`` and initialisation never see one, and the *weights adapt* to its absence. A
  bias-free ReLU/leaky-ReLU network (without normalisation layers) is positively homogeneous,
  ``D(lambda z) = lambda D(z)`` for ``lambda > 0`` -- Newson et al., Proposition 1 -- which is the
  setting of their closed-form decoding energy (Proposition 2, eq. 7). Zeroing a bias and then
  training would *not* give this: the zero bias receives gradients and is re-learned.

All context managers here restore, on exit and also when the body raises: the touched parameters
(copied back in place into the same ``Parameter`` objects, so optimizers stay valid), every
``training`` / ``requires_grad`` flag, and (``restore_buffers=True``) the buffers.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn as nn

from aeprobe._modules import resolve_modules
from aeprobe.state import ModelGuard

__all__ = ["remove_biases", "strip_biases", "zero_weights", "replace_weights", "freeze", "bias_parameters"]

#: Layer types whose forward accepts ``bias=None`` (used by :func:`strip_biases`).
BIAS_OPTIONAL_TYPES: tuple[type, ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm* (affine); beware: mean subtraction is a shift too
    nn.LayerNorm,
    nn.GroupNorm,
)


def _pname(module_name: str, attr: str) -> str:
    return f"{module_name}.{attr}" if module_name else attr


def _subtree(model: nn.Module, names) -> list[tuple[str, nn.Module]]:
    """Modules at or below the named ones (all modules when ``names`` is None), deduplicated."""
    if names is None:
        roots = {"": model}
    else:
        roots = resolve_modules(model, names)
    seen: set[int] = set()
    out = []
    for root_name, root in roots.items():
        for sub, m in root.named_modules():
            if id(m) not in seen:
                seen.add(id(m))
                out.append((_pname(root_name, sub) if sub else root_name, m))
    return out


@contextmanager
def _zeroed(model: nn.Module, params: dict[str, nn.Parameter], restore_buffers: bool) -> Iterator[None]:
    """Zero the named parameters of ``model`` for the block; the guard restores everything on exit."""
    guard = ModelGuard(model, buffers=restore_buffers, params=list(params))
    try:
        with torch.no_grad():
            for p in params.values():
                p.zero_()
        yield
    finally:
        guard.restore()


def bias_parameters(model: nn.Module, names=None) -> dict[str, nn.Parameter]:
    """``{parameter name: bias}`` for every module at or below ``names`` (all when None) owning a bias."""
    out = {}
    for name, m in _subtree(model, names):
        b = m._parameters.get("bias")
        if isinstance(b, torch.Tensor):
            out[_pname(name, "bias")] = b
    return out


@contextmanager
def remove_biases(model: nn.Module, names=None, *, restore_buffers: bool = True) -> Iterator[dict[str, nn.Parameter]]:
    """Zero the biases of ``names`` (and their submodules; all modules when None) inside the block.

    Every module owning a parameter called ``bias`` is affected -- conv, linear, and also the
    ``beta`` of normalisation layers (BatchNorm's running-mean subtraction is not touched). Restored
    bit-identically on exit. ``ValueError`` when there is no bias to remove. Yields the zeroed
    ``{name: parameter}``.

    Example::

        with remove_biases(model, ["decoder"]):
            y_nobias = model(x)
    """
    biases = bias_parameters(model, names)
    if not biases:
        where = "the model" if names is None else f"{names!r}"
        raise ValueError(f"no bias parameters found in {where} (already bias-free?)")
    with _zeroed(model, biases, restore_buffers):
        yield biases


def strip_biases(model: nn.Module, names=None, *, inplace: bool = False, allow_unknown: bool = False) -> nn.Module:
    """Structural bias removal for retraining: return a copy whose layers have ``bias=None``.

    ``names`` restricts to those modules and their submodules. Only layer types whose forward is
    known to accept ``bias=None`` (:data:`BIAS_OPTIONAL_TYPES`) are converted; another module owning
    a ``bias`` raises ``TypeError`` unless ``allow_unknown=True``. ``inplace=True`` edits ``model``
    itself (no copy). See the module docstring for why this is not the same as :func:`remove_biases`.

    Example::

        nobias = strip_biases(DiskAE(bias=True))
        train(nobias, x, epochs=...)      # the bias-free experiment of Newson et al.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if names is not None:
        resolve_modules(model, names)  # validate names on the original (clear error)
    owners = [(n, m) for n, m in _subtree(model, names) if isinstance(m._parameters.get("bias"), torch.Tensor)]
    for name, m in owners:  # validate everything before touching anything (inplace=True stays atomic)
        if not isinstance(m, BIAS_OPTIONAL_TYPES) and not allow_unknown:
            raise TypeError(
                f"module {name!r} ({type(m).__name__}) owns a bias but is not a known layer type whose forward accepts "
                f"bias=None ({', '.join(t.__name__ for t in BIAS_OPTIONAL_TYPES)}); pass allow_unknown=True to strip it anyway"
            )
    target = model if inplace else copy.deepcopy(model)
    for name, _ in owners:
        target.get_submodule(name).bias = None  # nn.Module.__setattr__ keeps 'bias' registered as None
    return target


def _weight_of(model: nn.Module, name: str) -> tuple[str, nn.Parameter]:
    ((mname, m),) = resolve_modules(model, name).items()
    w = m._parameters.get("weight")
    if not isinstance(w, torch.Tensor):
        raise ValueError(f"module {mname!r} ({type(m).__name__}) has no 'weight' parameter")
    return _pname(mname, "weight"), w


@contextmanager
def zero_weights(model: nn.Module, names, *, restore_buffers: bool = True) -> Iterator[dict[str, nn.Parameter]]:
    """Zero the ``weight`` of each named module inside the block (biases untouched); restored on exit.

    Example::

        with zero_weights(model, ["encoder.2"]):
            y = model(x)
    """
    targets = dict(_weight_of(model, n) for n in resolve_modules(model, names))
    with _zeroed(model, targets, restore_buffers):
        yield targets


@contextmanager
def replace_weights(
    model: nn.Module, new: Mapping[str, torch.Tensor], *, restore_buffers: bool = True
) -> Iterator[dict[str, nn.Parameter]]:
    """Overwrite parameters inside the block, restored bit-identically on exit.

    Keys are module names (their ``weight`` is replaced) or full parameter names
    (``"decoder.0.bias"``). Values must have the parameter's shape and be finite; they are cast to
    its dtype/device. Copied in place, so the ``Parameter`` objects stay the same.

    Example -- plug in the closed-form position encoder of Newson et al. (eq. 13)::

        with replace_weights(model, {"encoder.0": w_closed_form}):
            z = model.encode(x)
    """
    if not isinstance(new, Mapping) or not new:
        raise TypeError("new must be a non-empty dict {module or parameter name: tensor}")
    params = dict(model.named_parameters(remove_duplicate=False))
    targets: dict[str, tuple[nn.Parameter, torch.Tensor]] = {}
    for key, value in new.items():
        if not isinstance(key, str):
            raise TypeError(f"keys must be module or parameter names, got {type(key).__name__}")
        if key in params:
            pname, p = key, params[key]
        else:
            pname, p = _weight_of(model, key)
        value = torch.as_tensor(value)
        if tuple(value.shape) != tuple(p.shape):
            raise ValueError(f"replacement for {pname!r} has shape {tuple(value.shape)}, parameter has {tuple(p.shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"replacement for {pname!r} contains NaN or inf")
        targets[pname] = (p, value)
    guard = ModelGuard(model, buffers=restore_buffers, params=list(targets))
    try:
        with torch.no_grad():
            for p, value in targets.values():
                p.copy_(value)
        yield {k: p for k, (p, _) in targets.items()}
    finally:
        guard.restore()


@contextmanager
def freeze(model: nn.Module, names_or_part, *, restore_buffers: bool = False) -> Iterator[dict[str, nn.Parameter]]:
    """Set ``requires_grad=False`` on every parameter at or below the named modules, restored on exit.

    ``names_or_part`` is a module name, e.g. ``"encoder"`` or ``"decoder"`` (the parts of every
    aeprobe AE), or a list of names. Meant to wrap training, so ``restore_buffers`` defaults to
    False: BatchNorm statistics learned in the block are kept. Note that ``requires_grad=False``
    does not freeze BatchNorm running statistics (put those modules in eval mode for that).

    Example::

        with freeze(model, "encoder"):
            train(model, x, epochs=5)     # only the decoder learns
    """
    if isinstance(names_or_part, str) and names_or_part in ("encoder", "decoder"):
        if not hasattr(model, names_or_part):
            raise KeyError(f"{type(model).__name__} has no {names_or_part!r} submodule to freeze")
    params: dict[str, nn.Parameter] = {}
    for name, m in _subtree(model, names_or_part):
        for k, p in m.named_parameters(recurse=False):
            params[_pname(name, k)] = p
    if not params:
        raise ValueError(f"no parameters found under {names_or_part!r}")
    guard = ModelGuard(model, buffers=restore_buffers)
    try:
        for p in params.values():
            p.requires_grad_(False)
        yield params
    finally:
        guard.restore()
