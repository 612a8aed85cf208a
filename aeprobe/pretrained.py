"""Pretrained networks from *user-supplied* weights files: feature nets and encoders.

Seed 003 uses an ImageNet VGG16 for a feature (perceptual) loss and a pretrained ResNet as
an autoencoder's encoder. aeprobe never downloads weights (no network access is assumed, and
``torchvision.models.*(weights=...)`` would fetch them): you build the architecture yourself
and point to a weights file you already have, e.g. one exported once with
``safetensors.torch.save_file(torchvision.models.vgg16(weights="DEFAULT").state_dict(), "vgg16.safetensors")``.

Accepted files (read by :mod:`aeprobe.checkpoint`, which never executes pickled code):

* ``.safetensors`` -- a plain state_dict, or an aeprobe checkpoint;
* ``torch.save`` files of a state_dict (or ``{"state_dict": ...}``), loaded only through
  ``torch.load(weights_only=True)``; files that need arbitrary unpickling are refused with
  :class:`aeprobe.checkpoint.CheckpointError`.

Functions:

* :func:`read_state_dict` ``(path, prefix=None)``: the tensors of a file, optionally only the keys
  under ``prefix`` (with the prefix stripped), e.g. ``"encoder."`` of a whole-AE checkpoint;
* :func:`load_feature_net` ``(arch_fn, weights_path)``: ``arch_fn()`` with the weights loaded,
  in ``eval`` mode and with every parameter frozen (for :class:`aeprobe.losses.FeatureLoss`);
* :func:`load_encoder` ``(model, weights_path, part="encoder", prefix=None, freeze=False)``:
  load weights into an AE's encoder (any named submodule); ``freeze=True`` sets
  ``requires_grad=False`` permanently -- for a temporary freeze wrap training in
  ``with aeprobe.ablation.freeze(model, "encoder"):``;
* :func:`discriminative_optimizer` ``(model, {"encoder": 1e-4, "decoder": 1e-3})``: an
  ``optimizer=`` callable for :func:`aeprobe.train.train` with one learning rate per part
  (seed 003's fine-tuning step after training the decoder on a frozen encoder).

Note: ``requires_grad=False`` does not stop BatchNorm layers from updating their running
statistics in ``train`` mode; put a frozen BatchNorm encoder in ``eval`` mode if that matters
(``model.train(); model.encoder.eval()``): :func:`aeprobe.train.train` keeps every submodule's
mode as you set it, through validation and after it returns (see its module docstring).
"""
from __future__ import annotations

import os
from typing import Callable, Mapping

import torch
from torch import nn

from aeprobe.checkpoint import CheckpointError, read_state_dict

__all__ = ["read_state_dict", "load_feature_net", "load_encoder", "discriminative_optimizer"]


def _load_into(module: nn.Module, sd: Mapping[str, torch.Tensor], path, strict: bool) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if strict and (missing or unexpected):
        raise CheckpointError(f"weights in {path} do not fit {type(module).__name__}: missing keys {missing[:8]}, "
                              f"unexpected keys {unexpected[:8]}")
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in sd.items()
           if k in own and v.shape != own[k].shape]
    if bad:
        raise CheckpointError(f"weights in {path}: shape mismatch for {bad[:8]}")
    module.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=strict)


def load_feature_net(arch_fn: Callable[[], nn.Module], weights_path: str | os.PathLike, *,
                     prefix: str | None = None, strict: bool = True, device=None) -> nn.Module:
    """``arch_fn()`` with weights from ``weights_path`` (module docstring), frozen and in ``eval`` mode.

    No weights are downloaded: ``arch_fn`` must build the bare architecture (e.g.
    ``lambda: torchvision.models.vgg16(weights=None)``) and ``weights_path`` be a file you have.
    """
    if not callable(arch_fn):
        raise TypeError(f"arch_fn must be a callable returning an nn.Module, got {type(arch_fn).__name__}")
    net = arch_fn()
    if not isinstance(net, nn.Module):
        raise TypeError(f"arch_fn returned {type(net).__name__}, not an nn.Module")
    _load_into(net, read_state_dict(weights_path, prefix=prefix), weights_path, strict)
    if device is not None:
        from aeprobe.device import resolve_device

        net.to(resolve_device(device))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_encoder(model: nn.Module, weights_path: str | os.PathLike, *, part: str = "encoder",
                 prefix: str | None = None, strict: bool = True, freeze: bool = False) -> nn.Module:
    """Load pretrained weights from ``weights_path`` into ``model``'s submodule ``part``; return it.

    ``prefix``: take the keys under it from the file (``"encoder."`` when the file holds a
    whole AE, ``"features."`` for a classifier's feature extractor); default: the whole file.
    ``freeze=True``: ``requires_grad=False`` on the part's parameters (permanent; see
    :func:`aeprobe.ablation.freeze` for a temporary one). No weights are downloaded.
    """
    from aeprobe._modules import get_module

    target = get_module(model, part)
    _load_into(target, read_state_dict(weights_path, prefix=prefix), weights_path, strict)
    if freeze:
        for p in target.parameters():
            p.requires_grad_(False)
    return target


def discriminative_optimizer(model: nn.Module, lrs: Mapping[str, float], *, default_lr: float | None = None,
                             optimizer: type[torch.optim.Optimizer] = torch.optim.Adam, **opt_kw):
    """An ``optimizer=`` callable for :func:`aeprobe.train.train` with one learning rate per submodule.

    ``lrs`` maps module names (``"encoder"``, ``"decoder"``, ``"encoder.0"``) to learning rates; a
    parameter takes the rate of the longest name it lies under, else ``default_lr`` (parameters
    without a rate and without ``default_lr`` raise ``ValueError``). Only the parameters
    ``train`` passes (the trainable ones) are optimised.
    """
    from aeprobe._modules import get_module

    for name in lrs:
        get_module(model, name)  # KeyError with close matches for a typo
    names = sorted(lrs, key=len, reverse=True)
    owner = {}
    for pname, p in model.named_parameters():
        for name in names:
            if name == "" or pname.startswith(name + "."):
                owner[id(p)] = name
                break

    def make(params) -> torch.optim.Optimizer:
        groups: dict[str, list] = {}
        for p in params:
            name = owner.get(id(p))
            if name is None and default_lr is None:
                raise ValueError("a trainable parameter lies under none of "
                                 f"{list(lrs)} and no default_lr was given")
            groups.setdefault(name, []).append(p)
        pg = [{"params": ps, "lr": float(lrs[n] if n is not None else default_lr)} for n, ps in groups.items()]
        return optimizer(pg, **opt_kw)

    make.__name__ = "discriminative_" + optimizer.__name__.lower()
    return make
