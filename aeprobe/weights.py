"""Weight extraction: a tidy record per conv / transposed-conv / linear layer, plus filters ready to plot.

``layer_weights(model)`` walks ``named_modules()`` and returns one :class:`LayerRecord` per layer,
holding *references* to the weight and bias (no copy; ``clone=True`` to copy) and the geometry
(stride, padding, kernel size, dilation, groups, channels). ``record.to_numpy()`` gives numpy
copies; ``record.filter_images()`` gives ``[n, h, w]`` images for ``plots.common.image_grid``::

    for rec in layer_weights(model):
        print(rec.name, rec.kind, tuple(rec.weight.shape), rec.stride)
    first = layer_weights(model)[0]
    image_grid(first.filter_images(), "filters.png")
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.nn as nn

__all__ = ["LayerRecord", "layer_weights", "filters_for_plotting"]


@dataclass
class LayerRecord:
    """One conv, transposed conv or linear layer.

    ``weight`` has the module's own layout: conv ``[out, in/groups, *k]``, transposed conv
    ``[in, out/groups, *k]``, linear ``[out, in]``. ``in_channels``/``out_channels`` are the
    ``in_features``/``out_features`` of a linear layer, whose stride/padding/kernel are ``None``.
    """

    name: str
    kind: str  # "conv", "conv_transpose" or "linear"
    module_type: str
    weight: Any
    bias: Any
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: Any = None
    dilation: tuple[int, ...] | None = None
    groups: int = 1
    output_padding: tuple[int, ...] | None = None

    def to_numpy(self) -> "LayerRecord":
        """A copy of the record with ``weight``/``bias`` as numpy arrays (copies, float as stored)."""

        def conv(t):
            if t is None or isinstance(t, np.ndarray):
                return None if t is None else t.copy()
            return t.detach().cpu().numpy().copy()

        return dataclasses.replace(self, weight=conv(self.weight), bias=conv(self.bias))

    def oriented_weight(self) -> np.ndarray:
        """Weight as numpy in ``[out, in_per_group, *kernel]`` layout for every kind (transposed conv flipped to it)."""
        w = self.weight if isinstance(self.weight, np.ndarray) else self.weight.detach().cpu().numpy()
        if self.kind == "conv_transpose":
            # [in, out/g, *k] -> [out, in/g, *k], per group
            g = self.groups
            cin = w.shape[0] // g
            w = w.reshape(g, cin, w.shape[1], *w.shape[2:]).swapaxes(1, 2).reshape(w.shape[1] * g, cin, *w.shape[2:])
        return np.array(w, copy=True)

    def filter_images(self, *, normalize: str | None = "each", image_shape: tuple[int, int] | None = None) -> np.ndarray:
        """Filters as ``[n, h, w]`` float images; see :func:`filters_for_plotting`."""
        return filters_for_plotting(self, normalize=normalize, image_shape=image_shape)


def filters_for_plotting(
    record: LayerRecord, *, normalize: str | None = "each", image_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Turn a layer's weight into a stack of 2-D images ``[n, h, w]`` for ``image_grid``.

    * conv2d / transposed conv2d: one image per (output, input) kernel pair, ``n = out * in/groups``,
      output-major (transposed conv reoriented so "output" means the same thing);
    * conv1d: each kernel as a ``1 x k`` image;
    * linear: each row reshaped to ``image_shape`` (default: square when ``in`` is a perfect square,
      else ``1 x in``).

    ``normalize``: ``"each"`` maps every image to [0, 1] on its own, ``"global"`` with one common
    range, ``"symmetric"`` maps ``[-m, m]`` to [0, 1] with ``m = max |w|`` (0 stays grey: 0.5),
    ``None`` returns raw values. Constant images map to 0.5.
    """
    w = record.oriented_weight().astype(np.float64)
    if record.kind == "linear":
        n_out, n_in = w.shape
        if image_shape is None:
            side = int(round(np.sqrt(n_in)))
            image_shape = (side, side) if side * side == n_in else (1, n_in)
        if image_shape[0] * image_shape[1] != n_in:
            raise ValueError(f"image_shape {image_shape} does not hold the {n_in} inputs of {record.name!r}")
        imgs = w.reshape(n_out, *image_shape)
    elif w.ndim == 3:
        imgs = w.reshape(-1, 1, w.shape[-1])
    elif w.ndim == 4:
        imgs = w.reshape(-1, w.shape[-2], w.shape[-1])
    else:
        raise ValueError(f"cannot draw {w.ndim - 2}-D kernels of {record.name!r} as images (1-D and 2-D only)")
    if normalize is None:
        return imgs
    if normalize == "each":
        lo = imgs.min(axis=(1, 2), keepdims=True)
        hi = imgs.max(axis=(1, 2), keepdims=True)
    elif normalize == "global":
        lo, hi = imgs.min(), imgs.max()
    elif normalize == "symmetric":
        m = np.abs(imgs).max()
        lo, hi = -m, m
    else:
        raise ValueError(f"normalize must be 'each', 'global', 'symmetric' or None, got {normalize!r}")
    span = np.asarray(hi - lo, dtype=np.float64)
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (imgs - lo) / safe, 0.5)


def _tuple(v) -> tuple[int, ...] | None:
    if v is None:
        return None
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def layer_weights(model: nn.Module, *, clone: bool = False) -> list[LayerRecord]:
    """One :class:`LayerRecord` per conv / transposed conv / linear layer, in ``named_modules()`` order.

    Weights are references to the parameters' data (detached; ``clone=True`` copies). Layers whose
    parameters are not yet materialised (lazy modules) are skipped.

    Example::

        recs = layer_weights(model)
        print([(r.name, r.kind, tuple(r.weight.shape)) for r in recs])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")

    def grab(t):
        if t is None:
            return None
        t = t.detach()
        return t.clone() if clone else t

    out: list[LayerRecord] = []
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, nn.parameter.UninitializedParameter):
            continue
        if isinstance(m, nn.modules.conv._ConvTransposeNd):
            out.append(
                LayerRecord(
                    name, "conv_transpose", type(m).__name__, grab(m.weight), grab(m.bias), m.in_channels,
                    m.out_channels, _tuple(m.kernel_size), _tuple(m.stride), m.padding, _tuple(m.dilation), m.groups,
                    _tuple(m.output_padding),
                )
            )
        elif isinstance(m, nn.modules.conv._ConvNd):
            out.append(
                LayerRecord(
                    name, "conv", type(m).__name__, grab(m.weight), grab(m.bias), m.in_channels, m.out_channels,
                    _tuple(m.kernel_size), _tuple(m.stride), m.padding, _tuple(m.dilation), m.groups,
                )
            )
        elif isinstance(m, nn.Linear):
            out.append(LayerRecord(name, "linear", type(m).__name__, grab(m.weight), grab(m.bias), m.in_features, m.out_features))
    return out
