"""Activation capture, streaming reduction and interventions, as context managers on any ``nn.Module``.

Design (after baukit's ``nethook.Trace/TraceDict`` and TransformerLens' ``hook_points``): hooks
live exactly as long as a ``with`` block and are removed in ``finally``, together with everything
else a forward could change (see :class:`aeprobe.state.ModelGuard`): after the block the model has
the hooks, ``training`` and ``requires_grad`` flags and bit-identical ``state_dict`` it had before,
also when the block raises. Buffers (BatchNorm running statistics, which a forward in train mode
updates) are restored by default (``restore_buffers=True``) because a probe is a measurement;
parameters are never written by these tools, so an optimizer step taken inside the block is kept.

Capture is cheap: a hook stores a *reference* to the output (``detach()`` is a free view); it is
copied only when ``clone=True`` -- needed when a later in-place op (``ReLU(inplace=True)``) would
overwrite the stored tensor.

Conventions, for all three tools:

* **names** are those of ``model.named_modules()`` (``""`` = the model itself); submodule objects
  are accepted too; unknown names raise ``KeyError`` with close matches.
* **tuple outputs** (e.g. an LSTM's ``(out, (h, c))``) are recorded as the tuple, each tensor
  detached/cloned; ``stream`` reduces ``select(output)`` (default: the output itself, a
  ``TypeError`` if it is not a tensor).
* **modules called several times per forward** (a shared layer): ``capture(calls="last")`` keeps the
  last call, ``calls="all"`` a list with one entry per call; ``stream`` reduces every call;
  ``intervene`` edits every call.
* **inputs**: ``capture(inputs=True)`` also records the module's input (the tensor when the module
  got one positional argument and no keyword, else ``Inputs(args, kwargs)``); ``stream(inputs=True)``
  reduces the first positional input instead of the output; ``intervene(on="input")`` edits it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from aeprobe._modules import leaf_names, resolve_modules
from aeprobe.reducers import Fold, Mean, MinMax, Projection, Reducer, Variance, make_reducer
from aeprobe.state import ModelGuard
from aeprobe.utils import map_tensors

__all__ = [
    "capture",
    "Captured",
    "Inputs",
    "stream",
    "Reducer",
    "Mean",
    "Variance",
    "MinMax",
    "Projection",
    "Fold",
    "intervene",
    "set_value",
    "zero_channels",
    "leaf_names",
]


class Inputs(NamedTuple):
    """Inputs of a module call that was not a single positional tensor."""

    args: tuple
    kwargs: dict


# --------------------------------------------------------------------------------------------- capture
class Captured(Mapping):
    """Result of :func:`capture`: a mapping ``name -> output`` plus ``.inputs`` (``name -> input``).

    Filled during the ``with`` block, usable after it. With ``calls="all"`` every value is a list
    (one entry per call, in call order). A name whose module did not run is absent.
    """

    def __init__(self, names: Iterable[str]):
        self.names = tuple(names)
        self.outputs: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}

    def __getitem__(self, name: str):
        try:
            return self.outputs[name]
        except KeyError:
            if name in self.names:
                raise KeyError(f"module {name!r} was captured but did not run during the block") from None
            raise KeyError(f"{name!r} was not captured; captured names: {list(self.names)}") from None

    def __iter__(self):
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def clear(self) -> None:
        """Drop the stored tensors (e.g. between batches) without leaving the block."""
        self.outputs.clear()
        self.inputs.clear()

    def __repr__(self) -> str:
        def desc(v):
            if isinstance(v, torch.Tensor):
                return f"Tensor{tuple(v.shape)}"
            if isinstance(v, list):
                return f"[{len(v)} calls]"
            return type(v).__name__

        return "Captured({" + ", ".join(f"{k!r}: {desc(v)}" for k, v in self.outputs.items()) + "})"


@contextmanager
def capture(
    model: nn.Module,
    names,
    *,
    inputs: bool = False,
    detach: bool = True,
    clone: bool = False,
    calls: str = "last",
    restore_buffers: bool = True,
) -> Iterator[Captured]:
    """Record the outputs (and optionally inputs) of the named modules during every forward.

    ``detach=True`` stores ``t.detach()`` (free); ``detach=False`` keeps the autograd graph so you
    can take gradients w.r.t. the captured activations. ``clone=True`` copies (protects against
    later in-place ops). ``calls="last"|"all"`` -- see the module docstring.

    Example::

        with capture(model, ["encoder.0", "encoder"]) as acts:
            model(x)
        code = acts["encoder"]            # tensor [N, code_size]
    """
    if calls not in ("last", "all"):
        raise ValueError(f"calls must be 'last' or 'all', got {calls!r}")
    modules = resolve_modules(model, names)
    out = Captured(modules)

    def prepare(t: torch.Tensor) -> torch.Tensor:
        if detach:
            t = t.detach()
        return t.clone() if clone else t

    def store(table: dict, name: str, value: Any) -> None:
        if calls == "last":
            table[name] = value
        else:
            table.setdefault(name, []).append(value)

    def make_hook(name: str):
        if inputs:

            def hook(module, args, kwargs, output):
                store(out.outputs, name, map_tensors(output, prepare))
                if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
                    store(out.inputs, name, prepare(args[0]))
                else:
                    store(out.inputs, name, Inputs(map_tensors(args, prepare), map_tensors(kwargs, prepare)))

        elif not detach and not clone:

            def hook(module, args, output):
                store(out.outputs, name, output)

        else:

            def hook(module, args, output):
                store(out.outputs, name, map_tensors(output, prepare))

        return hook

    guard = ModelGuard(model, buffers=restore_buffers)
    try:
        for name, module in modules.items():
            guard.add_handle(module.register_forward_hook(make_hook(name), with_kwargs=inputs))
        yield out
    finally:
        guard.restore()


@contextmanager
def stream(
    model: nn.Module,
    names,
    reducer="mean",
    *,
    inputs: bool = False,
    select: Callable[[Any], torch.Tensor] | None = None,
    restore_buffers: bool = True,
) -> Iterator[dict[str, Reducer]]:
    """Reduce the activations of the named modules on the fly, batch after batch, in O(1) memory.

    ``reducer``: ``"mean"``, ``"variance"``, ``"minmax"``, a :class:`Reducer` instance (copied per
    module), a callable ``fn(state, x) -> state`` (wrapped in :class:`Fold`) or a dict
    ``{name: reducer}``. Yields ``{name: Reducer}``; read ``.result()`` after the block. Each call of
    a module is one update; nothing but the reducer state is kept.

    Example::

        with stream(model, ["encoder"], Variance()) as red:
            for xb in batches:
                model(xb)
        code_var = red["encoder"].result()
    """
    modules = resolve_modules(model, names)
    reducers = {name: make_reducer(reducer, name) for name in modules}

    def make_hook(name: str, red: Reducer):
        def hook(module, args, output):
            value = args[0] if inputs and args else output
            if inputs and not args:
                raise TypeError(f"stream(inputs=True): module {name!r} was called without positional input")
            if select is not None:
                value = select(value)
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"module {name!r} produced a {type(value).__name__}, not a tensor; "
                    "pass select=lambda out: out[0] (or similar) to choose what to reduce"
                )
            with torch.no_grad():
                red.update(value.detach())

        return hook

    guard = ModelGuard(model, buffers=restore_buffers)
    try:
        for name, module in modules.items():
            guard.add_handle(module.register_forward_hook(make_hook(name, reducers[name])))
        yield reducers
    finally:
        guard.restore()


# --------------------------------------------------------------------------------------------- interventions
@contextmanager
def intervene(
    model: nn.Module,
    edits: Mapping[str, Callable[[Any], Any]],
    *,
    on: str = "output",
    restore_buffers: bool = True,
) -> Iterator[None]:
    """Edit the output (``on="output"``) or input (``on="input"``) of named modules during forward.

    ``edits`` maps a module name to ``fn(value) -> new value``; returning ``None`` keeps the (possibly
    in-place edited) value. For ``on="input"`` the value is the first positional argument. Gradients
    flow through the edited value. Helpers: :func:`set_value`, :func:`zero_channels`.

    Example -- decode with code unit 0 pinned to 2.0::

        with intervene(model, {"encoder": set_value(0, 2.0)}):
            y = model(x)
    """
    if on not in ("output", "input"):
        raise ValueError(f"on must be 'output' or 'input', got {on!r}")
    if not isinstance(edits, Mapping) or not edits:
        raise TypeError("edits must be a non-empty dict {module name: fn(value) -> value}")
    targets: list[tuple[str, nn.Module, Callable]] = []
    for key, fn in edits.items():
        if not callable(fn):
            raise TypeError(f"edit for {key!r} must be callable fn(value) -> value, got {type(fn).__name__}")
        ((name, module),) = resolve_modules(model, key).items()
        targets.append((name, module, fn))

    guard = ModelGuard(model, buffers=restore_buffers)
    try:
        for name, module, fn in targets:
            if on == "output":

                def hook(module, args, output, fn=fn):
                    new = fn(output)
                    return output if new is None else new

                guard.add_handle(module.register_forward_hook(hook))
            else:

                def pre_hook(module, args, fn=fn, name=name):
                    if not args:
                        raise TypeError(f"intervene(on='input'): module {name!r} was called without positional input")
                    new = fn(args[0])
                    return None if new is None else (new,) + tuple(args[1:])

                guard.add_handle(module.register_forward_pre_hook(pre_hook))
        yield
    finally:
        guard.restore()


def set_value(index, value: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Edit that sets ``out[:, index] = value`` for every sample (``index`` an int or a tuple).

    Out of place (returns a new tensor), so it is safe on outputs autograd still needs.
    """
    idx = (slice(None),) + (tuple(index) if isinstance(index, (tuple, list)) else (index,))

    def edit(out: torch.Tensor) -> torch.Tensor:
        new = out.clone()
        new[idx] = value
        return new

    return edit


def zero_channels(channels, dim: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """Edit that zeroes the given channel(s) along ``dim`` (default 1 = conv channels / features)."""
    chans = [channels] if isinstance(channels, int) else list(channels)

    def edit(out: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(out.shape[dim], dtype=out.dtype, device=out.device)
        mask[chans] = 0
        shape = [1] * out.dim()
        shape[dim] = -1
        return out * mask.reshape(shape)

    return edit
