"""Which torch operations a decoder runs, and whether Newson et al.'s Prop. 1 must then hold.

Prop. 1 (:mod:`theory.homogeneity`): a decoder built only from bias-free linear maps and
positively homogeneous activations satisfies ``D(lambda z) = lambda D(z)`` for every
``lambda > 0``. Whether a given decoder is built that way cannot be read from its modules alone
(``torch.sigmoid`` called inside ``decode`` is no module), so :func:`record_ops` runs the decoder
once under a :class:`torch.overrides.TorchFunctionMode` and records every torch function it calls
at the top level (``F.linear``, ``F.conv_transpose2d``, ``torch.sigmoid``, ``x + 1``, ...), and
:func:`prop1_conditions` sorts them:

* **homogeneous** (degree 1 for ``lambda > 0`` once the biases are zero): linear maps
  (``linear``, ``conv*``, ``conv_transpose*``, ``matmul``), resizing (``interpolate``,
  ``pixel_shuffle``), pooling, ``relu``, ``leaky_relu``, ``prelu``, ``abs``, ``dropout`` (eval),
  sums of such branches, scaling by a constant;
* **breaking**: saturating or offset activations (``sigmoid``, ``tanh``, ``gelu``, ``elu``,
  ``softplus``, ...), normalisations (``batch_norm`` keeps subtracting its running mean,
  ``layer_norm`` / ``group_norm`` / ``instance_norm`` are scale-invariant), ``exp``, ``log``,
  powers, clamping, and adding a non-zero constant;
* **structural** ops that move values around (``view``, ``cat``, ``permute``, ...) are neither;
* anything else is **unclassified**, and then the conditions cannot be decided from the ops.

    ops = record_ops(lambda z: ae.decode(z), z)
    cond = prop1_conditions(ops, biases_zeroed=True)
    cond.met, cond.breaking, cond.text
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["OpsRecord", "Prop1Conditions", "record_ops", "prop1_conditions", "HOMOGENEOUS", "BREAKING",
           "STRUCTURAL"]

HOMOGENEOUS = frozenset({
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "matmul", "mm", "bmm", "einsum", "relu", "leaky_relu", "prelu", "rrelu", "abs", "neg",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
    "lp_pool1d", "lp_pool2d", "interpolate", "upsample", "upsample_nearest", "upsample_bilinear",
    "pixel_shuffle", "pixel_unshuffle", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
    "feature_alpha_dropout", "maximum", "minimum", "max", "min", "sum", "mean",
})
BREAKING = frozenset({
    "sigmoid", "tanh", "softplus", "elu", "selu", "celu", "gelu", "silu", "mish", "hardtanh", "relu6",
    "hardsigmoid", "hardswish", "logsigmoid", "softsign", "tanhshrink", "softshrink", "hardshrink",
    "threshold", "glu", "exp", "exp2", "expm1", "log", "log1p", "log2", "log10", "pow", "sqrt", "rsqrt",
    "square", "softmax", "log_softmax", "softmin", "batch_norm", "instance_norm", "layer_norm", "group_norm",
    "rms_norm", "local_response_norm", "normalize", "clamp", "clip", "clamp_min", "clamp_max", "sin", "cos",
    "erf", "bilinear", "embedding", "round", "floor", "ceil", "sign", "reciprocal",
})
STRUCTURAL = frozenset({
    "view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "contiguous", "size", "dim", "numel",
    "get", "getitem", "setitem", "chunk", "split", "narrow", "expand", "expand_as", "repeat", "squeeze",
    "unsqueeze", "cat", "concat", "concatenate", "stack", "clone", "to", "float", "double", "half", "type_as",
    "detach", "movedim", "swapaxes", "index_select", "gather", "roll", "flip", "pad", "zeros_like",
    "channel_shuffle", "tensor_split", "unbind", "select", "is_floating_point", "device", "dtype", "shape",
    "requires_grad", "is_contiguous", "len", "iter", "reversed", "format", "repr", "split_with_sizes",
    "add", "sub", "mul", "div", "truediv", "rsub", "radd", "rmul", "iadd", "imul",
})
#: ops whose Python-number operand is a shift (non-zero) or a scale (fine)
_SHIFTS = frozenset({"add", "sub", "rsub", "radd", "iadd", "isub"})
_PRODUCTS = frozenset({"mul", "rmul", "imul", "div", "truediv", "rtruediv"})


def _name(func: Any) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    return name.strip("_") or name


@dataclass
class OpsRecord:
    """What :func:`record_ops` saw: ``counts`` (op name -> calls); ``shifts``: ops that added a
    non-zero Python constant (``x + 1``, ``1 - x``); ``products``: products or quotients of two tensors."""

    counts: dict[str, int] = field(default_factory=dict)
    shifts: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)


class _Recorder(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.counts: Counter = Counter()
        self.shifts: list[str] = []
        self.products: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        self.counts[name] += 1
        operands = list(args) + list(kwargs.values())
        if name in _SHIFTS and any(isinstance(a, (int, float)) and not isinstance(a, bool) and a != 0
                                   for a in operands):
            self.shifts.append(name)
        if name in _PRODUCTS and sum(isinstance(a, torch.Tensor) and a.numel() > 1 for a in operands) >= 2:
            self.products.append(name)
        return func(*args, **kwargs)


def record_ops(fn: Callable[[torch.Tensor], Any], z: torch.Tensor) -> OpsRecord:
    """Run ``fn(z)`` once without gradients and record the torch functions it calls (top level only:
    ``F.relu`` is recorded, not what ``F.relu`` calls inside)."""
    rec = _Recorder()
    with torch.no_grad(), rec:
        fn(z)
    return OpsRecord(counts=dict(sorted(rec.counts.items())), shifts=sorted(set(rec.shifts)),
                     products=sorted(set(rec.products)))


@dataclass
class Prop1Conditions:
    """Whether Prop. 1 must hold for a decoder: ``met`` True (every op homogeneous or structural),
    False (a breaking op, a non-zero constant added, or biases left in), None (unclassified ops)."""

    met: bool | None
    breaking: list[str]
    unclassified: list[str]
    homogeneous: list[str]
    biases_zeroed: bool
    text: str


def prop1_conditions(ops: OpsRecord, *, biases_zeroed: bool) -> Prop1Conditions:
    """Sort the recorded ops (module docstring) and state whether Prop. 1 must hold."""
    names = set(ops.counts)
    breaking = sorted(names & BREAKING) + [f"{s} of a non-zero constant" for s in ops.shifts]
    homog = sorted(names & HOMOGENEOUS)
    unclassified = sorted(names - BREAKING - HOMOGENEOUS - STRUCTURAL) + [f"{p} of two tensors" for p in ops.products]
    if not biases_zeroed:
        breaking = ["biases"] + breaking
    if breaking:
        met = False
        text = ("Prop. 1 need not hold: the decoder runs " + ", ".join(f"`{b}`" for b in breaking)
                + " (not bias-free linear maps and positively homogeneous activations)")
    elif unclassified:
        met = None
        text = ("Prop. 1's conditions cannot be decided from the ops: " + ", ".join(f"`{u}`" for u in unclassified)
                + " are not classified; the other ops are homogeneous")
    else:
        met = True
        text = ("Prop. 1 must hold: with the biases zeroed the decoder runs only linear maps and positively "
                "homogeneous ops (" + ", ".join(f"`{h}`" for h in homog) + ")")
    return Prop1Conditions(met=met, breaking=breaking, unclassified=unclassified, homogeneous=homog,
                           biases_zeroed=biases_zeroed, text=text)
