r"""Feature (perceptual) loss: compare reconstructions and targets in a fixed network's feature space.

Johnson, Alahi & Fei-Fei (2016), used for autoencoders in seed 003 ("Feature loss"): with a
frozen feature network ``phi`` (seed 003: ImageNet VGG16) and chosen layers ``l`` with weights
``w_l``,

.. math::

    L(\hat x, x) = w_\text{pix} \operatorname{mean}(\hat x - x)^2
                 + \sum_l w_l \operatorname{mean}\big(\phi_l(\hat x) - \phi_l(x)\big)^2

(``distance="l1"`` uses absolute differences). Seed 003 found early layers (edge detectors)
with decreasing weights deeper in the net to work best for autoencoders.

The activations ``phi_l`` are read with :func:`aeprobe.hooks.capture` (any module names of
the feature net; the net's own output is not needed). The target pass runs without
gradient; the reconstruction pass keeps the graph so the loss trains the autoencoder, never
the feature net: during each pass the net is put in ``eval`` mode with ``requires_grad=False``
on its parameters, and both are restored right after -- the network you pass is left as it was
(modes, ``requires_grad``, device, buffers). It runs where it is: move it to the training device
yourself (``feature_net.to(device)``, ``FeatureLoss(...).to(device)`` or ``device=``); images on
another device raise a ``ValueError`` naming both devices.

**Weights are never downloaded.** Build the feature net with
:func:`aeprobe.pretrained.load_feature_net` (``arch_fn`` + a weights file you supply, e.g.
``load_feature_net(lambda: torchvision.models.vgg16().features, "vgg16_features.safetensors")``);
a randomly initialised net also works as a (much weaker) feature loss.

Use with :func:`aeprobe.train.train`::

    fl = FeatureLoss(net, ["3", "8"], weights=[1.0, 0.5], pixel_weight=1.0,
                     input_transform=lambda x: x.expand(-1, 3, -1, -1))
    train(model, x, epochs=10, batch_size=64, loss_fn=fl.loss_fn)
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from aeprobe.pretrained import load_feature_net  # re-exported: the loader belongs with the loss

__all__ = ["FeatureLoss", "load_feature_net"]


@contextlib.contextmanager
def _no_param_grad(net: nn.Module) -> Iterator[None]:
    """``requires_grad=False`` on ``net``'s parameters for the block (no graph, no ``.grad``), restored after."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class FeatureLoss(nn.Module):
    """Weighted feature-space distance plus an optional pixel term (module docstring).

    ``feature_net``: any ``nn.Module``, run in ``eval`` mode with frozen parameters during each
    call and left as it was between calls (``FeatureLoss.train()``/``.eval()`` do not change its
    modes either); ``layers``: module names inside it (``KeyError`` with close matches for a
    typo); ``weights``: one per layer (default 1); ``pixel_weight``: weight of the pixel MSE/L1
    term (default 0); ``input_transform``: applied to both images before the net (e.g. grey -> 3
    channels and ImageNet normalisation); ``device``: if given, the feature net is moved there
    once, here (this moves the module you pass, as ``feature_net.to(device)`` would).

    ``forward(pred, target)`` returns the scalar loss; ``terms(pred, target)`` the loss and a
    ``{name: float}`` dict per term; ``loss_fn(model, xb, yb)`` is the ``loss_fn`` for
    :func:`aeprobe.train.train` (``pred = model(xb)``).
    """

    def __init__(self, feature_net: nn.Module, layers: Sequence[str], weights: Sequence[float] | None = None, *,
                 pixel_weight: float = 0.0, distance: str = "mse",
                 input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 device: str | torch.device | None = None):
        super().__init__()
        from aeprobe._modules import resolve_modules

        if not isinstance(feature_net, nn.Module):
            raise TypeError(f"feature_net must be an nn.Module, got {type(feature_net).__name__}")
        if isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        if not layers and pixel_weight == 0:
            raise ValueError("give at least one feature layer or a non-zero pixel_weight")
        resolve_modules(feature_net, layers)  # KeyError with close matches on a bad name
        weights = [1.0] * len(layers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(layers):
            raise ValueError(f"{len(weights)} weights for {len(layers)} layers")
        if any(w < 0 for w in weights) or pixel_weight < 0:
            raise ValueError(f"weights must be >= 0, got {weights} and pixel_weight={pixel_weight}")
        if distance not in ("mse", "l1"):
            raise ValueError(f"distance must be 'mse' or 'l1', got {distance!r}")
        if device is not None:
            from aeprobe.device import resolve_device

            feature_net.to(resolve_device(device))
        self.feature_net = feature_net
        self.layers, self.weights = layers, weights
        self.pixel_weight, self.distance = float(pixel_weight), distance
        self.input_transform = input_transform

    def train(self, mode: bool = True) -> "FeatureLoss":
        # the feature net keeps its own modes (it always runs in eval mode, see _features)
        saved = [(m, m.training) for m in self.feature_net.modules()]
        super().train(mode)
        for m, flag in saved:
            m.training = flag
        return self

    def _dist(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise ValueError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
        d = a - b
        return (d * d).mean() if self.distance == "mse" else d.abs().mean()

    def _features(self, x: torch.Tensor, grad: bool) -> dict[str, torch.Tensor]:
        from aeprobe.hooks import capture
        from aeprobe.utils import eval_mode

        p0 = next(self.feature_net.parameters(), None)
        if p0 is None:
            p0 = next(self.feature_net.buffers(), None)
        if p0 is not None and p0.device != x.device:
            raise ValueError(
                f"FeatureLoss: the feature net is on {p0.device} but the images are on {x.device}; move it once "
                f"with feature_loss.to({str(x.device)!r}) (or FeatureLoss(..., device=...)): it is not moved for you"
            )
        if self.input_transform is not None:
            x = self.input_transform(x)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()), eval_mode(self.feature_net), \
                _no_param_grad(self.feature_net), \
                capture(self.feature_net, self.layers, detach=not grad, restore_buffers=False) as acts:
            self.feature_net(x)
        missing = [n for n in self.layers if n not in acts]
        if missing:
            raise KeyError(f"feature layers {missing} did not run in the feature net's forward")
        out = {}
        for n in self.layers:
            a = acts[n]
            if not isinstance(a, torch.Tensor):
                raise TypeError(f"feature layer {n!r} returned {type(a).__name__}, expected a tensor")
            out[n] = a
        return out

    def terms(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``(loss, {"pixel": ..., "feat:<layer>": ...})``; logged terms are unweighted."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
        logs: dict[str, float] = {}
        total = pred.new_zeros(())
        if self.pixel_weight:
            px = self._dist(pred, target)
            total = total + self.pixel_weight * px
            logs["pixel"] = float(px.detach())
        if self.layers:
            ft = self._features(target.detach(), grad=False)
            fp = self._features(pred, grad=True)
            for n, w in zip(self.layers, self.weights):
                t = self._dist(fp[n], ft[n])
                total = total + w * t
                logs[f"feat:{n}"] = float(t.detach())
        return total, logs

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.terms(pred, target)[0]

    def loss_fn(self, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor):
        """``loss_fn`` for :func:`aeprobe.train.train`: the feature loss of ``model(xb)`` against ``yb``."""
        return self.terms(model(xb), yb)
