"""Activation capture, streaming reduction and interventions, as context managers on any ``nn.Module``.

Example -- record, reduce, edit::

    with capture(model, ["encoder", "decoder.*"]) as acts:
        model(x)
    code = acts["encoder"]                                    # tensor [N, code_size]

    with stream(model, "encoder", "variance") as red:         # O(1) memory over any number of batches
        for xb in batches:
            model(xb)
    code_var = red["encoder"].result()

    with intervene(model, {"encoder": set_value(0, 2.0)}):   # decode with code unit 0 pinned to 2.0
        y = model(x)

Design (after baukit's ``nethook.Trace/TraceDict`` and TransformerLens' ``hook_points``): hooks
live exactly as long as a ``with`` block and are removed in ``finally``, together with everything
else a forward could change (see :class:`aeprobe.state.ModelGuard`): after the block the model has
the hooks, ``training`` and ``requires_grad`` flags and bit-identical ``state_dict`` it had before,
also when the block raises. Buffers a forward can change (BatchNorm running statistics, buffers of
train-mode modules) are restored by default (``restore_buffers=True``) because a probe is a
measurement; parameters are never written by these tools, so an optimizer step taken inside the
block is kept. A block costs one pass over the module tree plus the modules it touches.

Capture is cheap: a hook stores a *reference* to the output (``detach()`` is a free view); it is
copied only with ``clone=True``.

Conventions, for all the tools here (and :func:`aeprobe.patching`):

* **names** are those of ``model.named_modules()`` (``""`` = the model itself); submodule objects
  are accepted too; a name with ``*``, ``?`` or ``[`` is an ``fnmatch`` pattern (``"decoder.*"``,
  ``"*.conv"``), expanded once per block; an unknown name, or a pattern matching nothing, raises
  ``KeyError`` with close matches.
* **calls** -- which calls of a module used several times per forward (a shared layer):
  ``"last"``, ``"all"``, an int ``k`` (the k-th call, counted from 0) or a list of ints. Calls are
  counted from the start of each forward of the module's outermost enclosing module that runs
  (``model(x)``, or ``model.encoder(x)`` inside ``model.encode(x)``). ``capture`` defaults to
  ``"last"`` (``"all"`` gives a list, one entry per call, a list of ints one entry per listed call);
  ``stream`` and ``intervene`` default to ``"all"`` (every call is reduced / edited). ``intervene``
  cannot know during the forward which call is the last one, so it refuses ``"last"``.
* **tuple and dict outputs** (an LSTM's ``(out, (h, c))``, a VAE encoder's ``(mu, logvar)``) are
  recorded as the structure, each tensor detached/cloned. ``stream`` and ``intervene`` work on
  ``select(output)``: ``select=0`` (an index), ``select="mu"`` (a key or attribute) or a callable
  returning one of the output's tensors; ``intervene`` puts the edited tensor back in its place and
  passes the rest of the tuple/dict through unchanged.
* **inputs** are read in a forward *pre*-hook, i.e. before the module runs:
  ``capture(inputs=True)`` also records the module's input (the tensor when the module got one
  positional argument and no keyword, else ``Inputs(args, kwargs)``); ``stream(inputs=True)``
  reduces the first positional input instead of the output; ``intervene(on="input")`` edits it.
* **in-place safety**: a captured reference that is modified in place later in the block (a
  following ``ReLU(inplace=True)``, or an in-place module modifying its own input) no longer holds
  the value that was captured. ``capture`` detects this with the tensors' version counters and
  warns at block exit (``RuntimeWarning`` naming the module and suggesting ``clone=True``); with
  ``clone=True`` the stored copies are immune. It does not clone automatically: whether a later
  consumer works in place is unknown when the hook runs, and copying every capture would double its
  cost. ``stream`` reduces at call time (nothing to corrupt), except ``calls="last"``, whose pending
  value is a copy.
* **modes**: ``eval=None`` (default) warns when a Dropout or BatchNorm of the model is in training
  mode (the numbers are then random, or depend on the batch); ``eval=True`` runs the block in eval
  mode and restores every module's mode on exit; ``eval=False`` keeps the modes silently.
* **early stop**: ``capture(..., stop=True)`` ends the forward (by raising :class:`StopForward`
  from the last hook needed, as baukit does) once every named module has delivered the calls asked
  for; the block swallows it, so ``with capture(m, "encoder", stop=True) as acts: m(x)`` returns
  normally with ``acts.stopped`` True -- statements after the forward in the block do not run.
  :func:`output_at` wraps this: the output of one module, computing nothing after it.
* **non-finite values**: ``stream`` counts the NaN/inf values it reduces per module and warns at
  block exit, naming the module and the count.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from aeprobe._modules import get_module, leaf_names, resolve_modules
from aeprobe.reducers import Fold, Mean, MinMax, Projection, Reducer, Variance, make_reducer
from aeprobe.state import ModelGuard, warn_caller
from aeprobe.utils import map_tensors

__all__ = [
    "capture",
    "Captured",
    "Inputs",
    "StopForward",
    "output_at",
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


class StopForward(Exception):
    """Raised from a hook by ``capture(stop=True)`` to end the forward early.

    Only the block that raised it swallows it (nested blocks with ``stop=True`` do not steal each
    other's stop); user code never sees it unless it calls the model outside that block.
    """

    def __init__(self, owner: object):
        super().__init__("forward stopped early by aeprobe capture(stop=True)")
        self.owner = owner


_MISSING = object()  # placeholder for a listed call that did not run


def _version(t: torch.Tensor) -> int | None:
    try:
        return t._version
    except RuntimeError:  # inference tensors have no version counter
        return None


# --------------------------------------------------------------------------------------------- calls
class _Calls:
    """Parsed ``calls=`` spec: kind in {"last", "all", "index", "list"}; ``pos`` maps call -> slot."""

    __slots__ = ("spec", "kind", "pos", "last_needed")

    def __init__(self, calls, who: str):
        self.spec = calls
        self.pos: dict[int, int] = {}
        if isinstance(calls, str):
            if calls not in ("last", "all"):
                raise ValueError(f"{who}: calls must be 'last', 'all', an int k >= 0 or a list of them, got {calls!r}")
            self.kind = calls
        elif isinstance(calls, bool) or not isinstance(calls, (int, list, tuple)):
            raise TypeError(f"{who}: calls must be 'last', 'all', an int k >= 0 or a list of them, got {calls!r}")
        else:
            ks = [calls] if isinstance(calls, int) else list(calls)
            if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in ks):
                raise ValueError(f"{who}: calls must hold ints >= 0 (the k-th call, counted from 0), got {calls!r}")
            if len(set(ks)) != len(ks):
                raise ValueError(f"{who}: calls lists a call twice: {calls!r}")
            self.kind = "index" if isinstance(calls, int) else "list"
            self.pos = {k: i for i, k in enumerate(ks)}
        self.last_needed = max(self.pos) if self.pos else 0

    @property
    def counting(self) -> bool:
        return bool(self.pos)


class _Scope:
    """Per-forward call counting: hooks on the strict ancestors of the hooked modules.

    A forward starts when the outermost of those ancestors that runs is entered (``model(x)``, or
    ``model.encoder(x)`` called directly); ``on_reset`` callbacks run then, ``on_leave`` when it
    returns (also on an exception: ``always_call``).
    """

    def __init__(self, model: nn.Module, names: Iterable[str], guard: ModelGuard):
        self.depth = 0
        self.counts: dict[Any, int] = {}
        self.on_reset: list[Callable[[], None]] = []
        self.on_leave: list[Callable[[], None]] = []
        owners: dict[int, nn.Module] = {}
        for name in names:
            parts = name.split(".") if name else []
            prefixes = [""] + [".".join(parts[:i]) for i in range(1, len(parts))]
            for prefix in prefixes:
                m = get_module(model, prefix)
                owners.setdefault(id(m), m)
        for m in owners.values():
            guard.add_handle(m.register_forward_pre_hook(self._enter, prepend=True))
            guard.add_handle(m.register_forward_hook(self._leave, always_call=True))

    def _enter(self, module, args):
        if self.depth == 0:
            self.counts.clear()
            for fn in self.on_reset:
                fn()
        self.depth += 1

    def _leave(self, module, args, output):
        self.depth -= 1
        if self.depth == 0:
            for fn in self.on_leave:
                fn()

    def tick(self, key) -> int:
        i = self.counts.get(key, 0)
        self.counts[key] = i + 1
        return i


# --------------------------------------------------------------------------------------------- select
def _selector(select) -> tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]:
    """``(get, put)`` for ``select=``: ``get(out)`` the chosen tensor, ``put(out, new)`` out with it replaced."""
    if select is None:
        return (lambda out: out), (lambda out, new: new)
    if isinstance(select, bool):
        raise TypeError("select must be an int index, a str key/attribute or a callable, got a bool")
    if isinstance(select, int):

        def get(out):
            if not isinstance(out, (tuple, list)):
                raise TypeError(f"select={select} indexes a tuple or list, but the value is a {type(out).__name__}")
            return out[select]

        def put(out, new):
            items = list(out)
            items[select] = new
            if isinstance(out, tuple) and hasattr(out, "_fields"):  # namedtuple
                return type(out)(*items)
            return type(out)(items)

        return get, put
    if isinstance(select, str):

        def get(out):
            if isinstance(out, Mapping):
                if select not in out:
                    raise _SelectKeyError(f"select={select!r}: the output has keys {list(out)}")
                return out[select]
            if hasattr(out, select):
                return getattr(out, select)
            raise TypeError(f"select={select!r}: the value is a {type(out).__name__} with no such key or attribute")

        def put(out, new):
            new_out = copy.copy(out)
            if isinstance(out, Mapping):
                new_out[select] = new
            else:
                setattr(new_out, select, new)
            return new_out

        return get, put
    if callable(select):

        def put(out, new):
            target = select(out)
            found = False

            def swap(t):
                nonlocal found
                if t is target:
                    found = True
                    return new
                return t

            result = map_tensors(out, swap)
            if not found:
                raise TypeError("select= must return one of the output's own tensors so the edit can be put back in its place")
            return result

        return select, put
    raise TypeError(f"select must be None, an int index, a str key/attribute or a callable, got {type(select).__name__}")


class _SelectKeyError(KeyError):
    """``KeyError`` whose ``str()`` is the message (not its repr)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _select_checked(get, value, name: str, who: str):
    try:
        return get(value)
    except KeyError as e:
        raise _SelectKeyError(f"{who}: module {name!r}: {e.args[0] if e.args else e}") from None
    except (TypeError, IndexError) as e:
        raise type(e)(f"{who}: module {name!r}: {e}") from None


# --------------------------------------------------------------------------------------------- capture
class _GradSlot:
    """Gradients of one recorded call's tensors, filled by tensor hooks during backward (summed like .grad)."""

    __slots__ = ("grads", "handles")

    def __init__(self, tensors: list[torch.Tensor]):
        self.grads: list = [None] * len(tensors)
        self.handles = [t.register_hook(self._hook(i)) for i, t in enumerate(tensors) if t.requires_grad]

    def _hook(self, i: int):
        def store(g):
            self.grads[i] = g if self.grads[i] is None else self.grads[i] + g

        return store

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def result(self, recorded):
        if isinstance(recorded, torch.Tensor):
            return self.grads[0]
        it = iter(self.grads)
        return map_tensors(recorded, lambda t: next(it))


class _Grads(Mapping):
    """``acts.grads``: ``name -> gradient of the loss w.r.t. the module's output`` (same layout as ``acts``)."""

    def __init__(self, acts: "Captured"):
        self._acts = acts

    def _get(self, name: str):
        a = self._acts
        slots = a._gslots.get(name)
        if slots is None:
            return None
        rec = a.outputs[name]
        if isinstance(slots, list):
            return [None if s is None or r is _MISSING else s.result(r) for s, r in zip(slots, rec)]
        return slots.result(rec)

    def __getitem__(self, name: str):
        a = self._acts
        if not a._want_grads:
            raise KeyError("gradients are recorded only with capture(..., grads=True)")
        g = self._get(name)
        if g is None or (isinstance(g, list) and all(x is None for x in g)):
            if name not in a.names:
                raise KeyError(f"{name!r} was not captured; captured names: {list(a.names)}")
            raise KeyError(
                f"no gradient reached the output of module {name!r}: call backward() inside the block on a loss that "
                "depends on it, with the forward run with gradients enabled"
            )
        return g

    def __iter__(self):
        return (n for n in self._acts._gslots if self._get(n) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Captured(Mapping):
    """Result of :func:`capture`: a mapping ``name -> output`` plus ``.inputs`` and ``.grads``.

    Filled during the ``with`` block, usable after it. The layout of each value follows ``calls``:
    one value for ``"last"`` or an int, a list (one entry per call) for ``"all"``, a list with one
    entry per listed call for a list of ints. A name whose module did not run is absent.
    ``.grads[name]`` (with ``grads=True``) is the gradient of what was backpropagated inside the
    block with respect to that output. ``.stopped`` is True when ``stop=True`` ended the forward.
    """

    def __init__(self, names: Iterable[str], calls="last"):
        self.names = tuple(names)
        self.calls = calls.spec if isinstance(calls, _Calls) else calls
        self.outputs: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}
        self.grads: Mapping[str, Any] = _Grads(self)
        self.stopped = False
        self._spec = calls if isinstance(calls, _Calls) else _Calls(calls, "capture")
        self._want_grads = False
        self._gslots: dict[str, Any] = {}
        self._watch: dict[tuple, list] = {}

    # -- recording (called by the hooks)
    def _record(self, which: str, name: str, i: int | None, raw, prepare, watch: bool, grad: bool) -> None:
        table = self.outputs if which == "out" else self.inputs
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        if isinstance(raw, torch.Tensor):
            value = prepare(raw)
            pairs.append((raw, value))
        else:

            def prep(t):
                v = prepare(t)
                pairs.append((t, v))
                return v

            value = map_tensors(raw, prep)
        kind = self._spec.kind
        if kind == "all":
            lst = table.setdefault(name, [])
            slot = len(lst)
            lst.append(value)
        elif kind == "list":
            lst = table.get(name)
            if lst is None:
                lst = table[name] = [_MISSING] * len(self._spec.pos)
            slot = self._spec.pos[i]
            lst[slot] = value
        else:
            table[name] = value
            slot = None
        if watch:
            self._watch[(which, name, slot)] = [(v, _version(v)) for _, v in pairs]
        if grad:
            gs = _GradSlot([t for t, _ in pairs])
            if kind in ("all", "list"):
                lst = self._gslots.get(name)
                if lst is None:
                    lst = self._gslots[name] = [] if kind == "all" else [None] * len(self._spec.pos)
                if kind == "all":
                    lst.append(gs)
                else:
                    if lst[slot] is not None:
                        lst[slot].remove()
                    lst[slot] = gs
            else:
                old = self._gslots.get(name)
                if old is not None:
                    old.remove()
                self._gslots[name] = gs

    def _release(self) -> None:
        for s in self._gslots.values():
            for g in s if isinstance(s, list) else [s]:
                if g is not None:
                    g.remove()

    def _inplace_report(self) -> list[str]:
        out = []
        for (which, name, slot), pairs in self._watch.items():
            if any(v is not None and _version(t) != v for t, v in pairs):
                call = "" if slot is None else f" (entry {slot})"
                what = "output" if which == "out" else "input"
                out.append(f"the {what} of module {name!r}{call}")
        return out

    # -- mapping interface
    def __getitem__(self, name: str):
        try:
            value = self.outputs[name]
        except KeyError:
            if name in self.names:
                raise KeyError(f"module {name!r} was captured but did not run during the block"
                               + (f" (or not as often as calls={self.calls!r} asks)" if self._spec.counting else "")) from None
            raise KeyError(f"{name!r} was not captured; captured names: {list(self.names)}") from None
        if self._spec.kind == "list" and any(v is _MISSING for v in value):
            missing = [k for k, p in self._spec.pos.items() if value[p] is _MISSING]
            raise KeyError(f"module {name!r}: call(s) {missing} of calls={self.calls!r} did not run during the block")
        return value

    def __iter__(self):
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def clear(self) -> None:
        """Drop the stored tensors (e.g. between batches) without leaving the block."""
        self._release()
        self.outputs.clear()
        self.inputs.clear()
        self._gslots.clear()
        self._watch.clear()

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
    calls="last",
    grads: bool = False,
    stop: bool = False,
    eval: bool | None = None,
    restore_buffers: bool = True,
) -> Iterator[Captured]:
    """Record the outputs (and optionally inputs and gradients) of the named modules during the block.

    ``names``: a name, pattern or submodule, or a list of them. ``detach=True`` stores
    ``t.detach()`` (free); ``detach=False`` keeps the autograd graph. ``clone=True`` copies
    (protects against later in-place ops; without it such an op is detected and warned about).
    ``calls``: ``"last"``, ``"all"``, an int or a list of ints (module docstring). ``grads=True``:
    after a ``backward()`` inside the block, ``acts.grads[name]`` holds the gradient w.r.t. the
    module's output (tensor hooks, removed on exit). ``stop=True``: end the forward once every named
    module has delivered its calls (``"last"``/``"all"``: its first call). ``eval``: None warns about
    train-mode Dropout/BatchNorm, True runs the block in eval mode, False keeps the modes.

    Example::

        with capture(model, ["encoder.0", "encoder"]) as acts:
            model(x)
        code = acts["encoder"]            # tensor [N, code_size]

        with capture(model, "encoder", detach=False, grads=True) as acts:
            model(x).square().sum().backward()
        dloss_dcode = acts.grads["encoder"]

        with capture(model, "encoder", stop=True) as acts:   # the decoder never runs
            model(x)
    """
    spec = _Calls(calls, "capture")
    modules = resolve_modules(model, names)
    if stop and grads:
        raise ValueError("capture: stop=True ends the block at the stop, so no backward can run in it; drop grads=True")
    out = Captured(modules, spec)
    out._want_grads = grads
    token = object()
    watch = not clone
    counting = spec.counting
    wanted = spec.pos
    last_needed = spec.last_needed
    pending: set[str] = set(modules)

    def prepare(t: torch.Tensor) -> torch.Tensor:
        if detach:
            t = t.detach()
        return t.clone() if clone else t

    def check_stop(name: str, i: int | None) -> None:
        if i is None or i >= last_needed:
            pending.discard(name)
            if not pending:
                raise StopForward(token)

    guard = ModelGuard(model, buffers=restore_buffers, eval=eval, caller="capture")
    ok = False
    try:
        scope = _Scope(model, modules, guard) if counting else None
        if scope is not None and stop:
            scope.on_reset.append(lambda: pending.update(modules))
        fast = spec.kind == "last" and not grads and not stop  # the common case, kept lean
        outputs, watched, tensor = out.outputs, out._watch, torch.Tensor
        for name, module in modules.items():

            def hook(module, args, output, name=name, key=("out", name, None)):
                if fast and isinstance(output, tensor):
                    v = output.detach() if detach else output
                    if clone:
                        v = v.clone()
                    else:
                        watched[key] = ((v, _version(v)),)
                    outputs[name] = v
                    return
                i = None
                if counting:
                    i = scope.tick(name)
                    if i not in wanted:
                        return
                out._record("out", name, i, output, prepare, watch, grads)
                if stop:
                    check_stop(name, i)

            guard.add_handle(module.register_forward_hook(hook))
            if inputs:

                def pre_hook(module, args, kwargs, name=name):
                    i = None
                    if counting:
                        i = scope.tick(("in", name))
                        if i not in wanted:
                            return
                    if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
                        value = args[0]
                    else:
                        value = Inputs(tuple(args), dict(kwargs))
                    out._record("in", name, i, value, prepare, watch, False)

                guard.add_handle(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        yield out
        ok = True
    except StopForward as e:
        if e.owner is not token:
            raise
        out.stopped = ok = True
    finally:
        out._release()
        guard.restore()
    if ok and watch:
        hit = out._inplace_report()
        if hit:
            warn_caller(
                f"capture: {', '.join(hit[:4])}{' and more' if len(hit) > 4 else ''} was modified in place after it "
                "was captured (by a later in-place op such as ReLU(inplace=True), or by the module itself), so the "
                "captured tensor no longer holds the captured value; pass clone=True",
                RuntimeWarning,
            )


def output_at(model: nn.Module, name, *args, calls="last", detach: bool = False, eval: bool | None = False,
              restore_buffers: bool = True, **kwargs):
    """The output of module ``name`` during ``model(*args, **kwargs)``, ending the forward right after it.

    Nothing after the module is computed (``capture(..., stop=True)``), the model is left as it
    was, and the graph is kept (``detach=False``) so gradients flow to the inputs. ``calls``: which
    call of a shared module (``"last"`` is then its first call, since the forward stops there; pass
    an int k for the k-th). ``eval`` as in :func:`capture` (default False: the caller's modes).
    Other keyword arguments go to the model. ``KeyError`` when the module does not run.

    Example -- the code of a U-Net read at its bottleneck::

        z = output_at(unet, "mid", x)
    """
    modules = resolve_modules(model, name)
    if len(modules) != 1:
        raise ValueError(f"output_at needs exactly one module, {name!r} matches {len(modules)}: {list(modules)[:5]}")
    (resolved,) = modules
    with capture(model, resolved, calls=calls, detach=detach, stop=True, eval=eval,
                 restore_buffers=restore_buffers) as acts:
        model(*args, **kwargs)
    return acts[resolved]


# --------------------------------------------------------------------------------------------- stream
@contextmanager
def stream(
    model: nn.Module,
    names,
    reducer="mean",
    *,
    inputs: bool = False,
    select=None,
    calls="all",
    eval: bool | None = None,
    restore_buffers: bool = True,
) -> Iterator[dict[str, Reducer]]:
    """Reduce the activations of the named modules on the fly, batch after batch, in O(1) memory.

    ``reducer``: ``"mean"``, ``"variance"``, ``"minmax"``, a :class:`Reducer` instance (copied per
    module), a callable ``fn(state, x) -> state`` (wrapped in :class:`Fold`) or a dict
    ``{name: reducer}``. Yields ``{name: Reducer}``; read ``.result()`` after the block. Each
    reduced call of a module is one update (``calls``, default ``"all"``); nothing but the reducer
    state is kept. ``select`` picks the tensor of a tuple/dict output. NaN/inf values are counted
    per module and reported by a ``RuntimeWarning`` at block exit.

    Example::

        with stream(model, ["encoder"], Variance()) as red:
            for xb in batches:
                model(xb)
        code_var = red["encoder"].result()
    """
    spec = _Calls(calls, "stream")
    modules = resolve_modules(model, names)
    reducers = {name: make_reducer(reducer, name) for name in modules}
    get, _ = _selector(select)
    counting, wanted, last = spec.counting, spec.pos, spec.kind == "last"
    bad: dict[str, Any] = {}
    pending: dict[str, torch.Tensor] = {}

    def update(name: str, value: torch.Tensor) -> None:
        with torch.no_grad():
            if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
                bad[name] = bad.get(name, 0) + int(value.numel() - torch.isfinite(value).sum())
            reducers[name].update(value)

    def flush() -> None:
        while pending:
            name, value = pending.popitem()
            update(name, value)

    def take(name: str, value, i: int | None) -> None:
        value = _select_checked(get, value, name, "stream") if select is not None else value
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"stream: module {name!r} produced a {type(value).__name__}, not a tensor; "
                "pass select=0 (an index), select='key' or select=lambda out: ... to choose what to reduce"
            )
        if last:
            pending[name] = value.detach().clone()  # reduced when the forward ends: copy, in-place safe
        else:
            update(name, value.detach())

    guard = ModelGuard(model, buffers=restore_buffers, eval=eval, caller="stream")
    ok = False
    try:
        scope = _Scope(model, modules, guard) if (counting or last) else None
        for name, module in modules.items():
            if inputs:

                def pre_hook(module, args, name=name):
                    if not args:
                        raise TypeError(f"stream(inputs=True): module {name!r} was called without positional input")
                    i = None
                    if counting:
                        i = scope.tick(name)
                        if i not in wanted:
                            return
                    take(name, args[0], i)

                guard.add_handle(module.register_forward_pre_hook(pre_hook))
            else:

                def hook(module, args, output, name=name):
                    i = None
                    if counting:
                        i = scope.tick(name)
                        if i not in wanted:
                            return
                    take(name, output, i)

                guard.add_handle(module.register_forward_hook(hook))
        if last:
            scope.on_leave.append(flush)
            scope.on_reset.append(flush)
        yield reducers
        flush()
        ok = True
    finally:
        pending.clear()
        guard.restore()
    if ok:
        for name, n in bad.items():
            if n:
                warn_caller(
                    f"stream: module {name!r} produced {n} non-finite value(s) (NaN or inf) that were reduced; "
                    "its reducer result is not finite where they fell",
                    RuntimeWarning,
                )


# --------------------------------------------------------------------------------------------- interventions
@contextmanager
def intervene(
    model: nn.Module,
    edits: Mapping[Any, Callable[[Any], Any]],
    *,
    on: str = "output",
    calls="all",
    select=None,
    eval: bool | None = None,
    restore_buffers: bool = True,
) -> Iterator[None]:
    """Edit the output (``on="output"``) or input (``on="input"``) of named modules during forward.

    ``edits`` maps a module name (or pattern, or submodule) to ``fn(value) -> new value``;
    returning ``None`` keeps the (possibly in-place edited) value. For ``on="input"`` the value is
    the first positional argument. ``calls``: ``"all"`` (default), an int or a list of ints -- only
    those calls are edited. ``select``: edit one tensor of a tuple/dict value (``0``, ``"mu"`` or a
    callable); the rest passes through. Gradients flow through the edited value. Helpers:
    :func:`set_value`, :func:`zero_channels`.

    Example -- decode with code unit 0 pinned to 2.0::

        with intervene(model, {"encoder": set_value(0, 2.0)}):
            y = model(x)

        with intervene(vae, {"encoder": set_value(0, 2.0)}, select=0):   # encoder returns (mu, logvar)
            y = vae(x)
    """
    if on not in ("output", "input"):
        raise ValueError(f"on must be 'output' or 'input', got {on!r}")
    if not isinstance(edits, Mapping) or not edits:
        raise TypeError("edits must be a non-empty dict {module name: fn(value) -> value}")
    spec = _Calls(calls, "intervene")
    if spec.kind == "last":
        raise ValueError(
            "intervene: calls='last' is unknowable while the forward runs (another call may follow); pass calls=k "
            "(count the calls with capture(model, name, calls='all'))"
        )
    targets: dict[str, tuple[nn.Module, Callable]] = {}
    owner: dict[int, str] = {}
    for key, fn in edits.items():
        if not callable(fn):
            raise TypeError(f"edit for {key!r} must be callable fn(value) -> value, got {type(fn).__name__}")
        for name, module in resolve_modules(model, key).items():
            if id(module) in owner:
                raise ValueError(f"intervene: {name!r} and {owner[id(module)]!r} are the same module; give one edit per module")
            owner[id(module)] = name
            targets[name] = (module, fn)
    get, put = _selector(select)
    counting, wanted = spec.counting, spec.pos

    def apply(name: str, fn: Callable, value):
        part = _select_checked(get, value, name, "intervene") if select is not None else value
        new = fn(part)
        if new is None:
            return None
        return put(value, new) if select is not None else new

    guard = ModelGuard(model, buffers=restore_buffers, eval=eval, caller="intervene")
    try:
        scope = _Scope(model, targets, guard) if counting else None
        for name, (module, fn) in targets.items():
            if on == "output":

                def hook(module, args, output, fn=fn, name=name):
                    if counting and scope.tick(name) not in wanted:
                        return None
                    new = apply(name, fn, output)
                    return output if new is None else new

                guard.add_handle(module.register_forward_hook(hook))
            else:

                def pre_hook(module, args, fn=fn, name=name):
                    if not args:
                        raise TypeError(f"intervene(on='input'): module {name!r} was called without positional input")
                    if counting and scope.tick(name) not in wanted:
                        return None
                    new = apply(name, fn, args[0])
                    return None if new is None else (new,) + tuple(args[1:])

                guard.add_handle(module.register_forward_pre_hook(pre_hook))
        yield
    finally:
        guard.restore()


def _edit_on(select, who: str, edit: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Any], Any]:
    """Wrap a tensor edit so it applies to ``select(value)`` and puts the result back."""
    get, put = _selector(select)

    def apply(value):
        part = get(value) if select is not None else value
        if not isinstance(part, torch.Tensor):
            raise TypeError(
                f"{who} edits a tensor, got a {type(part).__name__}; pass select=0 (an index), select='key' or a "
                f"callable to {who}(...) or to intervene(...) to choose the tensor of a tuple or dict"
            )
        new = edit(part)
        return put(value, new) if select is not None else new

    return apply


def set_value(index, value: float, *, select=None) -> Callable[[Any], Any]:
    """Edit that sets ``out[:, index] = value`` for every sample (``index`` an int or a tuple).

    Out of place (returns a new tensor), so it is safe on outputs autograd still needs. ``select``
    edits one tensor of a tuple/dict value (see :func:`intervene`).
    """
    idx = (slice(None),) + (tuple(index) if isinstance(index, (tuple, list)) else (index,))

    def edit(out: torch.Tensor) -> torch.Tensor:
        new = out.clone()
        new[idx] = value
        return new

    return _edit_on(select, "set_value", edit)


def zero_channels(channels, dim: int = 1, *, select=None) -> Callable[[Any], Any]:
    """Edit that zeroes the given channel(s) along ``dim`` (default 1 = conv channels / features).

    Out of place with ``index_fill``, so an inf or NaN in a zeroed channel becomes exactly 0 (a
    multiplication by a 0/1 mask would give NaN) and the other channels are untouched.
    """
    chans = [channels] if isinstance(channels, int) else list(channels)

    def edit(out: torch.Tensor) -> torch.Tensor:
        size = out.shape[dim]
        bad = [c for c in chans if not -size <= c < size]
        if bad:
            raise IndexError(f"zero_channels: channel(s) {bad} out of range for {size} channels along dim {dim}")
        idx = torch.tensor(sorted({c % size for c in chans}), dtype=torch.long, device=out.device)
        return out.index_fill(dim, idx, 0)

    return _edit_on(select, "zero_channels", edit)
