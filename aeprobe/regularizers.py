"""The regularisers of Newson et al., Sect. 4.4.1, as ``(model, xb) -> lam * psi`` callables.

Training minimises ``data term + lam * psi`` with one of

* Type 1 (latent distance preservation between random neighbours in the batch)::

      psi1(x, x') = ( ||x - x'||_2^2 - ||E(x) - E(x')||_2^2 )^2

  "This is done by randomly selecting a neighbour of each element in the training batch":
  each element ``x_i`` of the batch is paired with an element ``x_j``, ``j != i`` drawn
  uniformly from the rest of the batch, and psi1 is averaged over the ``B`` pairs.
* Type 2 (l2 on encoder *and* decoder filter weights)::

      psi2(Theta_E, Theta_D) = sum_l ||w_l||_2^2 + ||w'_l||_2^2

* Type 3 (l2 on encoder filter weights only)::

      psi3(Theta_E) = sum_l ||w_l||_2^2

The paper penalises the filters ``w``; biases are therefore excluded by default
(``include_bias=True`` adds them).  A parameter counts as a weight when its name's last
component is not ``bias``.  Note the scale: the paper's data term is a *sum* of squared
errors, while :func:`aeprobe.train.train` uses the *mean*; the same ``lam`` is therefore
relatively stronger here by the number of pixels per image times the batch size.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Regularizer = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _part(model: nn.Module, name: str) -> nn.Module:
    part = getattr(model, name, None)
    if not isinstance(part, nn.Module):
        raise AttributeError(
            f"{type(model).__name__} has no `.{name}` submodule; the Newson regularisers need "
            f"a model exposing `.encoder` and `.decoder` (every aeprobe AE does)"
        )
    return part


def _check_lam(lam: float) -> float:
    lam = float(lam)
    if not lam >= 0 or lam == float("inf"):
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    return lam


def weight_sq_norm(module: nn.Module, *, include_bias: bool = False) -> torch.Tensor:
    """``sum ||w||_2^2`` over the (trainable) weights of ``module``; biases only if asked."""
    total = None
    for name, p in module.named_parameters():
        if not include_bias and name.rsplit(".", 1)[-1] == "bias":
            continue
        term = p.pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError(f"{type(module).__name__} has no weight parameters to regularise")
    return total


def random_neighbours(batch_size: int, *, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each i in ``range(batch_size)`` an index j != i drawn uniformly (needs batch_size >= 2)."""
    if batch_size < 2:
        raise ValueError(f"need at least 2 samples to pick neighbours, got {batch_size}")
    offset = torch.randint(1, batch_size, (batch_size,), device=device, generator=generator)
    return (torch.arange(batch_size, device=device) + offset) % batch_size


def psi1_value(model: nn.Module, xb: torch.Tensor, neighbours: torch.Tensor | None = None,
               *, generator: torch.Generator | None = None, code: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of ``(||x_i - x_j||^2 - ||E(x_i) - E(x_j)||^2)^2``, j = neighbours[i].

    ``code``: ``E(xb)`` when the caller has it already (with its graph); else the encoder runs here.
    A batch of one sample has no neighbour and contributes 0 (keeps the gradient graph).
    """
    codes = _part(model, "encoder")(xb) if code is None else code
    b = xb.shape[0]
    if b < 2:
        return codes.sum() * 0.0
    if neighbours is None:
        neighbours = random_neighbours(b, device=xb.device, generator=generator)
    dx = (xb - xb[neighbours]).reshape(b, -1).pow(2).sum(dim=1)
    dz = (codes - codes[neighbours]).reshape(b, -1).pow(2).sum(dim=1)
    return (dx - dz).pow(2).mean()


def psi1(lam: float, *, generator: torch.Generator | None = None) -> Regularizer:
    """``(model, xb) -> lam * psi1`` (Newson Type 1; neighbours from torch's global RNG by default,
    which :func:`aeprobe.train.train` seeds and checkpoints). ``regularizer.code_module(model)`` is
    the encoder, so :func:`aeprobe.train.train` hands it (``code=``) the codes its forward already
    computed: a batch is encoded once."""
    lam = _check_lam(lam)

    def regularizer(model: nn.Module, xb: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        return lam * psi1_value(model, xb, generator=generator, code=code)

    regularizer.__name__ = f"psi1(lam={lam:g})"
    regularizer.code_module = lambda model: _part(model, "encoder")
    return regularizer


def psi2(lam: float, *, include_bias: bool = False) -> Regularizer:
    """``(model, xb) -> lam * (||Theta_E||^2 + ||Theta_D||^2)`` (Newson Type 2)."""
    lam = _check_lam(lam)

    def regularizer(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        enc = weight_sq_norm(_part(model, "encoder"), include_bias=include_bias)
        dec = weight_sq_norm(_part(model, "decoder"), include_bias=include_bias)
        return lam * (enc + dec)

    regularizer.__name__ = f"psi2(lam={lam:g})"
    return regularizer


def psi3(lam: float, *, include_bias: bool = False) -> Regularizer:
    """``(model, xb) -> lam * ||Theta_E||^2`` (Newson Type 3, encoder only)."""
    lam = _check_lam(lam)

    def regularizer(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
        return lam * weight_sq_norm(_part(model, "encoder"), include_bias=include_bias)

    regularizer.__name__ = f"psi3(lam={lam:g})"
    return regularizer
