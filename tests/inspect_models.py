"""A user's own model factories, as ``aeprobe inspect --model inspect_models:FACTORY`` imports them.

Each factory takes no arguments and returns an untrained architecture (the tests save its weights and
give them back through ``--weights``). Images are ``1 x 16 x 16`` (``conv_ae``) or ``1 x 8 x 8`` (the
others, as in ``autoencoders.py``).
"""
from __future__ import annotations

import torch
from torch import nn

from autoencoders import TupleVAE, sequential_ae

CONV_SHAPE = (1, 16, 16)


class ConvAE(nn.Module):
    """A small conv AE: two stride-2 convolutions to a 4 x 4 x 4 code, two transposed convolutions back."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.Conv2d(width, 4, 3, stride=2, padding=1))
        self.decoder = nn.Sequential(nn.ConvTranspose2d(4, width, 4, stride=2, padding=1), nn.ReLU(),
                                     nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


def conv_ae() -> nn.Module:
    torch.manual_seed(0)
    return ConvAE()


def wide_conv_ae() -> nn.Module:
    """The same architecture with other channel counts: its weights do not fit ``conv_ae``."""
    torch.manual_seed(0)
    return ConvAE(width=12)


def tuple_vae() -> nn.Module:
    torch.manual_seed(0)
    return TupleVAE()


def seq_ae() -> nn.Module:
    torch.manual_seed(0)
    return sequential_ae()


def not_a_model():
    return "a string"
