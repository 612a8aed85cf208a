"""Activation patching (``aeprobe.patching``): how much of the clean behaviour does one module's activation carry?

For each named module, run the model on ``corrupted`` with that module's output replaced by its
output on ``clean``, and compare a scalar ``metric`` of the model's output::

    effect[name] = (metric(patched) - metric(corrupted)) / (metric(clean) - metric(corrupted))

``effect = 1``: the module's activation alone restores the clean behaviour (e.g. the whole code
of an autoencoder: the decoder sees exactly the clean code); ``0``: patching it changes nothing.
This is the causal-tracing / activation-patching experiment of the interpretability literature
(Meng et al. 2022; Heimersheim & Nanda 2024), for any ``nn.Module``.

Example::

    rep = patching(model, x_clean, x_corrupted, ["encoder.*", "encoder"],
                   metric=lambda y: (y - x_clean).square().mean())
    rep.effect["encoder"]            # ~1.0: the code carries everything the decoder uses
    rep.plot("runs/patching.png")

Cost: one forward for ``clean`` and ``corrupted`` together (stacked along the batch when no module
is in training mode), then one forward per name (``batch_size`` larger than twice the batch packs
several patched runs into one forward; smaller splits each run). The model is restored like by
every context manager of :mod:`aeprobe.hooks` (hooks, modes, flags, buffers), also on errors.
The samples must not interact through the batch (eval mode: ``eval=True`` or an eval-mode model;
``eval=None`` warns about train-mode Dropout/BatchNorm) for stacking and splitting to be exact.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from aeprobe._modules import resolve_modules
from aeprobe.state import ModelGuard, warn_caller
from aeprobe.utils import map_tensors

__all__ = ["patching", "PatchingReport"]


@dataclass(kw_only=True)
class PatchingReport:
    """Result of :func:`patching`.

    ``effect[name]``: normalised effect (1 = the clean metric restored, 0 = no change; NaN when
    ``metric(clean) == metric(corrupted)``). ``patched[name]``: the raw metric of the patched run;
    ``clean`` / ``corrupted``: the metric of the unpatched runs. ``calls[name]``: the calls that
    were patched, out of ``n_calls[name]`` calls of the module per forward on ``clean``.
    """

    names: list[str]
    effect: dict[str, float]
    patched: dict[str, float]
    clean: float
    corrupted: float
    calls: dict[str, list[int]] = field(default_factory=dict)
    n_calls: dict[str, int] = field(default_factory=dict)

    def plot(self, path, *, title: str | None = None) -> Path:
        """Bar chart of ``effect`` per module, written to ``path`` (PNG)."""
        from aeprobe.plots.patching import patching_bars

        return patching_bars(self, path, title=title)


# --------------------------------------------------------------------------------------------- structure helpers
def _leaves(struct) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    map_tensors(struct, lambda t: found.append(t) or t)
    return found


def _rows(struct, a: int, b: int):
    return map_tensors(struct, lambda t: t[a:b])


def _cat(structs: list):
    first = structs[0]
    if len(structs) == 1:
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(structs)
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(_cat([s[i] for s in structs]) for i in range(len(first))))
    if isinstance(first, (tuple, list)):
        return type(first)(_cat([s[i] for s in structs]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _cat([s[k] for s in structs]) for k in first}
    return first


def _zip_map(a, b, fn):
    """Apply ``fn(ta, tb)`` to corresponding tensors of two structures of the same layout."""
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor):
            raise ValueError(f"structure mismatch: tensor vs {type(b).__name__}")
        return fn(a, b)
    if isinstance(a, tuple) and hasattr(a, "_fields"):
        return type(a)(*(_zip_map(x, y, fn) for x, y in zip(a, b, strict=True)))
    if isinstance(a, (tuple, list)):
        return type(a)(_zip_map(x, y, fn) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return {k: _zip_map(v, b[k], fn) for k, v in a.items()}
    return a


def _batch_first(struct, n: int) -> bool:
    leaves = _leaves(struct)
    return bool(leaves) and all(t.dim() >= 1 and t.shape[0] == n for t in leaves)


def _scalar(value, what: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric must return a scalar, got a tensor of shape {tuple(value.shape)} for {what}")
        return float(value.detach().reshape(()).item())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric must return a number or a one-element tensor, got {type(value).__name__} for {what}") from None


def _calls_of(calls, n: int, name: str) -> list[int]:
    if calls == "last":
        return [n - 1]
    if calls == "all":
        return list(range(n))
    ks = [calls] if isinstance(calls, int) and not isinstance(calls, bool) else calls
    if not isinstance(ks, (list, tuple)) or not ks or any(isinstance(k, bool) or not isinstance(k, int) for k in ks):
        raise ValueError(f"calls must be 'last', 'all', an int k >= 0 or a list of them, got {calls!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"calls lists a call twice: {calls!r}")
    bad = [k for k in ks if not 0 <= k < n]
    if bad:
        raise ValueError(f"patching: module {name!r} runs {n} time(s) per forward on clean, calls={calls!r} asks for {bad}")
    return sorted(ks)


# --------------------------------------------------------------------------------------------- the runs
class _Runs:
    """Forwards with hooks registered and removed directly (one guard for the whole experiment)."""

    def __init__(self, model: nn.Module, guard: ModelGuard):
        self.model = model
        self.guard = guard

    def _run(self, x: torch.Tensor, hooks: list[tuple[nn.Module, Callable]]) -> Any:
        """``model(x)`` with the forward hooks registered, removed again when it returns or raises."""
        handles = []
        for module, fn in hooks:
            handles.append(module.register_forward_hook(fn))
            self.guard.add_handle(handles[-1])  # removed by the guard too if anything here fails
        try:
            return self.model(x)
        finally:
            for h in handles:
                h.remove()

    def record(self, x: torch.Tensor, modules: dict[str, nn.Module]) -> tuple[Any, dict[str, list]]:
        """``model(x)`` and, per module, the list of its outputs (one per call, cloned)."""
        acts: dict[str, list] = {name: [] for name in modules}
        hooks = []
        for name, module in modules.items():

            def hook(mod, args, output, lst=acts[name]):
                lst.append(map_tensors(output, lambda t: t.detach().clone()))

            hooks.append((module, hook))
        return self._run(x, hooks), acts

    def patched(self, x: torch.Tensor, patches: list[tuple[str, nn.Module, list[int], list, int, int, bool]]):
        """``model(x)`` with each ``(name, module, calls, values, offset, length, whole)`` patch applied.

        ``values[j]`` replaces call ``calls[j]``: the whole output (``whole``) or its rows
        ``offset:offset+length``.
        """
        hooks = []
        used = []
        for name, module, ks, values, offset, length, whole in patches:
            state = {"call": 0, "used": 0}
            used.append((name, ks, state))
            wanted = {k: j for j, k in enumerate(ks)}

            def hook(mod, args, output, name=name, wanted=wanted, values=values, offset=offset, length=length,
                     whole=whole, state=state):
                i = state["call"]
                state["call"] = i + 1
                j = wanted.get(i)
                if j is None:
                    return None
                state["used"] += 1
                value = values[j]

                def put(o: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                    if whole:
                        if o.shape != v.shape:
                            raise ValueError(
                                f"patching: module {name!r} outputs shape {tuple(o.shape)} on corrupted but "
                                f"{tuple(v.shape)} on clean (call {i})"
                            )
                        return v  # this run's own copy (recorded with clone): safe to hand over
                    new = o.clone()
                    new[offset:offset + length] = v
                    return new

                try:
                    return _zip_map(output, value, put)
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"patching: module {name!r}: {e}") from None

            hooks.append((module, hook))
        out = self._run(x, hooks)
        for name, ks, state in used:
            if state["used"] != len(ks):
                raise ValueError(
                    f"patching: module {name!r} ran {state['call']} time(s) on corrupted, fewer than the call(s) {ks} "
                    "recorded on clean"
                )
        return out


def patching(
    model: nn.Module,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    names,
    metric: Callable[[Any], Any],
    *,
    calls="last",
    batch_size: int | None = None,
    eval: bool | None = None,
    restore_buffers: bool = True,
) -> PatchingReport:
    """Patch each named module's clean output into the corrupted run; see the module docstring.

    ``names``: names, patterns (``"encoder.*"``) or submodules; each is patched on its own.
    ``metric(output) -> scalar`` (a number or one-element tensor) of the model's output for the whole
    batch. ``calls``: which calls of a shared module are patched -- ``"last"`` (default), ``"all"``,
    an int or a list of ints, counted per forward on ``clean``. ``batch_size``: most samples per
    forward (None: each run its own forward, clean and corrupted together). ``eval``: as in
    :func:`aeprobe.capture`. Runs under ``torch.no_grad()``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for arg, t in (("clean", clean), ("corrupted", corrupted)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{arg} must be a tensor [N, ...], got {type(t).__name__}")
        if t.dim() < 1 or t.shape[0] == 0:
            raise ValueError(f"{arg} must be a non-empty batch [N, ...], got shape {tuple(t.shape)}")
    if clean.shape != corrupted.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and corrupted {tuple(corrupted.shape)} must have the same shape")
    if not callable(metric):
        raise TypeError(f"metric must be callable output -> scalar, got {type(metric).__name__}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")
    modules = resolve_modules(model, names)
    seen: dict[int, str] = {}
    for name, module in modules.items():
        if id(module) in seen:
            raise ValueError(f"patching: {name!r} and {seen[id(module)]!r} are the same module; name it once")
        seen[id(module)] = name
    n = clean.shape[0]
    cap = batch_size

    guard = ModelGuard(model, buffers=restore_buffers, eval=eval, caller="patching")
    try:
        runs = _Runs(model, guard)
        independent = not guard.any_training  # samples may share a forward only then
        with torch.no_grad():
            clean_out, corr_out, acts = _baseline(runs, clean, corrupted, modules, cap, independent)
            m_clean, m_corr = _scalar(metric(clean_out), "clean"), _scalar(metric(corr_out), "corrupted")
            n_calls = {name: len(acts[name]) for name in modules}
            missing = [name for name, k in n_calls.items() if k == 0]
            if missing:
                raise KeyError(f"patching: module(s) {missing} did not run during model(clean)")
            ks = {name: _calls_of(calls, n_calls[name], name) for name in modules}
            pack = independent and _batch_first(clean_out, n)  # several runs may share a forward
            outs = _patched_runs(runs, corrupted, modules, ks, acts, cap, pack)
            patched = {name: _scalar(metric(outs[name]), f"the run patching {name!r}") for name in modules}
    finally:
        guard.restore()
    denom = m_clean - m_corr
    if denom == 0 or not math.isfinite(denom):
        warn_caller(
            f"patching: metric(clean) = {m_clean} and metric(corrupted) = {m_corr} do not differ by a finite amount, "
            "so the normalised effects are undefined (NaN); the raw metrics are in .patched",
            RuntimeWarning,
        )
        effect = {name: float("nan") for name in modules}
    else:
        effect = {name: (patched[name] - m_corr) / denom for name in modules}
    return PatchingReport(
        names=list(modules), effect=effect, patched=patched, clean=m_clean, corrupted=m_corr,
        calls={name: list(k) for name, k in ks.items()}, n_calls=n_calls,
    )


def _chunks(n: int, cap: int | None) -> list[tuple[int, int]]:
    step = n if cap is None or cap >= n else cap
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _baseline(runs: _Runs, clean, corrupted, modules, cap, independent):
    """(clean output, corrupted output, clean activations {name: [per call, full batch]})."""
    n = clean.shape[0]
    if independent and (cap is None or 2 * n <= cap):
        out, acts = runs.record(torch.cat([clean, corrupted]), modules)
        if _batch_first(out, 2 * n) and all(_batch_first(v, 2 * n) for vs in acts.values() for v in vs):
            return _rows(out, 0, n), _rows(out, n, 2 * n), {k: [_rows(v, 0, n) for v in vs] for k, vs in acts.items()}
        # some activation is not batch-first: fall back to separate forwards (exact for any model)
    parts = [runs.record(clean[a:b], modules) for a, b in _chunks(n, cap)]
    if len(parts) > 1:
        _require_batch_first([p[1] for p in parts], [b - a for a, b in _chunks(n, cap)])
    clean_out = _cat([p[0] for p in parts])
    acts = {name: [_cat([p[1][name][k] for p in parts]) for k in range(len(parts[0][1][name]))] for name in modules}
    corr_out = _cat([runs.model(corrupted[a:b]) for a, b in _chunks(n, cap)])
    return clean_out, corr_out, acts


def _require_batch_first(acts_per_chunk: list[dict], sizes: list[int]) -> None:
    for acts, size in zip(acts_per_chunk, sizes):
        for name, vs in acts.items():
            if not all(_batch_first(v, size) for v in vs):
                raise ValueError(
                    f"patching: batch_size={sum(sizes)} splits the batch, but module {name!r} has an output whose first "
                    "dimension is not the batch; pass batch_size=None"
                )


def _patched_runs(runs: _Runs, corrupted, modules, ks, acts, cap, pack: bool) -> dict[str, Any]:
    n = corrupted.shape[0]
    names = list(modules)
    outs: dict[str, Any] = {}
    # several whole runs per forward when they fit and every patched activation is batch-first
    per_forward = 1 if cap is None or not pack else max(1, cap // n)
    packable = [nm for nm in names if all(_batch_first(acts[nm][k], n) for k in ks[nm])]
    single = [nm for nm in names if nm not in packable]
    groups = [packable[i:i + per_forward] for i in range(0, len(packable), per_forward)] if per_forward > 1 else \
        [[nm] for nm in packable]
    groups += [[nm] for nm in single]
    for group in groups:
        if len(group) == 1:
            name = group[0]
            chunks = _chunks(n, cap)
            if len(chunks) > 1 and name not in packable:
                raise ValueError(
                    f"patching: batch_size={cap} splits the batch, but module {name!r} has an output whose first "
                    "dimension is not the batch; pass batch_size=None"
                )
            pieces = []
            for a, b in chunks:
                whole = len(chunks) == 1
                values = [acts[name][k] if whole else _rows(acts[name][k], a, b) for k in ks[name]]
                pieces.append(runs.patched(corrupted[a:b], [(name, modules[name], ks[name], values, 0, b - a, True)]))
            outs[name] = _cat(pieces)
        else:
            x = torch.cat([corrupted] * len(group))
            patches = [(name, modules[name], ks[name], [acts[name][k] for k in ks[name]], j * n, n, False)
                       for j, name in enumerate(group)]
            out = runs.patched(x, patches)
            for j, name in enumerate(group):
                outs[name] = _rows(out, j * n, (j + 1) * n)
    return outs
