"""Snapshots of everything a probe could leave behind in a model, and a comparison of two of them.

The guarantee of the probe core (hooks, ablations, attribution) is that after any context manager
exits -- normally or by an exception -- the model is *indistinguishable* from before:

* the same hooks on every module (``_forward_hooks``, ``_forward_pre_hooks`` and their
  ``_with_kwargs`` / ``_always_called`` companions, ``_backward_hooks``, ``_backward_pre_hooks``,
  the ``_is_full_backward_hook`` flag, the state-dict hooks) and the same global module hooks;
* the same ``training`` flag on every module and ``requires_grad`` flag on every parameter;
* the same ``Parameter`` / buffer *objects* (optimizers hold references to them);
* a **bit-identical** ``state_dict`` (compared as raw bytes, so ``-0.0 != 0.0`` and ``NaN == NaN``).

``snapshot(model)`` records all of it; ``diff(before, after)`` lists what differs (empty = same);
``assert_unchanged(model, before)`` raises with that list. Tests use it; users can too::

    before = snapshot(model)
    run_some_third_party_probe(model)
    assert_unchanged(model, before)

:class:`ModelGuard` is the restorer used by every context manager of the package: it records the
cheap parts (flags, buffers, the hook keys present) on entry and puts them back on exit.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.modules.module as _torch_module

__all__ = ["ModelSnapshot", "snapshot", "diff", "assert_unchanged", "bits_equal", "ModelGuard", "HOOK_DICTS"]

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


class ModelGuard:
    """Restore-on-exit bookkeeping shared by every context manager of the package.

    On construction it records (cheaply: no parameter copies)

    * the ``training`` flag of every module and ``requires_grad`` of every parameter;
    * if ``buffers=True``: a clone of every buffer (BatchNorm running stats change during a
      forward in train mode -- a probe is a measurement, so they are put back bit-identically;
      buffers are small next to the weights);
    * if ``hooks=True``: the keys present in every hook dict, so that :meth:`restore` can remove
      hooks a third-party library (captum) added and failed to remove, and reset the
      ``_is_full_backward_hook`` flag that torch never resets.
    * ``params``: names of parameters the caller is about to write to (ablations): cloned now and
      copied back in place on restore, keeping the same ``Parameter`` objects.

    Handles registered through :meth:`add_handle` are removed first on :meth:`restore`.
    """

    def __init__(self, model: nn.Module, *, buffers: bool = True, hooks: bool = False, params=()):
        self.model = model
        self.handles: list = []
        self._modules = list(model.named_modules(remove_duplicate=False))
        self._training = [(m, m.training) for _, m in self._modules]
        self._grad = [(p, p.requires_grad) for p in model.parameters()]
        self._versions = [p._version for p, _ in self._grad] if buffers else None
        self._buffers: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
        self._params: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
        with torch.no_grad():
            if buffers:
                seen = set()
                for _, m in self._modules:
                    for k, b in m._buffers.items():
                        if b is not None and (id(m), k) not in seen:
                            seen.add((id(m), k))
                            self._buffers.append((m, k, b, b.detach().clone()))
            for pname in params:
                owner_name, _, attr = pname.rpartition(".")
                owner = model.get_submodule(owner_name)
                p = owner._parameters[attr]
                self._params.append((owner, attr, p, p.detach().clone()))
        self._hooks = None
        if hooks:
            self._hooks = [
                (m, {d: set(getattr(m, d).keys()) for d in HOOK_DICTS if hasattr(m, d)}, m._is_full_backward_hook)
                for _, m in self._modules
            ]
            self._global = (
                {d: set(getattr(_torch_module, d).keys()) for d in _GLOBAL_HOOK_DICTS if hasattr(_torch_module, d)},
                getattr(_torch_module, "_global_is_full_backward_hook", None),
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
        if self._versions is not None and self._buffers:
            ours = {id(obj) for _, _, obj, _ in self._params}
            if any(p._version != v and id(p) not in ours for (p, _), v in zip(self._grad, self._versions)):
                warnings.warn(
                    "parameters were modified inside the block (an optimizer step?) but the buffers (e.g. "
                    "BatchNorm running statistics) were restored to their values at entry; pass "
                    "restore_buffers=False when training inside a probe block",
                    RuntimeWarning,
                    stacklevel=4,
                )
        if self._hooks is not None:
            attempt(self._restore_hooks)
        with torch.no_grad():
            for owner, attr, obj, saved in self._params + self._buffers:
                attempt(self._put_back, owner, attr, obj, saved)
        for m, flag in self._training:
            m.training = flag
        for p, flag in self._grad:
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
