"""Autoencoders of the seed papers. Every model has ``.encoder``, ``.decoder``, ``encode(x)``,
``decode(z)`` and ``forward(x) = decode(encode(x))`` so that every probe can split it."""
from aeprobe.models._base import AutoEncoder
from aeprobe.models.conv import ConvAE
from aeprobe.models.manakov import ManakovCAE
from aeprobe.models.newson import DiskAE, PositionAE, PositionDecoder, PositionEncoder

__all__ = ["AutoEncoder", "DiskAE", "PositionAE", "PositionEncoder", "PositionDecoder", "ManakovCAE", "ConvAE"]
