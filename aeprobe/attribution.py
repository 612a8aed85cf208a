"""Attribution of an encoder's code (or one code unit) to the input pixels or a layer -- a thin captum wrapper.

Nothing is re-implemented: the attributions are captum's.

* ``"integrated_gradients"`` (captum ``IntegratedGradients``): ``A_i = (x_i - x'_i) * int_0^1
  dF/dx_i(x' + a (x - x')) da``, with the *completeness* property ``sum_i A_i = F(x) - F(x')``
  (Sundararajan et al. 2017, Prop. 1); captum's convergence delta is the violation of that sum,
  ``delta = sum_i A_i - (F(x) - F(x'))``.
* ``"layer_conductance"`` (``LayerConductance``): the same path integral through a hidden layer;
  the attributions of the layer's units also sum to ``F(x) - F(x')`` (delta = violation).
* ``"grad_x_activation"`` (``LayerGradientXActivation``): ``a * dF/da`` at the layer (no delta).

``F`` is the attributed scalar per sample: code unit ``unit`` (an int = index into the flattened
code, or a tuple = index into the code's non-batch dims), or the sum of the code when
``unit=None`` (the code itself for a 1-D code, as in ``DiskAE``).

For the layer methods ``layer`` names a module; with ``layer=None`` the first leaf module that runs
is used and the attribution is taken with respect to *its input* (of its first call) -- i.e. the
input pixels unless ``encode`` preprocesses ``x`` -- so the map has the shape of ``x`` for every
method. A layer that runs several times per forward (a shared module) needs ``calls=k`` (or
``"last"``): the attribution is then to the output of that call alone (a proxy module receives
that call's output, so captum sees exactly one call); without it a ``ValueError`` says so, since
captum would silently mix the calls.

The model is put in eval mode during attribution (``eval_mode=True``: BatchNorm uses its running
statistics, dropout is off, samples do not interact), its parameters' ``requires_grad`` is turned
off (only input gradients are needed), and everything -- modes, flags, buffers and any hook captum
registered -- is restored on exit, also on error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from aeprobe._modules import module_name, resolve_modules
from aeprobe.state import ModelGuard
from aeprobe.view import Autoencoder, as_view, autoencoder

__all__ = ["CodeAttribution", "attribute_code", "METHODS"]

METHODS = ("integrated_gradients", "layer_conductance", "grad_x_activation")


@dataclass
class CodeAttribution:
    """Result of :func:`attribute_code`.

    ``attributions``: ``[N, ...]`` (shape of ``x``, or of the layer's output for a named layer);
    ``delta``: ``[N]`` convergence delta ``sum(A) - (value - baseline_value)`` (``None`` for
    ``grad_x_activation``); ``value``: ``[N]``
    the attributed scalar at ``x``; ``baseline_value``: ``[N]`` at the baseline (path methods).
    """

    attributions: torch.Tensor
    delta: torch.Tensor | None
    value: torch.Tensor
    baseline_value: torch.Tensor | None
    method: str
    unit: int | tuple | None
    layer: str | None
    to_layer_input: bool
    code_shape: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        return self.attributions.detach().cpu().numpy().copy()


def _encoder_view(model, encoder) -> tuple[Autoencoder, list[nn.Module]]:
    """The view whose ``encode`` is attributed, and the modules to put in eval mode.

    ``encoder=None``: the view of ``model`` (a plain module is read with ``aeprobe.autoencoder``);
    a name or a submodule of the model: that part; a module outside the model: itself."""
    root = model.model if isinstance(model, Autoencoder) else model
    if encoder is None:
        ae = as_view(model)
    elif isinstance(encoder, nn.Module) and not any(m is encoder for m in root.modules()):
        return autoencoder(encoder, encoder=encoder), [root, encoder]
    elif isinstance(encoder, (str, nn.Module)):
        ae = autoencoder(root, encoder=encoder)
    else:
        raise TypeError(f"encoder must be None, a module name or an nn.Module, got {type(encoder).__name__}")
    ae.require("encode", probe="attribute_code")
    return ae, [root]


def _count_calls(module: nn.Module, fn, x1: torch.Tensor) -> int:
    count = [0]

    def hook(mod, args, output):
        count[0] += 1

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            fn(x1)
    finally:
        handle.remove()
    return count[0]


def _first_leaf(root: nn.Module, fn, x1: torch.Tensor) -> tuple[str, nn.Module]:
    order: list[nn.Module] = []
    handles = [
        m.register_forward_pre_hook(lambda mod, args: order.append(mod) if not order else None)
        for _, m in root.named_modules()
        if next(m.children(), None) is None
    ]
    try:
        with torch.no_grad():
            fn(x1)
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise ValueError("no leaf module ran during encode(x); pass layer= explicitly")
    return module_name(root, order[0]), order[0]


def _flat_index(unit, code_shape: tuple[int, ...]) -> int | None:
    size = int(np.prod(code_shape)) if code_shape else 1
    if unit is None:
        return None
    if isinstance(unit, (int, np.integer)) and not isinstance(unit, bool):
        if not -size <= unit < size:
            raise ValueError(f"unit {unit} out of range for a code of {size} units (shape {code_shape})")
        return int(unit) % size
    if isinstance(unit, (tuple, list)):
        if len(unit) != len(code_shape) or any(not 0 <= u < s for u, s in zip(unit, code_shape)):
            raise ValueError(f"unit {tuple(unit)} is not an index into a code of shape {code_shape}")
        return int(np.ravel_multi_index(tuple(unit), code_shape))
    raise TypeError(f"unit must be None, an int or a tuple of ints, got {type(unit).__name__}")


def attribute_code(
    model,
    x: torch.Tensor,
    unit=None,
    method: str = "integrated_gradients",
    layer: str | None = None,
    *,
    encoder=None,
    baseline: torch.Tensor | float | None = None,
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    integration: str | None = None,
    eval_mode: bool = True,
    restore_buffers: bool = True,
    calls: int | str | None = None,
) -> CodeAttribution:
    """Attribute code unit ``unit`` (or the code's sum) of ``encode(x)`` with a captum method.

    ``model``: a module or an :func:`aeprobe.autoencoder` view, read through the view: its
    ``encode`` (the code picked from a tuple, dict or distribution) is attributed, and layer names
    are those of its model. ``encoder``: a submodule name or an ``nn.Module`` read as the encoder
    instead (so plain encoders work). ``baseline``: the reference input ``x'`` (default
    zeros; a float fills). ``n_steps``/``internal_batch_size`` go to captum. ``integration`` is
    captum's quadrature ``method``; default ``"gausslegendre"`` for integrated gradients and
    ``"riemann_trapezoid"`` for layer conductance: captum computes conductance from differences of
    the layer's activation between consecutive path points, which telescope to ``a(x) - a(x')``
    only when the grid contains both end points (Gauss-Legendre nodes do not: then even a linear
    encoder gets an O(1/n_steps) error). ``calls``: for a ``layer`` that runs several times per
    forward, which call to attribute to -- an int k (counted from 0) or ``"last"``; required then.

    Example::

        att = attribute_code(model, x[:8], unit=0)                   # IG, map of shape x
        lc = attribute_code(model, x[:8], method="layer_conductance", layer="encoder.2")
        image_grid(att.attributions[:, 0], "ig.png")
    """
    from captum.attr import IntegratedGradients, LayerConductance, LayerGradientXActivation

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(model, (nn.Module, Autoencoder)):
        raise TypeError(f"model must be a torch.nn.Module or an aeprobe.autoencoder(...) view, got "
                        f"{type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__} {getattr(x, 'dtype', '')}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch [N, ...], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    if method == "integrated_gradients" and layer is not None:
        raise ValueError("layer= is for the layer methods; integrated_gradients attributes to the input")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if calls is not None:
        if method == "integrated_gradients":
            raise ValueError("calls= selects a call of the attributed layer; integrated_gradients has no layer")
        if layer is None:
            raise ValueError("calls= selects a call of layer=; with layer=None the first call's input is always used")
        if not (calls == "last" or (isinstance(calls, int) and not isinstance(calls, bool) and calls >= 0)):
            raise ValueError(f"calls must be an int k >= 0 or 'last' (one call is attributed), got {calls!r}")

    ae, to_eval = _encoder_view(model, encoder)
    enc_fn, root = ae.encode, ae.model
    param = next((p for m in to_eval for p in m.parameters()), None)
    if param is not None:
        x = x.to(param.device)
    x = x.detach()
    if baseline is None:
        base = torch.zeros_like(x)
    elif isinstance(baseline, (int, float)):
        base = torch.full_like(x, float(baseline))
    else:
        base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x).detach()

    guards = [ModelGuard(m, buffers=restore_buffers, hooks=True) for m in to_eval]
    try:
        if eval_mode:
            for m in to_eval:
                m.eval()
        for m in to_eval:
            for p in m.parameters():
                p.requires_grad_(False)

        with torch.no_grad():
            code = enc_fn(x[:1])
        code_shape = tuple(code.shape[1:])
        idx = _flat_index(unit, code_shape)

        layer_name: str | None = None
        to_input = False
        layer_mod = None
        tap_call: int | None = None  # attribute to this call of the layer through a proxy module
        if method != "integrated_gradients":
            if layer is None:
                layer_name, layer_mod = _first_leaf(root, enc_fn, x[:1])
                to_input = True
            else:
                found = resolve_modules(root, layer)  # a name, a submodule or a pattern matching one module
                if len(found) != 1:
                    raise ValueError(f"layer {layer!r} matches {len(found)} modules ({list(found)[:5]}); name one")
                ((layer_name, layer_mod),) = found.items()
            n_calls = _count_calls(layer_mod, enc_fn, x[:1])
            if n_calls == 0:
                raise ValueError(f"layer {layer_name!r} did not run during encode(x)")
            if to_input:
                tap_call = 0 if n_calls > 1 else None
            elif calls is None:
                if n_calls > 1:
                    raise ValueError(
                        f"layer {layer_name!r} runs {n_calls} times per forward of the encoder (a shared module); "
                        f"pass calls=k (0..{n_calls - 1}) or calls='last' to attribute to one call -- captum would "
                        "otherwise mix the calls silently"
                    )
            else:
                k = n_calls - 1 if calls == "last" else calls
                if k >= n_calls:
                    raise ValueError(f"calls={calls} but layer {layer_name!r} runs {n_calls} time(s) per forward")
                tap_call = k if n_calls > 1 else None
        call_counter = [0]
        if tap_call is not None:
            tap = nn.Identity()  # proxy: captum hooks it, and it sees only the chosen call
            if to_input:

                def pre_hook(mod, args):
                    i = call_counter[0]
                    call_counter[0] += 1
                    if i == tap_call:
                        return (tap(args[0]),) + tuple(args[1:])
                    return None

                guards[0].add_handle(layer_mod.register_forward_pre_hook(pre_hook))
            else:

                def hook(mod, args, output):
                    i = call_counter[0]
                    call_counter[0] += 1
                    return tap(output) if i == tap_call else None

                guards[0].add_handle(layer_mod.register_forward_hook(hook))
            layer_mod, to_input_captum = tap, False
        else:
            to_input_captum = to_input

        def scalar(inp: torch.Tensor) -> torch.Tensor:
            call_counter[0] = 0  # calls are counted per forward
            c = enc_fn(inp)
            flat = c.reshape(c.shape[0], -1)
            return flat.sum(dim=1) if idx is None else flat[:, idx]

        delta = None
        quad = integration or ("riemann_trapezoid" if method == "layer_conductance" else "gausslegendre")
        with torch.enable_grad():
            if method == "integrated_gradients":
                attr, delta = IntegratedGradients(scalar).attribute(
                    x, baselines=base, n_steps=n_steps, internal_batch_size=internal_batch_size,
                    return_convergence_delta=True, method=quad,
                )
            elif method == "layer_conductance":
                attr, delta = LayerConductance(scalar, layer_mod).attribute(
                    x, baselines=base, n_steps=n_steps, internal_batch_size=internal_batch_size,
                    return_convergence_delta=True, attribute_to_layer_input=to_input_captum, method=quad,
                )
            else:
                attr = LayerGradientXActivation(scalar, layer_mod).attribute(x, attribute_to_layer_input=to_input_captum)
        if isinstance(attr, (tuple, list)):
            attr = attr[0]
        with torch.no_grad():
            value = scalar(x)
            base_value = scalar(base) if method != "grad_x_activation" else None
    finally:
        errors = []
        for g in reversed(guards):
            try:
                g.restore()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        if errors:
            raise errors[0]
    return CodeAttribution(
        attributions=attr.detach(),
        delta=None if delta is None else delta.detach().reshape(-1),
        value=value.detach(),
        baseline_value=None if base_value is None else base_value.detach(),
        method=method,
        unit=unit,
        layer=layer_name,
        to_layer_input=to_input,
        code_shape=code_shape,
    )
