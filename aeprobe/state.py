"""Snapshots of everything a probe could leave behind in a model, and a comparison of two of them.

The guarantee of the probe core (hooks, ablations, attribution) is that after any context manager
exits -- normally or by an exception -- the model is *indistinguishable* from before:

* the same hooks on every module (``_forward_hooks``, ``_forward_pre_hooks`` and their
  ``_with_kwargs`` / ``_always_called`` companions, ``_backward_hooks``, ``_backward_pre_hooks``,
  the ``_is_full_backward_hook`` flag, the state-dict hooks) and the same global module hooks;
* the same ``training`` flag on every module and ``requires_grad`` flag on every parameter;
* the same ``Parameter`` / buffer *objects* (optimizers hold references to them);
* a **bit-identical** ``state_dict`` (compared as raw bytes, so ``-0.0 != 0.0`` and ``NaN == NaN``).
  Parameters are never written by the hook tools; ablations restore the ones they write; buffers
  that a forward can change (normalisation statistics, buffers of train-mode modules) are copied
  on entry and restored. The one exception, reported by a ``RuntimeWarning`` rather than silently:
  an in-place write inside the block to a buffer of an eval-mode, non-normalisation module (which
  no torch layer does in a forward) cannot be undone, since such buffers are not copied.

``snapshot(model)`` records all of it; ``diff(before, after)`` lists what differs (empty = same);
``assert_unchanged(model, before)`` raises with that list. Tests use it; users can too::

    before = snapshot(model)
    run_some_third_party_probe(model)
    assert_unchanged(model, before)

:class:`ModelGuard` is the restorer used by every context manager of the package: it records the
cheap parts (flags, the buffers a forward can change, the hook keys present) on entry and puts back
what changed on exit, at a cost of one pass over the module tree plus the modules the block touches.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import attrgetter, is_, methodcaller
from typing import Any

import torch
import torch.nn as nn
import torch.nn.modules.module as _torch_module

__all__ = [
    "ModelSnapshot",
    "snapshot",
    "diff",
    "assert_unchanged",
    "bits_equal",
    "ModelGuard",
    "HOOK_DICTS",
    "walk_modules",
    "warn_caller",
]

#: Per-module hook dictionaries (all ``OrderedDict[int, hook]``), as of torch 2.x.
HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)

_GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_hooks_always_called",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_buffer_registration_hooks",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
)


_NORM = nn.modules.batchnorm._NormBase  # BatchNorm*, InstanceNorm*, SyncBatchNorm: running statistics


def _version(t: torch.Tensor) -> int | None:
    """The tensor's version counter (bumped by every in-place write); None for inference tensors."""
    try:
        return t._version
    except RuntimeError:  # inference tensors have no version counter
        return None


def _hooks_of(module: nn.Module) -> dict[str, tuple[tuple[int, Any], ...]]:
    out = {}
    for d in HOOK_DICTS:
        hooks = getattr(module, d, None)
        if hooks is not None:
            # keep the hook objects themselves (not ids): a strong reference keeps them comparable
            out[d] = tuple(hooks.items())
    out["_is_full_backward_hook"] = getattr(module, "_is_full_backward_hook", None)
    return out


def _global_hooks() -> dict[str, tuple]:
    out = {}
    for d in _GLOBAL_HOOK_DICTS:
        hooks = getattr(_torch_module, d, None)
        if hooks is not None:
            out[d] = tuple(hooks.items())
    out["_global_is_full_backward_hook"] = getattr(_torch_module, "_global_is_full_backward_hook", None)
    return out


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` have the same dtype, shape, device type and identical bytes.

    Unlike ``torch.equal`` this distinguishes ``-0.0`` from ``0.0`` and treats identical ``NaN``
    payloads as equal: it is the "bit-identical" of the guarantee.
    """
    if a.dtype != b.dtype or a.shape != b.shape or a.device.type != b.device.type:
        return False
    if a.numel() == 0:
        return True
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    return torch.equal(
        a.detach().contiguous().reshape(-1).view(torch.uint8), b.detach().contiguous().reshape(-1).view(torch.uint8)
    )


@dataclass
class ModelSnapshot:
    """What :func:`snapshot` records. Compare two with :func:`diff`."""

    hooks: dict[str, dict[str, Any]]
    global_hooks: dict[str, tuple]
    training: dict[str, bool]
    requires_grad: dict[str, bool]
    state: dict[str, torch.Tensor]
    object_ids: dict[str, int] = field(default_factory=dict)
    _refs: list = field(default_factory=list, repr=False)  # keeps ids in object_ids valid

    def diff(self, other: "ModelSnapshot") -> list[str]:
        return diff(self, other)


def snapshot(model: nn.Module) -> ModelSnapshot:
    """Record hooks, ``training``/``requires_grad`` flags, tensor identities and a copy of the state_dict.

    The state_dict copy is a ``clone()`` of every entry (memory = model size).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = list(model.named_modules(remove_duplicate=False))
    refs: list = []
    object_ids: dict[str, int] = {}
    for prefix, m in named:
        for kind in ("_parameters", "_buffers"):
            for k, t in getattr(m, kind).items():
                if t is not None:
                    key = f"{prefix}.{k}" if prefix else k
                    object_ids[key] = id(t)
                    refs.append(t)
    with torch.no_grad():
        state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    return ModelSnapshot(
        hooks={n: _hooks_of(m) for n, m in named},
        global_hooks=_global_hooks(),
        training={n: m.training for n, m in named},
        requires_grad={n: p.requires_grad for n, p in model.named_parameters(remove_duplicate=False)},
        state=state,
        object_ids=object_ids,
        _refs=refs,
    )


def _describe_hooks(items) -> str:
    if not isinstance(items, tuple):
        return repr(items)
    return "[" + ", ".join(f"{k}:{getattr(h, '__qualname__', type(h).__name__)}" for k, h in items) + "]"


def _cmp_hook_dicts(where: str, a: dict, b: dict, out: list[str]) -> None:
    for d in sorted(set(a) | set(b)):
        x, y = a.get(d), b.get(d)
        if isinstance(x, tuple) and isinstance(y, tuple):
            same = len(x) == len(y) and all(kx == ky and hx is hy for (kx, hx), (ky, hy) in zip(x, y))
        else:
            same = x == y
        if not same:
            out.append(f"hooks {where}.{d}: {_describe_hooks(x)} -> {_describe_hooks(y)}")


def diff(before: ModelSnapshot, after: ModelSnapshot) -> list[str]:
    """Human-readable list of differences between two snapshots (empty list = identical)."""
    out: list[str] = []
    if set(before.hooks) != set(after.hooks):
        out.append(f"module names differ: {sorted(set(before.hooks) ^ set(after.hooks))}")
    for name in before.hooks.keys() & after.hooks.keys():
        _cmp_hook_dicts(repr(name), before.hooks[name], after.hooks[name], out)
    _cmp_hook_dicts("<global>", before.global_hooks, after.global_hooks, out)
    for name in sorted(before.training.keys() & after.training.keys()):
        if before.training[name] != after.training[name]:
            out.append(f"training {name!r}: {before.training[name]} -> {after.training[name]}")
    if set(before.requires_grad) != set(after.requires_grad):
        out.append(f"parameter names differ: {sorted(set(before.requires_grad) ^ set(after.requires_grad))}")
    for name in sorted(before.requires_grad.keys() & after.requires_grad.keys()):
        if before.requires_grad[name] != after.requires_grad[name]:
            out.append(f"requires_grad {name!r}: {before.requires_grad[name]} -> {after.requires_grad[name]}")
    if set(before.state) != set(after.state):
        out.append(f"state_dict keys differ: {sorted(set(before.state) ^ set(after.state))}")
    for key in sorted(before.state.keys() & after.state.keys()):
        a, b = before.state[key], after.state[key]
        if not bits_equal(a, b):
            if a.shape == b.shape and a.dtype == b.dtype and a.is_floating_point():
                err = (a.double() - b.double()).abs().nan_to_num(nan=float("inf")).max().item()
                out.append(f"state_dict {key!r}: values differ (max |diff| = {err:.3g})")
            else:
                out.append(f"state_dict {key!r}: {a.dtype}{tuple(a.shape)} -> {b.dtype}{tuple(b.shape)} or values differ")
    for key in sorted(before.object_ids.keys() & after.object_ids.keys()):
        if before.object_ids[key] != after.object_ids[key]:
            out.append(f"tensor object {key!r} was replaced (optimizers holding the old one would be stale)")
    if set(before.object_ids) != set(after.object_ids):
        out.append(f"parameters/buffers differ: {sorted(set(before.object_ids) ^ set(after.object_ids))}")
    return out


def assert_unchanged(model: nn.Module, before: ModelSnapshot) -> None:
    """Raise ``AssertionError`` listing every difference between ``before`` and ``model`` now."""
    problems = diff(before, snapshot(model))
    if problems:
        raise AssertionError("model changed:\n  " + "\n  ".join(problems))


_children = attrgetter("_modules")
_values = methodcaller("values")
_parameters = attrgetter("_parameters")
_buffers = attrgetter("_buffers")
_training = attrgetter("training")
_requires_grad = attrgetter("requires_grad")


def _tensors_of(dicts) -> list:
    """The non-None values of ``_parameters``/``_buffers`` dicts, flattened (C-level in the usual case)."""
    dicts = list(dicts)
    try:
        out = list(chain.from_iterable(map(dict.values, dicts)))
    except TypeError:  # not plain dicts
        out = list(chain.from_iterable(map(_values, dicts)))
    if any(map(is_, out, repeat(None))):  # e.g. ``bias=None`` is registered as a None parameter
        out = [t for t in out if t is not None]
    return out


@functools.lru_cache(maxsize=None)
def _mode_sensitive_type(cls: type) -> bool:
    """Whether modules of this class behave differently in training mode (Dropout, BatchNorm)."""
    return issubclass(cls, _MODE_SENSITIVE)


def walk_modules(model: nn.Module, *, unique: bool = True) -> list[nn.Module]:
    """Every module of ``model`` (``model`` first, then level by level), built by C-level ``map``/``chain``.

    Several times faster than ``named_modules()`` on deep models; use it when only the module
    objects are needed. ``unique=False`` skips the final de-duplication: a module registered under
    several parents is then listed once per parent (harmless for flag bookkeeping, and cheaper).
    Cycles in the module graph are handled (by falling back to an exact visited-set walk).
    """
    mods = [model]
    level = mods
    try:
        while level:
            level = list(chain.from_iterable(map(dict.values, filter(None, map(_children, level)))))
            if any(map(is_, level, repeat(None))):  # a child slot set to None (``self.down = None``)
                level = [m for m in level if m is not None]
            mods += level
            if len(mods) > _WALK_LIMIT:  # a cycle, or sharing gone exponential: walk with a visited set
                return _walk_exact(model)
    except TypeError:  # a module whose ``_modules`` is not a dict
        return _walk_exact(model)
    return list(dict.fromkeys(mods)) if unique else mods


_WALK_LIMIT = 200_000


def _walk_exact(model: nn.Module) -> list[nn.Module]:
    seen = {model: None}
    level = [model]
    while level:
        nxt = []
        for m in level:
            for c in m._modules.values():
                if c is not None and c not in seen:
                    seen[c] = None
                    nxt.append(c)
        level = nxt
    return list(seen)


_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_caller(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside aeprobe (and ``contextlib``), i.e. the user's line."""
    frame = sys._getframe(1)
    level = 2
    while frame is not None and (frame.f_code.co_filename.startswith(_PKG_DIR) or frame.f_code.co_filename == contextlib.__file__):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


#: Module types whose result depends on the ``training`` flag in a way a measurement must not ignore.
_MODE_SENSITIVE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


class ModelGuard:
    """Restore-on-exit bookkeeping shared by every context manager of the package.

    The cost is one pass over the module tree (:func:`walk_modules`) on entry and one on exit, plus
    work proportional to what the block touches. On construction it records (no parameter copies)

    * the ``training`` flag of every module and ``requires_grad`` of every parameter (restored by
      comparing first, so only flags that changed are written);
    * if ``buffers=True``: a clone of every buffer that a forward can change -- the running
      statistics of normalisation layers (whatever their mode, since the body may switch it) and
      every buffer of a module in training mode. Other buffers (eval-mode modules: a forward leaves
      them alone) are not copied; their objects and version counters are recorded, so a replaced
      buffer object is put back and an in-place write to one is reported (``RuntimeWarning``: it
      could not be undone). Restored buffers are written only when their bits differ.
    * if ``hooks=True`` (or an iterable of modules): the keys present in the hook dicts of every
      module (or of those modules) and the global hook dicts, so that :meth:`restore` can remove
      hooks a third-party library (captum) added and failed to remove, and reset the
      ``_is_full_backward_hook`` flag that torch never resets.
    * ``params``: names of parameters the caller is about to write to (ablations): cloned now and
      copied back in place on restore, keeping the same ``Parameter`` objects.
    * ``eval``: ``False`` leaves modes alone; ``True`` puts every module in eval mode for the block;
      ``None`` warns (naming the module, on behalf of ``caller``) when a Dropout or BatchNorm is in
      training mode, since the numbers are then random or depend on the batch.

    Handles registered through :meth:`add_handle` (module hooks, tensor hooks) are removed first on
    :meth:`restore`.
    """

    def __init__(self, model: nn.Module, *, buffers: bool = True, hooks=False, params=(), eval: bool | None = False,
                 caller: str = "this block"):
        if eval not in (None, True, False):
            raise ValueError(f"eval must be None (warn about train-mode Dropout/BatchNorm), True or False, got {eval!r}")
        self.model = model
        self.handles: list = []
        mods = walk_modules(model, unique=False)
        self._mods = mods
        # C-level passes over the modules: flags, parameters (and below: the modules owning buffers)
        self._training = list(map(_training, mods))
        self._ps = _tensors_of(filter(None, map(_parameters, mods)))
        self._grad = list(map(_requires_grad, self._ps))
        self._buffers: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
        self._kept: list[tuple[nn.Module, str, torch.Tensor, int | None]] = []  # buffers not copied
        self._params: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
        owners = list(filter(_buffers, mods)) if buffers else []  # only the modules owning buffers
        if len(owners) != len(set(owners)):
            owners = list(dict.fromkeys(owners))
        if owners or params:
            self._save(model, owners, params)
        # parameter versions: only needed to warn about an optimizer step when buffers are restored
        self._versions = [_version(p) for p in self._ps] if self._buffers else None
        self._hooks = None
        if hooks is not False:
            hooked = mods if hooks is True else list(hooks)
            self._hooks = [
                (m, {d: set(getattr(m, d).keys()) for d in HOOK_DICTS if hasattr(m, d)}, m._is_full_backward_hook)
                for m in hooked
            ]
            self._global = (
                {d: set(getattr(_torch_module, d).keys()) for d in _GLOBAL_HOOK_DICTS if hasattr(_torch_module, d)},
                getattr(_torch_module, "_global_is_full_backward_hook", None),
            )
        if eval is None:
            self._warn_modes(caller)
        elif eval and any(self._training):
            for m, flag in zip(mods, self._training):
                if flag:
                    m.training = False

    @torch.no_grad()
    def _save(self, model: nn.Module, owners: list[nn.Module], params) -> None:
        for m in owners:
            copy = m.training or isinstance(m, _NORM)
            for k, b in m._buffers.items():
                if b is None:
                    continue
                if copy:
                    self._buffers.append((m, k, b, b.detach().clone()))
                else:
                    self._kept.append((m, k, b, _version(b)))
        for pname in params:
            owner_name, _, attr = pname.rpartition(".")
            owner = model.get_submodule(owner_name)
            p = owner._parameters[attr]
            self._params.append((owner, attr, p, p.detach().clone()))

    @property
    def any_training(self) -> bool:
        """True when some module of the model is in training mode now (after ``eval=True`` applied)."""
        return any(map(_training, self._mods))

    def _warn_modes(self, caller: str) -> None:
        # C-level: the distinct types of the modules in training mode, each looked up once
        if not any(map(_mode_sensitive_type, set(map(type, compress(self._mods, self._training))))):
            return
        names = [n for n, m in self.model.named_modules() if m.training and isinstance(m, _MODE_SENSITIVE)]
        shown = ", ".join(f"{n or '<model>'!r} ({type(self.model.get_submodule(n)).__name__})" for n in names[:3])
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        warn_caller(
            f"{caller}: {shown}{more} {'is' if len(names) == 1 else 'are'} in training mode, so the results are random (Dropout) or depend on the "
            "batch (BatchNorm); pass eval=True to run the block in eval mode (modes restored on exit), or "
            "eval=False to keep the modes and silence this warning",
            RuntimeWarning,
        )

    def add_handle(self, handle) -> None:
        self.handles.append(handle)

    def restore(self) -> None:
        """Undo everything; every step runs even if an earlier one raises (first error re-raised)."""
        errors: list[BaseException] = []

        def attempt(fn, *args):
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - restore as much as possible, then re-raise
                errors.append(e)

        while self.handles:
            attempt(self.handles.pop().remove)
        if self._versions is not None:
            ours = {id(obj) for _, _, obj, _ in self._params}
            if any(_version(p) != v and id(p) not in ours for p, v in zip(self._ps, self._versions)):
                warn_caller(
                    "parameters were modified inside the block (an optimizer step?) but the buffers (e.g. "
                    "BatchNorm running statistics) were restored to their values at entry; pass "
                    "restore_buffers=False when training inside a probe block",
                    RuntimeWarning,
                )
        if self._hooks is not None:
            attempt(self._restore_hooks)
        if self._params or self._buffers:
            with torch.no_grad():
                for owner, attr, obj, saved in self._params + self._buffers:
                    attempt(self._put_back, owner, attr, obj, saved)
        changed = []
        for owner, attr, obj, version in self._kept:
            if owner._buffers.get(attr) is not obj:
                owner._buffers[attr] = obj
            if _version(obj) != version:
                changed.append(f"{type(owner).__name__}.{attr}")
        if changed:
            warn_caller(
                f"buffer(s) {', '.join(changed[:5])} of eval-mode modules were written in place inside the block; "
                "only buffers a forward can change (normalisation statistics, buffers of train-mode modules) are "
                "saved on entry, so these could not be restored",
                RuntimeWarning,
            )
        if list(map(_training, self._mods)) != self._training:  # compare first (C-level), write what changed
            for m, flag in zip(self._mods, self._training):
                if m.training != flag:
                    attempt(setattr, m, "training", flag)
        if list(map(_requires_grad, self._ps)) != self._grad:
            for p, flag in zip(self._ps, self._grad):
                if p.requires_grad != flag:
                    attempt(p.requires_grad_, flag)
        if errors:
            raise errors[0]

    @staticmethod
    def _put_back(owner: nn.Module, attr: str, obj: torch.Tensor, saved: torch.Tensor) -> None:
        store = owner._parameters if isinstance(obj, nn.Parameter) and attr in owner._parameters else owner._buffers
        if store.get(attr) is not obj:  # the body replaced the tensor object: put ours back
            store[attr] = obj
        elif bits_equal(obj, saved):
            # unchanged: do not write, since a write bumps the tensor's version counter and would
            # break a backward() through a graph built inside the block (e.g. BatchNorm buffers)
            return
        obj.copy_(saved)

    def _restore_hooks(self) -> None:
        for m, keys, full in self._hooks:
            for d, before in keys.items():
                hooks = getattr(m, d)
                for k in [k for k in hooks.keys() if k not in before]:
                    del hooks[k]
            m._is_full_backward_hook = full
        keys, full = self._global
        for d, before in keys.items():
            hooks = getattr(_torch_module, d)
            for k in [k for k in hooks.keys() if k not in before]:
                del hooks[k]
        if hasattr(_torch_module, "_global_is_full_backward_hook"):
            _torch_module._global_is_full_backward_hook = full
